"""The set workload: adds of unique elements, reads of the whole set, final reads.

Workers add a fresh element (``UniqueValues``: never added twice) four times as often as
they read the whole set; after healing every serving node reads it once more. The reads
during the run show when each acknowledged element became visible; the final reads show
which were lost. Judged by the set-full checker (``checkers.set_full``): lost,
unexpected and stale elements, and visibility latencies.
"""

from __future__ import annotations

from checkers.set_full import SetFull
from harness.generator import constant, from_fn, mix
from harness.generator_core import GenContext, OpSpec
from workloads.base import UniqueValues, Workload, checked

OPERATIONS = frozenset({"add", "read"})


def make_workload(options: dict[str, str]) -> Workload:
    values = UniqueValues()

    def add(ctx: GenContext) -> OpSpec:
        return ("add", values.next(ctx.worker))

    return Workload(
        name="set",
        generator=mix([(4, from_fn(add)), (1, constant("read", None))]),
        final=("read", None),
        checker=checked({"set-full": SetFull()}),
        operations=OPERATIONS,
    )
