"""The counter workload: increments and reads of one "likes" counter.

Workers add 1 three times as often as they read. After the faults heal, every serving
node is read once more; those final reads decide how many acknowledged increments were
lost. The history is judged twice: by the counter checker (Jepsen-style bounds, lost
and extra increments) and by the linearizability checker with the counter model.
"""

from __future__ import annotations

from typing import Any, ClassVar

from checkers.base import Compose
from checkers.counter import CounterChecker
from checkers.linearizable import Linearizable
from checkers.models import Counter
from harness.generator import constant, mix
from harness.systems.options import Options, declares
from workloads.base import Workload


class CounterOptions(Options):
    """The counter workload takes no options: every ``-o`` key belongs to the system."""

    owner: ClassVar[str] = "counter workload"


@declares(CounterOptions)
def make_workload(options: dict[str, Any]) -> Workload:
    return Workload(
        name="counter",
        generator=mix([(3, constant("add", 1)), (1, constant("read", None))]),
        final=("read", None),
        checker=Compose({
            "counter": CounterChecker(),
            "linearizable": Linearizable(Counter()),
        }),
    )
