"""The set-full checker: what became of every element added to a set, as Jepsen reports it.

The history has ``add e`` ops and ``read`` ops returning the whole set. An element is
*known* from the moment its add was acknowledged (``ok``) or a read returned it,
whichever came first; from then on every read that *began* later must contain it, if the
set is linearizable. Each read is judged by its invocation, against that moment (history
order is real-time order). Per element, over the ``ok`` reads that began after it was
known:

* ``stable``: it was in every one of them;
* ``lost``: it was missing from one, and from every read begun after that one
  (acknowledged, and never or no longer read);
* ``stale``: it was missing from one but came back in a read begun later (a stale read);
* ``never-read``: no read began after it was known (nothing to check).

Elements that no add ever tried to add but a read returned are ``unexpected``; an element
whose add definitely ``fail``-ed but a read returned is ``failed-add-present`` (the
client's ``fail`` promised it did not happen). Lost, unexpected and failed-add-present
are always invalid (each element is added at most once, as the set workload
does); stale is invalid for a linearizable set (``linearizable=True``, the
default) and only reported otherwise.

For each acknowledged element that some read returned, the *visibility latency* is how
long after the acknowledgement the first read that returned it was invoked (0 when that
read began before the acknowledgement): its quantiles, and the slowest elements, are
reported. A ``read`` whose value is not a list is ill-typed: left out, and reported.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from checkers.base import UNKNOWN, Result
from checkers.models import freeze
from harness.history import FAIL, INFO, INVOKE, NEMESIS, OK, Op

EXAMPLES = 10
"""Elements listed per anomaly, and slowest elements listed."""


@dataclass
class _Add:
    invoked: int  # history position of the invocation
    outcome: str = INFO  # ok, fail or info (a crashed or unfinished add stays info)
    acked: int | None = None  # position of the ok completion
    acked_ns: int | None = None


@dataclass
class _Read:
    invoked: int
    invoked_ns: int
    completed: int
    elements: frozenset


@dataclass
class Fate:
    """What became of one element (positions are history positions)."""

    element: Any
    outcome: str  # stable, lost, stale, never-read, unexpected, failed-add-present
    known: int | None = None
    visible_ms: float | None = None


@dataclass
class _Parsed:
    adds: dict[Hashable, _Add] = field(default_factory=dict)
    reads: list[_Read] = field(default_factory=list)
    ill_typed: list[Any] = field(default_factory=list)


def _parse(history: list[Op]) -> _Parsed:
    out = _Parsed()
    pending: dict[Any, tuple[int, Op]] = {}
    for pos, op in enumerate(history):
        if op.process == NEMESIS or op.f not in ("add", "read"):
            continue
        if op.type == INVOKE:
            pending[op.process] = (pos, op)
            if op.f == "add":
                out.adds.setdefault(freeze(op.value), _Add(pos))
            continue
        started = pending.pop(op.process, None)
        if started is None:
            continue
        inv_pos, invoke = started
        if op.f == "add":
            add = out.adds[freeze(invoke.value)]
            if op.type == OK and add.acked is None:
                add.outcome, add.acked, add.acked_ns = OK, pos, op.time
            elif op.type == FAIL and add.outcome == INFO and add.invoked == inv_pos:
                add.outcome = FAIL
        elif op.type == OK:
            if isinstance(op.value, list | tuple):
                try:  # numbers and strings, as the set workload's, are hashable as read
                    elements = frozenset(op.value)
                except TypeError:
                    elements = frozenset(freeze(x) for x in op.value)
                out.reads.append(_Read(inv_pos, invoke.time, pos, elements))
            else:
                out.ill_typed.append(op.value)
    out.reads.sort(key=lambda r: r.invoked)
    return out


def fates(history: list[Op]) -> tuple[list[Fate], _Parsed]:
    """Every element's fate, in order of first appearance."""
    parsed = _parse(history)
    reads = parsed.reads
    starts = [r.invoked for r in reads]
    present: defaultdict[Hashable, list[int]] = defaultdict(list)
    for i, r in enumerate(reads):  # the sum of all reads' sizes: the one big loop
        for e in r.elements:
            present[e].append(i)
    out = []
    for e, add in parsed.adds.items():
        seen = present.get(e) or []
        if add.outcome == FAIL and seen:
            out.append(Fate(e, "failed-add-present"))
            continue
        candidates = [reads[i].completed for i in seen]
        if add.acked is not None:
            candidates.append(add.acked)
        if not candidates:  # never acknowledged, never read: nothing is known of it
            continue
        known = min(candidates)
        out.append(_fate(e, known, add, seen, reads, starts))
    out += [Fate(e, "unexpected") for e in present if e not in parsed.adds]
    return out, parsed


def _fate(e: Any, known: int, add: _Add, seen: list[int], reads: list[_Read],
          starts: list[int]) -> Fate:
    first_after = bisect_right(starts, known)  # reads begun after the element was known
    after = len(reads) - first_after
    seen_after = seen[bisect_left(seen, first_after):]  # `seen` ascends
    visible = None
    if add.acked_ns is not None and seen:
        visible = max(0.0, (reads[seen[0]].invoked_ns - add.acked_ns) / 1e6)
    if after == 0:
        return Fate(e, "never-read", known, visible)
    if len(seen_after) == after:
        return Fate(e, "stable", known, visible)
    # The last read begun after `known` that missed the element, against the last that
    # had it: missing at the end is lost, missing and then back is stale.
    last_absent, j = len(reads) - 1, len(seen_after) - 1
    while j >= 0 and seen_after[j] == last_absent:  # the run of reads that had it
        last_absent, j = last_absent - 1, j - 1
    outcome = "stale" if seen_after and seen_after[-1] > last_absent else "lost"
    return Fate(e, outcome, known, visible)


class SetFull:
    """The checker. ``linearizable``: whether a stale read makes the history invalid."""

    def __init__(self, linearizable: bool = True) -> None:
        self.linearizable = linearizable

    def check(self, test: Any, history: list[Op]) -> Result:
        return check(history, linearizable=self.linearizable)


def check(history: list[Op], *, linearizable: bool = True) -> Result:
    all_fates, parsed = fates(history)
    by: dict[str, list[Fate]] = {}
    for fate in all_fates:
        by.setdefault(fate.outcome, []).append(fate)
    bad = ["lost", "unexpected", "failed-add-present"] + (["stale"] if linearizable else [])
    anomalies = [{"type": kind, "count": len(by[kind]),
                  "examples": [_show(f) for f in by[kind][:EXAMPLES]]}
                 for kind in bad if by.get(kind)]
    if parsed.ill_typed:
        anomalies.append({"type": "ill-typed-read", "count": len(parsed.ill_typed),
                          "examples": parsed.ill_typed[:3]})
    counts = {kind: len(fs) for kind, fs in sorted(by.items())}
    acked = sum(1 for a in parsed.adds.values() if a.outcome == OK)
    result: Result = {
        "valid": True, "anomalies": anomalies, "attempted": len(parsed.adds),
        "acknowledged": acked, "reads": len(parsed.reads), "outcomes": counts,
        "visibility_ms": _latencies(all_fates),
    }
    result["summary"] = _summary(acked, counts, result["visibility_ms"])
    if any(a["type"] != "ill-typed-read" for a in anomalies):
        result["valid"] = False
    elif parsed.ill_typed or (acked and counts.get("never-read", 0) >= len(all_fates)):
        result["valid"] = UNKNOWN
        result["reason"] = ("ill-typed reads" if parsed.ill_typed else
                            "no read began after any element was known: nothing checked")
    return result


def _summary(acked: int, counts: dict[str, int], visibility: dict[str, Any]) -> str:
    told = ", ".join(f"{n:,} {kind}" for kind, n in counts.items()) or "nothing read"
    line = f"{acked:,} acknowledged; {told}"
    if visibility.get("count"):
        line += (f"; first read {visibility['p50']:g} ms after acknowledgement (median), "
                 f"{visibility['max']:g} ms at most")
    return line


def _latencies(all_fates: list[Fate]) -> dict[str, Any]:
    timed = sorted((f for f in all_fates if f.visible_ms is not None),
                   key=lambda f: f.visible_ms or 0.0)
    if not timed:
        return {"count": 0}
    values = [f.visible_ms or 0.0 for f in timed]

    def q(p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 3)

    return {"count": len(values), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
            "max": round(values[-1], 3),
            "slowest": [_show(f) for f in reversed(timed[-EXAMPLES:])]}


def _show(f: Fate) -> dict[str, Any]:
    shown: dict[str, Any] = {"element": f.element}
    if f.visible_ms is not None:
        shown["visible_ms"] = round(f.visible_ms, 3)
    return shown
