"""Crash faults: ``kill`` SIGKILLs the system on some nodes, ``start`` brings them back.

Uses the DB's ``Killable`` capability; a system without it cannot take this fault, and
asking for it is a usage error at setup, not a surprise mid-run.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Sequence

from harness.db import Killable, Primaries
from harness.errors import UsageError
from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test


def choose_targets(nodes: Sequence[str], rng: random.Random) -> list[str]:
    """One node, a minority, a majority or all of them, at random (as Jepsen's targets)."""
    n = len(nodes)
    size = rng.choice(sorted({1, max(1, (n - 1) // 2), n // 2 + 1, n}))
    return sorted(rng.sample(list(nodes), size))


def _on_each(test: Test, nodes: Sequence[str], action: Callable[[Test, str], None]) -> None:
    """Applies ``action`` to all nodes at once (a crash should hit them together)."""
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        futures = [pool.submit(action, test, node) for node in nodes]
    for f in futures:
        f.result()


class KillNemesis:
    """Kills and restarts the system's processes through ``harness.db.Killable``.

    ``kill`` takes the nodes from the op's value or, when None, draws targets (and may
    aim at the current primaries if the DB reports them). ``start`` restarts the nodes
    named in its value, or every node when None; restarting a running node is a no-op.
    ``teardown`` waits for an ``invoke`` still in flight, so no kill lands after it.
    """

    fs = frozenset({"kill", "start"})

    def __init__(self, db: object, system: str, rng: random.Random,
                 nodes: Sequence[str]) -> None:
        if not isinstance(db, Killable):
            raise UsageError(f"system {system} cannot be killed: it has no kill/start")
        self.db = db
        self.rng = rng
        self.nodes = list(nodes)
        """The nodes the system runs on: a single-node system is killed on its node only."""
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
        if op.f == "kill":
            nodes = list(op.value) if op.value is not None else self.targets(test)
            _on_each(test, nodes, self.db.kill)
            return op.complete("info", nodes)
        if op.f == "start":
            nodes = list(op.value) if op.value is not None else self.nodes
            _on_each(test, nodes, self.db.start)
            return op.complete("info", nodes)
        raise ValueError(f"kill nemesis cannot perform {op.f!r}")

    def teardown(self, test: Test) -> None:
        with self._lock:
            _on_each(test, self.nodes, self.db.start)
