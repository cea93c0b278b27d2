"""The counter workload: increments and reads of one "likes" counter.

Workers add 1 three times as often as they read. After the faults heal, every serving
node is read until the reads agree and stop changing; those final reads decide how many
acknowledged increments were lost. The history is judged three times: by the counter
checker (Jepsen-style bounds, lost and extra increments), by the linearizability checker
with the counter model, and by the stats checker (every workload has it: a run in which
no add succeeded is not VALID).
"""

from __future__ import annotations

from typing import Any, ClassVar

from checkers.counter import CounterChecker, NumericReads
from checkers.linearizable import Linearizable
from checkers.models import Counter
from harness.generator import constant, mix
from harness.systems.options import Options, declares
from workloads.base import Workload, checked


class CounterOptions(Options):
    """The counter workload takes no options: every ``-o`` key belongs to the system."""

    owner: ClassVar[str] = "counter workload"


@declares(CounterOptions)
def make_workload(options: dict[str, Any]) -> Workload:
    return Workload(
        name="counter",
        generator=mix([(3, constant("add", 1)), (1, constant("read", None))]),
        final=("read", None),
        checker=checked({
            "counter": CounterChecker(),
            "linearizable": NumericReads(Linearizable(Counter())),
        }),
        operations=frozenset({"add", "read"}),
    )
