"""Faults of whole containers: ``container-kill`` (``docker kill``, every process of the
node dies at once as in a power loss, then ``docker start`` and the system restarted)
and ``container-pause`` (``docker pause``, the cgroup freezer, then ``docker unpause``).

Unlike ``kill`` and ``pause``, these reach every process on the node, the system's
helpers and the kernel state of its network namespace included: a killed container comes
back with its files but with fresh processes, sockets and firewall. They need a backend
with ``NodeFaults`` (Docker); asking for them elsewhere is a usage error at setup.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.cluster.remote import NodeFaults, on_each_node
from harness.db import Killable
from harness.errors import UsageError
from harness.history import Op
from nemeses.process import choose_targets

if TYPE_CHECKING:
    from harness.context import Test


class ContainerNemesis:
    """``kill=True``: kill-container / start-container; else pause-container /
    resume-container. The fault op takes nodes from its value or draws them; the heal op
    heals the nodes in its value, or every node it may have hit."""

    def __init__(self, kill: bool, db: object, rng: random.Random,
                 nodes: Sequence[str]) -> None:
        self.kill = kill
        self.fault, self.heal = (("kill-container", "start-container") if kill
                                 else ("pause-container", "resume-container"))
        self.fs = frozenset({self.fault, self.heal})
        self.db, self.rng, self.nodes = db, rng, list(nodes)
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def setup(self, test: Test) -> None:
        if not isinstance(test.remote, NodeFaults):
            raise UsageError(f"{'container-kill' if self.kill else 'container-pause'} needs "
                             f"a backend with containers (--backend docker), not "
                             f"{test.spec.backend}")
        if self.kill and not isinstance(self.db, Killable):
            raise UsageError(f"system {test.spec.system} cannot be restarted after "
                             "container-kill: it has no kill/start")

    def invoke(self, test: Test, op: Op) -> Op:
        with self._lock:
            if op.f == self.fault:
                nodes = list(op.value) if op.value is not None \
                    else choose_targets(self.nodes, self.rng)
                self._down.update(nodes)
                on_each_node(nodes, lambda node: self._fault(test, node))
                return op.complete("info", nodes)
            if op.f == self.heal:
                nodes = list(op.value) if op.value is not None else sorted(self._down)
                on_each_node(nodes, lambda node: self._heal(test, node))
                self._down.difference_update(nodes)
                return op.complete("info", nodes)
            raise ValueError(f"container nemesis cannot perform {op.f!r}")

    def teardown(self, test: Test) -> None:
        with self._lock:
            on_each_node(sorted(self._down), lambda node: self._heal(test, node))
            self._down.clear()

    def _fault(self, test: Test, node: str) -> None:
        remote = test.remote
        assert isinstance(remote, NodeFaults)
        (remote.kill_node if self.kill else remote.pause_node)(node)

    def _heal(self, test: Test, node: str) -> None:
        remote = test.remote
        assert isinstance(remote, NodeFaults)
        if not self.kill:
            remote.resume_node(node)
            return
        remote.start_node(node)
        assert isinstance(self.db, Killable)
        self.db.start(test, node)
