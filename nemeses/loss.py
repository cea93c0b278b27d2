"""Packet loss between nodes: ``start-loss`` makes every node drop a random share of the
packets from every other node, ``stop-loss`` ends it.

A lossy network is not a partition: TCP retransmits, so requests mostly succeed, late;
timeouts fire at random instead of along a cut, and heartbeats go missing now and then,
which is what makes leaders step down and elections repeat. The drop is iptables'
``statistic`` match (``harness.cluster.net``), so it works on kernels without netem; the
controller's own traffic is never dropped.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from harness.cluster import net
from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test

DEFAULT_PROBABILITY = 0.2


class LossNemesis:
    """``start-loss`` takes the probability from the op's value, or ``probability``."""

    fs = frozenset({"start-loss", "stop-loss"})

    def __init__(self, probability: float = DEFAULT_PROBABILITY) -> None:
        if not 0 < probability <= 1:
            raise ValueError(f"a loss probability must be in (0, 1], got {probability}")
        self.probability = probability
        self._lock = threading.Lock()

    def setup(self, test: Test) -> None:
        net.heal(test.remote, test.nodes, chain=net.LOSS_CHAIN)

    def invoke(self, test: Test, op: Op) -> Op:
        with self._lock:
            if op.f == "start-loss":
                p = float(op.value) if op.value is not None else self.probability
                everyone = {n: [m for m in test.nodes if m != n] for n in test.nodes}
                net.drop(test.remote, test.nodes, everyone, probability=p)
                return op.complete("info", p)
            if op.f == "stop-loss":
                net.heal(test.remote, test.nodes, chain=net.LOSS_CHAIN)
                return op.complete("info", "loss healed")
            raise ValueError(f"loss nemesis cannot perform {op.f!r}")

    def teardown(self, test: Test) -> None:
        with self._lock:
            net.heal(test.remote, test.nodes, chain=net.LOSS_CHAIN)
