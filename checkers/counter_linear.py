"""Exact linearizability of a unit-increment counter in O(n log n).

The general search is exponential in the worst case; a counter whose every ``add`` is
exactly 1 has a structure that makes the question a matching problem instead.

Write ``w = value - initial`` for an ok read (its *rank*: how many increments it saw).
In a linearization, give every included increment its position k = 1, 2, ... among
the increments; a read of rank w sits between the w-th and the (w+1)-th. Real time
constrains:

* read r before read r' (r ends before r' begins): w(r) <= w(r');
* increment i before read r: k(i) <= w(r), so k(i) <= U(i), the smallest rank of an
  ok read that began after i ended (no such read: U = infinity);
* read r before increment i: k(i) > w(r), so k(i) >= L(i), one more than the largest
  rank of an ok read that ended before i began (no such read: L = 1);
* increment before increment: no constraint worth keeping. Increments are identical,
  and if i ends before j begins then L(i) <= L(j) and U(i) <= U(j), so two positions
  that violate their order can be swapped without breaking any bound; each swap raises
  sum(k * start) and so the swapping ends.

Conversely positions that satisfy the bounds, plus reads that never go backwards, give
a linearization: increments in position order, each read between its w-th and
(w+1)-th increment, reads of equal rank in invocation order. Failed adds did not
happen; crashed adds (info, or never completed) have U = infinity and may be left out;
crashed reads constrain nothing.

So with W the largest rank read, the history is linearizable iff
(a) every ok read is a whole number >= initial, (b) no read follows a read of a larger
value, and the increments can fill positions 1..W, each position with a distinct
increment inside its [L, U], while every *mandatory* increment (ok, with a later ok
read, so U <= W) gets one of those positions (the rest go above W or are dropped).
By the Mendelsohn-Dulmage theorem that holds iff both sides can be matched separately:
(c) the mandatory intervals fit into distinct positions: an earliest-deadline-first
sweep decides it, and on failure yields a window [a, d] holding more mandatory
intervals than positions; that is two reads with too many increments acknowledged
between them (or one read with too many acknowledged before it); and
(d) positions 1..W can all be filled. Given (c), an earliest-deadline-first sweep that
prefers mandatory intervals places them exactly as the mandatory-only sweep does, so
it can only run dry at a position p when fewer than p increments have L <= p: (d) is
the plain upper bound "every ok read's rank is at most the number of adds, not
failed, invoked before it completed".

``tests/test_counter_linear.py`` checks the verdict against the brute-force oracle.
"""

from __future__ import annotations

import bisect
import heapq
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from checkers.counter_explain import ANALYZER, Explainer, Reads, invalid, whole
from checkers.counter_timeline import ColumnTimeline, ListTimeline, Timeline, TooWide
from harness.history import FAIL, INVOKE, NEMESIS, OK, HistoryError, Op
from harness.reading import gc_paused


def check_unit_counter(history: list[Op], initial: int = 0) -> dict | None:
    """The exact verdict for a history of ``add 1`` and ``read``; None if it has others.

    Real-time order is history order. Nemesis ops are ignored.
    """
    with gc_paused():
        scan = _scan(history, initial)
    return None if scan is None else _verdict(scan, ListTimeline(history), initial)


def check_unit_counter_streaming(read: Callable[[bool], Iterable[OpLike]], initial: int = 0,
                                 *, explain_from: int = 0) -> dict | None:
    """``check_unit_counter``'s verdict for a history too long to hold as ops:
    ``read(plain)`` streams it (a reader of a file; ``plain``: with the ``time`` and
    ``index`` an ``Op`` would have), once to decide and, if it is invalid, again into
    columns (``ColumnTimeline``) to explain why. None when the history has other ops,
    a read that is not a whole number (the caller's full check names an ill-typed one),
    a time or index past 64 bits, or is invalid with fewer than ``explain_from`` ops
    (the caller's full check then adds the search's linearizable prefix)."""
    with gc_paused():
        scan = _scan(read(False), initial)
        if scan is None:
            return None
        verdict = _verdict(scan, None, initial)
        if verdict is not None or scan.bad_read is not None or scan.ops < explain_from:
            return verdict
        timeline = ColumnTimeline(read(True))
        try:
            return _verdict(scan, timeline, initial)
        except TooWide:
            return None
        finally:
            timeline.close()


class OpLike(Protocol):
    """What the scan reads of an op (``Op``, or a reader's record of one line)."""

    @property
    def type(self) -> str: ...
    @property
    def f(self) -> str: ...
    @property
    def value(self) -> Any: ...
    @property
    def process(self) -> Any: ...
    @property
    def index(self) -> int | float: ...


@dataclass
class _Scan:
    """What one pass over the history keeps: positions, ranks and counts."""

    ops: int
    max_seen: int
    inc_end: array[int]
    inc_low: list[int]
    failed_starts: array[int]
    reads: Reads
    rd_adds: array[int]
    bad_read: int | None
    backwards: int | None


def _scan(history: Iterable[OpLike], initial: int) -> _Scan | None:
    open_: dict[Any, tuple[int, int, bool]] = {}
    max_seen = 0  # largest rank of an ok read completed so far
    attempted = 0  # adds invoked so far
    inc_end = array("q")  # ok increments, in completion order
    inc_low: list[int] = []
    failed_starts = array("q")
    rd_start = array("q")  # ok reads with a whole-number value, in completion order
    rd_end = array("q")
    rd_rank: list[int] = []
    rd_adds = array("q")  # adds invoked before the read completed
    bad_read: int | None = None  # completion position of a read no count can explain
    backwards: int | None = None  # index into rd_* of a read below an earlier read
    ops = 0
    pop, setdefault = open_.pop, open_.setdefault
    for pos, op in enumerate(history):
        process = op.process
        t = op.type
        if t == INVOKE:
            f = op.f
            if process == NEMESIS:
                continue
            if f == "add" and op.value == 1 and type(op.value) is int:
                entry = (pos, max_seen + 1, True)
            elif f == "read":
                entry = (pos, max_seen, False)
            else:
                entry = None
            if entry is None or setdefault(process, entry) is not entry:
                if process in open_:
                    raise HistoryError(f"op {op.index}: process {process} invoked again "
                                       "while its previous op was still in flight")
                return None
            attempted += entry[2]
            ops += 1
            continue
        entry = pop(process, None)   # (a nemesis op is never open)
        if entry is None:
            if process == NEMESIS:
                continue
            raise HistoryError(f"op {op.index}: {t} for process {process} "
                               "with no invocation")
        start, bound, is_add = entry
        if is_add:
            if t == OK:
                inc_end.append(pos)
                inc_low.append(bound)
            elif t == FAIL:
                failed_starts.append(start)
        elif t == OK:
            value = op.value if type(op.value) is int else whole(op.value)
            if value is None or value < initial:
                if bad_read is None:
                    bad_read = pos
                continue
            rank = value - initial
            if rank < bound and backwards is None:
                backwards = len(rd_rank)
            if rank > max_seen:
                max_seen = rank
            rd_start.append(start)
            rd_end.append(pos)
            rd_rank.append(rank)
            rd_adds.append(attempted)

    return _Scan(ops, max_seen, inc_end, inc_low, failed_starts,
                 Reads(rd_start, rd_end, rd_rank), rd_adds, bad_read, backwards)


def _verdict(scan: _Scan, history: Timeline | None, initial: int) -> dict | None:
    """The verdict from a scan; with no ``history``, None where it would be invalid."""
    ops, reads, max_seen = scan.ops, scan.reads, scan.max_seen
    bad_read, backwards, failed_starts = scan.bad_read, scan.backwards, scan.failed_starts
    rd_end, rd_rank, rd_adds = reads.end, reads.rank, scan.rd_adds
    inc_end, inc_low = scan.inc_end, scan.inc_low
    explain = None if history is None else Explainer(history, initial)
    if bad_read is not None:
        return None if explain is None else invalid(ops, *explain.bad_read(bad_read))
    if backwards is not None:
        return None if explain is None else invalid(ops, *explain.backwards(reads, backwards))
    failed_starts = array("q", sorted(failed_starts))
    too_high = _read_above_attempts(rd_end, rd_rank, rd_adds, failed_starts)
    if too_high is not None:
        begun = rd_adds[too_high] - bisect.bisect_left(failed_starts, rd_end[too_high])
        return None if explain is None else invalid(
            ops, *explain.above_attempts(reads, too_high, begun))
    base = max_seen + 2  # exceeds every L and U below, so L * base + U sorts by L
    mandatory = [lo * base + up for lo, up in zip(inc_low, _upper_bounds(inc_end, reads))
                 if up is not None]
    deadline = _missed_deadline(mandatory, base)
    if deadline is not None:
        return None if explain is None else invalid(ops, *explain.crowded(
            reads, mandatory, base, deadline, inc_end))
    return {"valid": True, "model": "counter", "analyzer": ANALYZER, "ops": ops,
            "anomalies": []}


def _read_above_attempts(rd_end: Sequence[int], rd_rank: list[int], rd_adds: Sequence[int],
                         failed_starts: Sequence[int]) -> int | None:
    """The first read whose rank exceeds the adds invoked (and not failed) before it
    completed: condition (d). ``failed_starts`` is sorted."""
    if not failed_starts:
        return next((i for i, (rank, adds) in enumerate(zip(rd_rank, rd_adds))
                     if rank > adds), None)
    failed = 0
    for i, (end, rank, adds) in enumerate(zip(rd_end, rd_rank, rd_adds)):
        while failed < len(failed_starts) and failed_starts[failed] < end:
            failed += 1
        if rank > adds - failed:
            return i
    return None


def _upper_bounds(inc_end: Sequence[int], reads: Reads) -> list[int | None]:
    """For each ok increment (ends ascending), the least rank of an ok read that began
    after it ended, or None."""
    order = sorted(range(len(reads.start)), key=reads.start.__getitem__)
    starts = [reads.start[i] for i in order]
    ranks = [reads.rank[i] for i in order]
    out: list[int | None] = [None] * len(inc_end)
    k = len(starts)
    least: int | None = None
    for i in range(len(inc_end) - 1, -1, -1):
        end = inc_end[i]
        while k and starts[k - 1] > end:
            k -= 1
            if least is None or ranks[k] < least:
                least = ranks[k]
        out[i] = least
    return out


def _missed_deadline(intervals: list[int], base: int) -> int | None:
    """Earliest-deadline-first placement of intervals [L, U], given as L * base + U,
    on distinct integer positions; the deadline U of one that cannot be placed, or None.
    """
    heappop, heappush = heapq.heappop, heapq.heappush
    heap: list[int] = []
    position = 1
    for code in sorted(intervals):
        lo, up = divmod(code, base)
        while heap and position < lo:
            deadline = heappop(heap)
            if deadline < position:
                return deadline
            position += 1
        position = max(position, lo)
        heappush(heap, up)
    while heap:
        deadline = heappop(heap)
        if deadline < position:
            return deadline
        position += 1
    return None
