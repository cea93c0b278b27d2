"""The counter workload: increments and reads of one "likes" counter.

Workers add 1 three times as often as they read. After the faults heal, every serving
node is read once more; those final reads decide how many acknowledged increments were
lost. The history is judged twice: by the counter checker (Jepsen-style bounds, lost
and extra increments) and by the linearizability checker with the counter model.
"""

from __future__ import annotations

from checkers.base import Compose
from checkers.counter import CounterChecker
from checkers.linearizable import Linearizable
from checkers.models import Counter
from harness.generator import constant, mix
from workloads.base import Workload


def make_workload(options: dict[str, str]) -> Workload:
    return Workload(
        name="counter",
        generator=mix([(3, constant("add", 1)), (1, constant("read", None))]),
        final=("read", None),
        checker=Compose({
            "counter": CounterChecker(),
            "linearizable": Linearizable(Counter()),
        }),
        operations=frozenset({"add", "read"}),
    )
