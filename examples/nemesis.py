"""A user's own nemesis: a one-way partition, which no bundled fault makes.

One node stops hearing every other node while they all still hear it: its heartbeats go
out, the replies never come back. A leader in that state keeps its followers from
electing anyone else and cannot commit anything itself. Run it, from the repository's
root, against any system on two nodes or more::

    splitbrain run --system etcd --workload register --nodes 3 --nemesis examples.nemesis:make_fault

``make_fault`` returns a ``nemeses.base.Fault``: how to build the nemesis for a run, and
which of its operations starts the fault and which heals it. The schedule alternates
the two; the report draws a band from each start to its heal.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any

from harness.cluster import net
from harness.history import Op
from nemeses.base import Fault


class OneWayNemesis:
    fs = frozenset({"start-one-way", "stop-one-way"})

    def __init__(self, rng: random.Random, nodes: Sequence[str]) -> None:
        self.rng = rng  # drawn from the run's seed: the same seed cuts the same nodes
        self.nodes = list(nodes)
        self.lock = threading.Lock()  # teardown waits for a fault in flight

    def setup(self, test: Any) -> None:
        net.heal(test.remote, test.nodes)

    def invoke(self, test: Any, op: Op) -> Op:
        with self.lock:
            if op.f == "start-one-way":
                deaf = self.rng.choice(self.nodes)
                grudge = {deaf: [n for n in test.nodes if n != deaf]}
                net.drop(test.remote, test.nodes, grudge)
                return op.complete("info", grudge)  # what the report shows
            net.heal(test.remote, test.nodes)
            return op.complete("info", "network healed")

    def teardown(self, test: Any) -> None:
        with self.lock:
            net.heal(test.remote, test.nodes)


def make_fault() -> Fault:
    return Fault(lambda test, db, rng, nodes: OneWayNemesis(rng, nodes),
                 start="start-one-way", stop="stop-one-way", network=True)
