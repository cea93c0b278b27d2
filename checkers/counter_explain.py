"""Plain-words explanations of an invalid unit-counter history.

``checkers.counter_linear`` decides the verdict in one pass over compact columns; only
when that verdict is *invalid* does it build an ``Explainer`` here, over a ``Timeline``
of the history, to name the ops involved. So this side may be slow: it runs once, and
only for a history that already failed. The ok reads' columns (``Reads``) and how a read
value is compared (``whole``) live here too, as both sides need them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from checkers.counter_timeline import Timeline
from checkers.counterexample import Counterexample, OpView
from harness.history import FAIL, INFO, Op

ANALYZER = "counter-edf"


def whole(value: Any) -> int | None:
    """A read value as the model compares it (3.0 == 3), or None."""
    if type(value) is bool:   # not a count, though Python says True == 1
        return None
    if isinstance(value, int | float) and math.isfinite(value) and value == int(value):
        return int(value)
    return None


class Reads:
    """The ok reads: positions of invocation and completion, and rank."""

    def __init__(self, start: Sequence[int], end: Sequence[int], rank: list[int]) -> None:
        self.start, self.end, self.rank = start, end, rank

    def last_started(self, max_rank: int) -> int:
        """The read of rank <= max_rank that began last."""
        return max((i for i, w in enumerate(self.rank) if w <= max_rank),
                   key=self.start.__getitem__)

    def first_ended(self, min_rank: int) -> int:
        """The read of rank >= min_rank that ended first (reads are in completion order)."""
        return next(i for i, w in enumerate(self.rank) if w >= min_rank)


def invalid(ops: int, explanation: str, counterexample: Counterexample,
            detail: dict[str, Any]) -> dict:
    """The invalid verdict, in the shape ``check`` returns every verdict."""
    return {
        "valid": False, "model": "counter", "analyzer": ANALYZER, "ops": ops,
        "explanation": explanation,
        "counterexample": counterexample.to_dict(),
        "anomalies": [{"type": "nonlinearizable", "count": 1,
                       "explanation": explanation, **detail}],
    }


class Explainer:
    """Plain-words explanations; built only for invalid histories, so it may be slow."""

    def __init__(self, history: Timeline, initial: int) -> None:
        self.history = history
        self.initial = initial

    def view(self, start: int) -> OpView:
        inv = self.history[start]
        end = self.history.completion_of(start)
        done = self.history[end] if end is not None else None
        return OpView(
            process=inv.process, f=inv.f,
            value=done.value if inv.f == "read" and done is not None else inv.value,
            type=done.type if done is not None else INFO,
            start=_seconds(inv), end=_seconds(done) if done is not None else None,
            index=inv.index,
        )

    def concurrent(self, start: int, limit: int = 10) -> list[OpView]:
        """Client ops whose interval overlaps that of the op invoked at ``start``."""
        out: list[OpView] = []
        for s in self.history.concurrent_with(start):
            if len(out) == limit:
                break
            e = self.history.completion_of(s)
            if e is None or self.history[e].type != FAIL:
                out.append(self.view(s))
        return out

    def _result(self, start: int, explanation: str, state: str
                ) -> tuple[str, Counterexample, dict[str, Any]]:
        view = self.view(start)
        cex = Counterexample(op=view, explanation=explanation, state=state,
                             concurrent=self.concurrent(start))
        detail = {"process": view.process, "time": view.start, "value": view.value}
        return explanation, cex, detail

    def bad_read(self, end: int) -> tuple[str, Counterexample, dict[str, Any]]:
        done = self.history[end]
        start = self.history.invocation_of(end)
        who = f"process {done.process} read {done.value!r} {_at(self.history[start])}"
        if whole(done.value) is None:
            why = f"{who}, which is not a whole number"
        else:
            why = f"{who}, below the initial value {self.initial}"
        return self._result(start, why, f"count = {self.initial} or more")

    def backwards(self, reads: Reads, later: int
                  ) -> tuple[str, Counterexample, dict[str, Any]]:
        s2, w2 = reads.start[later], reads.rank[later]
        earlier = max(i for i, (e, w) in enumerate(zip(reads.end, reads.rank))
                      if e < s2 and w > w2)  # the latest to end: the closest in time
        e1 = reads.end[earlier]
        v1, v2 = self.initial + reads.rank[earlier], self.initial + w2
        first, second = self.history[e1], self.history[s2]
        why = (f"process {first.process} read {v1} {_at(first)} and then process "
               f"{second.process} read {v2} {_at(second)}: the count went backwards")
        return self._result(s2, why, f"count = {v1} or more")

    def above_attempts(self, reads: Reads, i: int, adds: int
                       ) -> tuple[str, Counterexample, dict[str, Any]]:
        start = reads.start[i]
        op = self.history[start]
        value = self.initial + reads.rank[i]
        plural = "" if adds == 1 else "s"
        base = f" on top of the initial {self.initial}" if self.initial else ""
        why = (f"process {op.process} read {value} {_at(op)}, but only {adds} "
               f"increment{plural} had begun before that read completed{base}")
        return self._result(start, why, f"count = {self.initial + adds} or less")

    def crowded(self, reads: Reads, mandatory: list[int], base: int, deadline: int,
                inc_end: Sequence[int]) -> tuple[str, Counterexample, dict[str, Any]]:
        """Explains a missed deadline by the window [a, deadline] that holds more
        mandatory increments than positions (one exists; see the module docstring)."""
        lows = sorted((code // base for code in mandatory if code % base <= deadline),
                      reverse=True)
        low = next(lo for n, lo in enumerate(lows, 1) if n > deadline - lo + 1)
        hi = reads.last_started(deadline)
        s_hi, v_hi = reads.start[hi], self.initial + reads.rank[hi]
        op_hi = self.history[s_hi]
        if low == 1:
            n = sum(1 for e in inc_end if e < s_hi)
            if self.initial:
                sums = f"bring the count from {self.initial} to {self.initial + n}"
            else:
                sums = f"already sum to {n}"
            why = (f"read {v_hi} on process {op_hi.process} {_at(op_hi)}, but "
                   f"increments acknowledged before it began {sums}")
            return self._result(s_hi, why, f"count = {self.initial + n} or more")
        lo = reads.first_ended(low - 1)
        e_lo, v_lo = reads.end[lo], self.initial + reads.rank[lo]
        op_lo = self.history[e_lo]
        n = sum(1 for e in inc_end if e_lo < e < s_hi and self.history.invocation_of(e) > e_lo)
        why = (f"process {op_lo.process} read {v_lo} {_at(op_lo)}, then {n} "
               f"increment{'' if n == 1 else 's'} began and were acknowledged before "
               f"process {op_hi.process} began a read {_at(op_hi)} that returned "
               f"{v_hi}: the count should have been at least {v_lo + n}")
        return self._result(s_hi, why, f"count = {v_lo + n} or more")


def _seconds(op: Op) -> float | None:
    return op.time / 1e9 if op.time >= 0 else None


def _at(op: Op) -> str:
    return f"at {op.time / 1e9:.2f} s" if op.time >= 0 else f"at history index {op.index}"
