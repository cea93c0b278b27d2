"""Faults on the system's processes: crashes (``kill``, then ``start``) and pauses
(``pause`` with SIGSTOP, then ``resume``).

A crash loses what was only in memory; a pause keeps everything but stops the node in
the middle of whatever it was doing, long enough for its peers to give up on it, and
then lets it carry on as if nothing happened: the classic way to get two primaries.
Each uses a capability of the DB (``Killable``, ``Pausable``); a system without it cannot
take the fault, and asking for it is a usage error at setup, not a surprise mid-run. The
bundled systems' DBs (``DaemonDB``) aim a fault at every process of the server on the
node, as a machine's crash or a VM's pause would: the workers a server forks, in
sessions of their own or not, die or stop with it (``harness.daemon``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.cluster.remote import on_each_node
from harness.db import Killable, Pausable, Primaries
from harness.errors import UsageError
from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test


def choose_targets(nodes: Sequence[str], rng: random.Random) -> list[str]:
    """One node, a minority, a majority or all of them, at random (as Jepsen's targets)."""
    n = len(nodes)
    size = rng.choice(sorted({1, max(1, (n - 1) // 2), n // 2 + 1, n}))
    return sorted(rng.sample(list(nodes), size))


@dataclass(frozen=True)
class ProcessFault:
    """A fault on processes: the capability it needs and the DB methods it calls."""

    capability: type
    fault: str
    """The DB method, and the op's ``f``, that injects it on a node."""
    heal: str
    """The DB method, and the op's ``f``, that undoes it on a node."""
    cannot: str
    """How the error says the system cannot take it."""


KILL = ProcessFault(Killable, "kill", "start", "cannot be killed: it has no kill/start")
PAUSE = ProcessFault(Pausable, "pause", "resume",
                     "cannot be paused: it has no pause/resume")


class ProcessNemesis:
    """Injects a ``ProcessFault`` through the DB's capability.

    The fault op takes the nodes from its value or, when None, draws targets (and may
    aim at the current primaries if the DB reports them). The heal op heals the nodes
    named in its value, or every node when None; healing a healthy node is a no-op.
    ``teardown`` waits for an ``invoke`` still in flight, so no fault lands after it.
    """

    def __init__(self, kind: ProcessFault, db: object, system: str, rng: random.Random,
                 nodes: Sequence[str]) -> None:
        if not isinstance(db, kind.capability):
            raise UsageError(f"system {system} {kind.cannot}")
        self.kind = kind
        self.fs = frozenset({kind.fault, kind.heal})
        self.db = db
        self.rng = rng
        self.nodes = list(nodes)
        """The nodes the system runs on: a single-node system is hit on its node only."""
        self._lock = threading.Lock()

    def targets(self, test: Test) -> list[str]:
        if isinstance(self.db, Primaries) and self.rng.random() < 0.25:
            primaries = sorted(self.db.primaries(test))
            if primaries:
                return primaries
        return choose_targets(self.nodes, self.rng)

    def setup(self, test: Test) -> None:
        pass

    def invoke(self, test: Test, op: Op) -> Op:
        with self._lock:
            return self._invoke(test, op)

    def _invoke(self, test: Test, op: Op) -> Op:
        if op.f == self.kind.fault:
            nodes = list(op.value) if op.value is not None else self.targets(test)
            on_each_node(nodes, lambda node: getattr(self.db, self.kind.fault)(test, node))
            return op.complete("info", nodes)
        if op.f == self.kind.heal:
            nodes = list(op.value) if op.value is not None else self.nodes
            on_each_node(nodes, lambda node: getattr(self.db, self.kind.heal)(test, node))
            return op.complete("info", nodes)
        raise ValueError(f"{self.kind.fault} nemesis cannot perform {op.f!r}")

    def teardown(self, test: Test) -> None:
        with self._lock:
            on_each_node(self.nodes, lambda node: getattr(self.db, self.kind.heal)(test, node))
