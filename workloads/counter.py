"""The counter workload: increments and reads of one "likes" counter.

Workers add 1 three times as often as they read. After the faults heal, every serving
node is read until the reads agree and stop changing; those final reads decide how many
acknowledged increments were lost. The history is judged three times: by the counter
checker (Jepsen-style bounds, lost and extra increments), by the linearizability checker
with the counter model, and by the stats checker (every workload has it: a run in which
no add succeeded is not VALID).
"""

from __future__ import annotations

from checkers.counter import CounterChecker, NumericReads
from checkers.linearizable import Linearizable
from checkers.models import Counter
from harness.generator import constant, mix
from workloads.base import Workload, checked


def make_workload(options: dict[str, str]) -> Workload:
    return Workload(
        name="counter",
        generator=mix([(3, constant("add", 1)), (1, constant("read", None))]),
        final=("read", None),
        checker=checked({
            "counter": CounterChecker(),
            "linearizable": NumericReads(Linearizable(Counter())),
        }),
    )
