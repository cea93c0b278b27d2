"""Network partitions: ``start-partition`` cuts the cluster, ``stop-partition`` heals it.

A partition is a *grudge*: for each node, the nodes whose packets it drops. The
op's value is that grudge, so the history says exactly who could not hear whom. The
grudges here are symmetric cuts between components: every node drops every node
outside its own component.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.cluster import net
from harness.errors import UsageError
from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test

Grudge = dict[str, list[str]]


def complete_grudge(components: Sequence[Sequence[str]]) -> Grudge:
    """Every node drops every node that is not in its own component."""
    everyone = [n for c in components for n in c]
    return {n: [m for m in everyone if m not in c] for c in components for n in c}


def random_halves(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """Shuffles the nodes and cuts them into a majority and a minority (equal if even)."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    cut = len(shuffled) // 2
    return complete_grudge([sorted(shuffled[:cut]), sorted(shuffled[cut:])])


def isolate_one(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """One random node alone against all the others."""
    loner = rng.choice(list(nodes))
    return complete_grudge([[loner], [n for n in nodes if n != loner]])


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """Nodes on a shuffled ring, each hearing only its nearest neighbours: every node sees
    a majority (itself included), but no two nodes see the same one (for 5+ nodes).

    This is Jepsen's hardest simple partition: every node can win an election, and
    neighbours' majorities overlap, so leaders can be elected on both sides of a cut.
    """
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    reach = (n // 2 + 1) // 2  # the fewest neighbours per side so 1 + 2*reach > n/2

    def distance(i: int, j: int) -> int:
        return min((i - j) % n, (j - i) % n)

    return {ring[i]: sorted(ring[j] for j in range(n) if distance(i, j) > reach)
            for i in range(n)}


TOPOLOGIES = {"random-halves": random_halves, "isolate-one": isolate_one,
              "majorities-ring": majorities_ring}


class PartitionNemesis:
    """Cuts the network according to a grudge, and heals it.

    ``start-partition`` takes the grudge from the op's value (as ``build_nemesis``'s
    schedule plans it) or, when the value is None, draws one with ``topology``.
    Partitions add up until ``stop-partition`` heals them all. A lock makes ``teardown``
    wait for an ``invoke`` still running in the interpreter's thread (after Ctrl-C), so a
    partition cannot land after the heal.
    """

    fs = frozenset({"start-partition", "stop-partition"})

    def __init__(self, rng: random.Random, topology: str = "random-halves") -> None:
        if topology not in TOPOLOGIES:
            raise UsageError(f"unknown partition topology {topology!r}; "
                             f"known: {', '.join(TOPOLOGIES)}")
        self.rng = rng
        self.topology = TOPOLOGIES[topology]
        self._lock = threading.Lock()

    def grudge(self, nodes: Sequence[str]) -> Grudge:
        return self.topology(nodes, self.rng)

    def setup(self, test: Test) -> None:
        net.heal(test.remote, test.nodes)

    def invoke(self, test: Test, op: Op) -> Op:
        with self._lock:
            return self._invoke(test, op)

    def _invoke(self, test: Test, op: Op) -> Op:
        if op.f == "start-partition":
            grudge = op.value if op.value is not None else self.grudge(test.nodes)
            net.drop(test.remote, test.nodes, grudge)
            return op.complete("info", grudge)
        if op.f == "stop-partition":
            net.heal(test.remote, test.nodes)
            return op.complete("info", "network healed")
        raise ValueError(f"partition nemesis cannot perform {op.f!r}")

    def teardown(self, test: Test) -> None:
        with self._lock:
            net.heal(test.remote, test.nodes)
