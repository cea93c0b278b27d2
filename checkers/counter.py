"""The counter workload's checker: reads within bounds, and lost or extra increments.

Jepsen's counter checker, plus the final reads splitbrain takes on every node after the
faults heal. It assumes nothing about consistency beyond "an acknowledged increment must
not vanish and nothing may be counted that nobody attempted", so it judges eventually
consistent counters as well as linearizable ones.

Bounds are sound for any deltas: an add *definitely* counted by a read is ok and
completed before the read was invoked; one *possibly* counted was invoked before the
read completed and did not fail. The read's value lies between

    lower = initial + sum(positive deltas definitely counted)
                    + sum(negative deltas possibly counted)
    upper = initial + sum(positive deltas possibly counted)
                    + sum(negative deltas definitely counted)

whatever the order the counter applied them in. So a read below ``lower`` saw less
than what had been acknowledged (``stale-read``), and a read above ``upper`` saw
increments nobody attempted (``duplicate-update``).

Loss is claimed only for data that is gone. The run takes its final reads until they
agree and stop changing; when the last final read of every node agrees (up to what
indeterminate adds landing between them explain), an acknowledged increment that even
the highest of them lacks is lost (``lost-update``), and a node below that is merely
behind (a final ``stale-read``). When they never agreed, the system did not converge in
the time given: ``final-reads-disagree`` leaves the verdict undecided on that ground, and
no loss is claimed. A read that returned no number is left out (``ill-typed-read``,
also undecided on its own).
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checkers.base import UNKNOWN, Checker, Result
from harness.errors import UsageError
from harness.history import FAIL, INVOKE, NEMESIS, OK, Op, completions

if TYPE_CHECKING:
    from harness.context import Test

SHOWN = 5  # offending reads listed per anomaly


@dataclass
class _Read:
    """An ok read with the bounds that any order of the adds allows."""

    start: Op
    end: Op
    start_pos: int
    end_pos: int
    value: int | float
    lower: int | float
    upper: int | float
    final: bool
    node: Any

    def detail(self) -> dict[str, Any]:
        return {
            "process": self.start.process, "node": self.node,
            "time": _seconds(self.start), "value": self.value,
            "lower": self.lower, "upper": self.upper,
        }


class CounterChecker:
    """Stale reads, reads above every attempt, lost and extra increments, final reads
    that disagree across nodes, and reads that returned no number."""

    def __init__(self, initial: int = 0) -> None:
        self.initial = initial

    def check(self, test: Test | None, history: list[Op]) -> Result:
        history, ill_typed = numeric_reads(history)
        reads, totals, final_failures = self._bounded_reads(history)
        finals = {str(r.node): r for r in reads if r.final}  # the last one per node
        disagree = _divergent(list(finals.values()), totals)
        # Loss is claimed only from final reads that agree (the system converged), and
        # only for what every node lacks; a node below that is merely behind: stale.
        lost = 0 if disagree else max(
            0, min((r.lower - r.value for r in finals.values()), default=0))
        behind = [r for r in finals.values() if r.lower - r.value > lost]
        stale = [r for r in reads if r.value < r.lower and not r.final] + behind
        above = [r for r in reads if r.value > r.upper]
        anomalies: list[dict[str, Any]] = []
        if stale:
            anomalies.append({"type": "stale-read", "count": len(stale),
                              "reads": [{**r.detail(), "final": r.final}
                                        for r in stale[:SHOWN]]})
        if above:
            anomalies.append({
                "type": "duplicate-update", "count": len(above),
                "reads": [{**r.detail(), "final": r.final, "excess": r.value - r.upper}
                          for r in above[:SHOWN]],
            })
        if lost:
            anomalies.append({"type": "lost-update", "count": lost,
                              "missing": {n: r.lower - r.value for n, r in finals.items()},
                              "acknowledged": totals.acknowledged})
        if disagree:
            anomalies.append({"type": "final-reads-disagree", "count": disagree,
                              "final_reads": {n: r.value for n, r in finals.items()}})
        if ill_typed:
            anomalies.append({"type": "ill-typed-read", "count": len(ill_typed),
                              "examples": [_ill_typed_detail(op) for op in ill_typed[:SHOWN]]})
        result: Result = {
            "valid": _verdict(anomalies),
            "anomalies": anomalies,
            "acknowledged": totals.acknowledged,
            "attempted": totals.attempted,
            "final_reads": {node: r.value for node, r in finals.items()},
            "lost": lost,
            "summary": "",
        }
        if not finals:
            nodes = ", ".join(dict.fromkeys(final_failures))
            reason = (f"every final read failed ({nodes})"
                      if final_failures else "the history has no final reads")
            result["reason"] = f"{reason}, so lost increments cannot be counted"
            if result["valid"] is True:
                result["valid"] = UNKNOWN
        silent = sorted(set(final_failures) - set(finals))
        result["summary"] = self._summary(result, totals, stale, above, silent,
                                          len(ill_typed))
        return result

    def _bounded_reads(self, history: list[Op]
                       ) -> tuple[list[_Read], _Totals, list[str]]:
        """The ok reads that matter (final ones, and any outside its bounds), the sums
        of deltas, and the nodes whose final read did not succeed."""
        failed = {start for start, end in completions(history).items()  # failed adds
                  if history[end].type == FAIL and history[start].f == "add"}

        zero: int | float = 0  # deltas are ints, or floats in a history from elsewhere
        definite_pos = definite_neg = possible_pos = possible_neg = zero
        definite_abs = possible_abs = zero
        first_final: tuple[Any, Any] | None = None  # definite (abs, neg) sums then
        pending: dict[Any, tuple[int, Any, Any]] = {}
        reads: list[_Read] = []
        final_failures: list[str] = []
        for pos, op in enumerate(history):
            if op.process == NEMESIS:
                continue
            if op.type == INVOKE:
                if op.f == "add":
                    delta = _delta(op)
                    pending[op.process] = (pos, delta, None)
                    if pos not in failed:
                        possible_pos += max(delta, 0)
                        possible_neg += min(delta, 0)
                        possible_abs += abs(delta)
                elif op.f == "read":
                    pending[op.process] = (pos, definite_pos, definite_neg)
                    if op.extra.get("final") and first_final is None:
                        first_final = (definite_abs, definite_neg)
                continue
            if op.process not in pending:
                continue
            start, a, b = pending.pop(op.process)
            inv = history[start]
            if inv.f == "add":
                if op.type == OK:
                    definite_pos += max(a, 0)
                    definite_neg += min(a, 0)
                    definite_abs += abs(a)
                continue
            final = bool(inv.extra.get("final") or op.extra.get("final"))
            if op.type != OK:
                if final:
                    final_failures.append(str(_node(inv, op)))
                continue
            value = op.value
            lower = self.initial + a + possible_neg
            upper = self.initial + possible_pos + b
            if final or not lower <= value <= upper:
                reads.append(_Read(inv, op, start, pos, value, lower, upper, final,
                                   _node(inv, op)))
        settled_abs, settled_neg = first_final or (0, 0)
        totals = _Totals(
            acknowledged=definite_pos + definite_neg,
            attempted=possible_pos + possible_neg,
            movable=possible_abs - settled_abs,
            movable_negative=possible_neg < settled_neg,
        )
        return reads, totals, final_failures

    def _summary(self, result: Result, totals: _Totals, stale: list[_Read],
                 above: list[_Read], silent: list[str], ill_typed: int) -> str:
        finals: dict[str, Any] = result["final_reads"]
        acked = totals.acknowledged
        values = set(finals.values())
        disagree = any(a["type"] == "final-reads-disagree" for a in result["anomalies"])
        if len(values) == 1:
            where = f"final read {_n(next(iter(values)))} on every node"
        else:
            where = "final reads " + ", ".join(f"{n} {_n(v)}" for n, v in finals.items())
        if not finals:
            head = f"{result['reason']} ({_increments(acked)} acknowledged)"
        elif disagree:
            head = (f"final reads disagree ({where.removeprefix('final reads ')}) although "
                    f"the system had time to converge, so lost increments are not counted "
                    f"({_increments(acked)} acknowledged)")
        elif result["lost"]:
            share = f" ({100 * result['lost'] / acked:.1f}%)" if acked > 0 else ""
            head = (f"lost {_n(result['lost'])} of {_n(acked)} acknowledged "
                    f"{_increments(acked, number=False)}{share} — {where}")
        else:
            head = (f"all {_n(acked)} acknowledged {_increments(acked, number=False)} "
                    f"present — {where}")
            indeterminate = totals.attempted - acked
            took = next(iter(values)) - self.initial - acked if len(values) == 1 else 0
            if indeterminate > 0 and 0 <= took <= indeterminate:
                head += (f" ({_n(took)} of {_n(indeterminate)} indeterminate "
                         f"{_increments(indeterminate, number=False)} took effect)")
        notes = []
        if stale:
            behind = sum(r.final for r in stale)
            notes.append(f"{_n(len(stale))} stale read{'s' if len(stale) != 1 else ''}"
                         + (f" ({behind} of them final: a node behind)" if behind else ""))
        if above:
            notes.append(f"{_n(len(above))} read{'s' if len(above) != 1 else ''} "
                         "above every attempted increment")
        if ill_typed:
            notes.append(f"{_n(ill_typed)} read{'s' if ill_typed != 1 else ''} returned "
                         "no number (left out)")
        parts = [head, *notes] if result["lost"] else [*notes, head]  # the worst first
        if finals and silent:
            parts.append(f"no final read from {', '.join(silent)}")
        return "; ".join(parts)


@dataclass
class _Totals:
    acknowledged: int | float
    """Sum of the deltas of ok adds."""
    attempted: int | float
    """Sum of the deltas of adds that did not fail (ok, info, never completed)."""
    movable: int | float
    """Sum of |delta| of adds not acknowledged before the first final read began:
    only these can take effect between two final reads."""
    movable_negative: bool
    """Whether any of those has a negative delta (so a later final read may be lower)."""


def _divergent(finals: list[_Read], totals: _Totals) -> int:
    """How many nodes' final reads disagree with the most common value, when no
    single counter could explain the disagreement; else 0.

    The run retries its final reads until they agree and stop changing; reads that
    still disagree mean the system never converged in the time given, so no final read
    can be trusted to show what was lost (a node behind may yet catch up).

    Final reads may differ legitimately when an indeterminate add lands between them,
    so they diverge only if they differ by more than every such add could account for,
    or (with no negative delta in flight) a later final read is below an earlier one.
    """
    values = [r.value for r in finals]
    if len(set(values)) < 2:
        return 0
    backwards = not totals.movable_negative and any(
        a.end_pos < b.start_pos and b.value < a.value for a in finals for b in finals)
    if max(values) - min(values) <= totals.movable and not backwards:
        return 0
    return len(values) - Tally(values).most_common(1)[0][1]


def _node(invoke: Op, completion: Op) -> Any:
    return completion.extra.get("node", invoke.extra.get("node",
                                                         f"process {invoke.process}"))


def _delta(op: Op) -> int | float:
    if not isinstance(op.value, int | float) or isinstance(op.value, bool):
        raise UsageError(f"op {op.index}: counter add of {op.value!r}, not a number")
    return op.value


def _seconds(op: Op) -> float | None:
    return round(op.time / 1e9, 3) if op.time >= 0 else None


def _n(x: float) -> str:
    return f"{x:,}"


def _increments(x: float, number: bool = True) -> str:
    word = "increment" if x == 1 else "increments"
    return f"{_n(x)} {word}" if number else word


_INVALIDATING = frozenset(("stale-read", "duplicate-update", "lost-update"))
"""Anomalies that prove the system wrong; the others leave the verdict undecided."""


def _verdict(anomalies: list[dict[str, Any]]) -> bool | str:
    if any(a["type"] in _INVALIDATING for a in anomalies):
        return False
    return UNKNOWN if anomalies else True


def numeric_reads(history: list[Op]) -> tuple[list[Op], list[Op]]:
    """``history`` with its counter reads made numbers, and the ok reads that were not.

    JSON has one number type, so a read of 2.0 is a read of 2 (integral floats become
    ints); 2.5 stays a read of 2.5, which no state of integer deltas matches. A read that
    returned no number at all (a string, a list, null, a bool) says nothing about the
    counter: it is left out (invocation and completion both; a read changes nothing),
    and returned second so that the checker can report it. Ops are copied only where
    they change; the input is left as it was.
    """
    invoked: dict[Any, int] = {}
    changes: dict[int, Op | None] = {}  # position -> its replacement, or None: left out
    ill_typed: list[Op] = []
    for pos, op in enumerate(history):
        if op.process == NEMESIS:
            continue
        if op.type == INVOKE:
            invoked[op.process] = pos
            continue
        start = invoked.pop(op.process, None)
        if op.type != OK or start is None or history[start].f != "read":
            continue
        value = op.value
        if isinstance(value, float) and value.is_integer():
            changes[pos] = Op(op.type, op.f, int(value), op.process, op.time, op.index,
                              dict(op.extra))
        elif not isinstance(value, int | float) or isinstance(value, bool):
            changes[start] = changes[pos] = None
            ill_typed.append(op)
    if not changes:
        return history, ill_typed
    out = [changes.get(pos, op) for pos, op in enumerate(history)]
    return [op for op in out if op is not None], ill_typed


def _ill_typed_detail(op: Op) -> dict[str, Any]:
    return {"process": op.process, "node": op.extra.get("node"), "time": _seconds(op),
            "value": op.value, "explanation": f"read returned {op.value!r}"[:200]}


class NumericReads:
    """Another checker (the linearizability one), given the history with its counter
    reads made numbers (see ``numeric_reads``); the counter checker reports the rest."""

    def __init__(self, checker: Checker) -> None:
        self.checker = checker

    def check(self, test: Test | None, history: list[Op]) -> Result:
        return self.checker.check(test, numeric_reads(history)[0])
