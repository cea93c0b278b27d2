"""A user's own workload, with its own checker: appends to one list.

Workers append unique numbers to a list (memcached's ``append``), a few hundred a
second, and after the faults heal the list is read once. The checker asks three things
of that final read: every acknowledged append is in it (none lost), nothing is in it
that no one tried to append, and no number appears twice. Run it, from the repository's
root, with a system that has a client for the ``append`` workload::

    splitbrain run --system examples.memcached:make_system \
        --workload examples.workload:make_workload --nemesis none
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from checkers.base import Result
from harness.generator import from_fn, stagger
from harness.generator_core import GenContext
from harness.history import Op
from workloads.base import UniqueValues, Workload, checked


class AppendChecker:
    """Judges the last ``ok`` read against the appends: lost, unexpected, duplicated.
    With no final read it knows nothing, and says so: "unknown"."""

    def check(self, test: Any, history: list[Op]) -> Result:
        appends = [op for op in history if op.f == "append" and op.type != "invoke"]
        reads = [op for op in history if op.f == "read" and op.type == "ok"]
        if not reads or not isinstance(reads[-1].value, list):
            return {"valid": "unknown", "reason": "no final read"}
        final = reads[-1].value
        acknowledged = {op.value for op in appends if op.type == "ok"}
        attempted = {op.value for op in appends if op.type != "fail"}
        anomalies = [{"type": kind, "count": len(found), "examples": sorted(found)[:10]}
                     for kind, found in (
                         ("lost", acknowledged - set(final)),
                         ("unexpected", set(final) - attempted),
                         ("duplicated", {v for v, n in Counter(final).items() if n > 1}))
                     if found]
        return {"valid": not anomalies, "anomalies": anomalies,
                "summary": f"{len(acknowledged):,} acknowledged appends, "
                           f"{len(final):,} elements in the final read"}


def make_workload(options: dict[str, Any]) -> Workload:
    values = UniqueValues()  # worker w's n-th value is w * 10^9 + n: never twice

    def append(ctx: GenContext) -> tuple[str, int]:
        return ("append", values.next(ctx.worker))

    return Workload(name="append", generator=stagger(0.005, from_fn(append)),
                    final=("read", None), checker=checked({"append": AppendChecker()}),
                    operations=frozenset({"append", "read"}))
