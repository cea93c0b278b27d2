"""The stats checker: a run in which some kind of operation never succeeded proves nothing.

Every other checker judges what happened; none of them can judge what did not. A run
whose every ``add`` failed (a client pointed at the wrong port, a server that never came
up) has no acknowledged increment to lose, so the counter checker finds "all 0
acknowledged increments present" and would call it VALID. As Jepsen's ``stats`` checker
does, this one counts the outcomes of each operation kind and refuses to pass a run in
which a kind was attempted and never succeeded: the verdict is ``unknown`` (the run
tested nothing, which is not the same as finding the system broken), and the summary
says why in words, with the most common error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from checkers.base import UNKNOWN, Result
from harness.history import FAIL, INFO, INVOKE, NEMESIS, OK, Op

if TYPE_CHECKING:
    from harness.context import Test


@dataclass
class _Outcomes:
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {t: self.counts[t] for t in (OK, FAIL, INFO)} | {
            "never_completed": self.counts[INVOKE] - sum(
                self.counts[t] for t in (OK, FAIL, INFO))}


class StatsChecker:
    """Outcomes per operation kind; ``unknown`` when a kind was tried and never ok."""

    def check(self, test: Test | None, history: list[Op]) -> Result:
        by_f: dict[str, _Outcomes] = {}
        for op in history:
            if op.process == NEMESIS:
                continue
            outcomes = by_f.setdefault(str(op.f), _Outcomes())
            outcomes.counts[op.type] += 1
            if op.type in (FAIL, INFO):
                outcomes.errors[str(op.error or "no error given")] += 1
        never = [f for f, o in by_f.items() if o.counts[INVOKE] and not o.counts[OK]]
        result: Result = {
            "valid": UNKNOWN if never else True,
            "by_f": {f: o.as_dict() for f, o in sorted(by_f.items())},
        }
        if never:
            result["summary"] = "; ".join(_never_ok(f, by_f[f]) for f in never)
        else:
            result["summary"] = ", ".join(
                f"{f}: {o.counts[OK]:,} ok of {o.counts[INVOKE]:,}"
                for f, o in sorted(by_f.items()))
        return result


def _never_ok(f: str, outcomes: _Outcomes) -> str:
    """``no add succeeded: 4,113 failed, connection-refused``."""
    parts = []
    if outcomes.counts[FAIL]:
        parts.append(f"{outcomes.counts[FAIL]:,} failed")
    if outcomes.counts[INFO]:
        parts.append(f"{outcomes.counts[INFO]:,} indeterminate")
    unfinished = outcomes.counts[INVOKE] - outcomes.counts[FAIL] - outcomes.counts[INFO]
    if unfinished:
        parts.append(f"{unfinished:,} never completed")
    if outcomes.errors:
        error, n = outcomes.errors.most_common(1)[0]
        parts.append(error if n == sum(outcomes.errors.values()) else f"mostly {error}")
    return f"no {f} succeeded: {', '.join(parts)}"
