"""Jepsen-style bounds for counters with arbitrary deltas: a fast, exact refutation.

A read taking effect somewhere in its interval sees every ``ok`` add that returned
before it was invoked, may see any add invoked before it returned (ok or crashed), and
sees nothing invoked after it. So its value lies in
``[initial + definite + negative optional, initial + definite + positive optional]``.
A read outside those bounds cannot be linearized, whatever the order; a read inside
them may still be impossible (which subset of the in-flight adds sums to it is subset
sum), so passing the bounds sends the history on to the search. One sweep over the
history computes every read's bounds: O(n log n).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate

from checkers.calls import Call


@dataclass
class BoundsViolation:
    read: Call
    low: int
    high: int
    definite: list[Call]
    """ok adds that returned before the read was invoked."""
    in_flight: list[Call]
    """Adds invoked before the read returned, not among ``definite``."""


def check_counter_bounds(calls: list[Call], initial: int) -> BoundsViolation | None:
    """The first read (in return order) outside its bounds, or None.

    ``calls`` are the counter's ``add`` and ok ``read`` calls (crashed reads dropped).
    """
    adds = [c for c in calls if c.f == "add"]
    by_start = sorted(adds, key=_start)
    starts = [c.start for c in by_start]
    pos_by_start = [0, *accumulate(max(c.arg, 0) for c in by_start)]
    neg_by_start = [0, *accumulate(min(c.arg, 0) for c in by_start)]
    done = sorted((c for c in adds if c.end is not None), key=_end)
    ends = [_end(c) for c in done]
    pos_by_end = [0, *accumulate(max(c.arg, 0) for c in done)]
    neg_by_end = [0, *accumulate(min(c.arg, 0) for c in done)]
    reads = sorted((c for c in calls if c.f == "read"), key=_end)
    for r in reads:
        k_done = bisect_left(ends, r.start)  # ok adds returned before the read began
        k_started = bisect_left(starts, _end(r))  # adds invoked before the read returned
        low = initial + pos_by_end[k_done] + neg_by_start[k_started]
        high = initial + pos_by_start[k_started] + neg_by_end[k_done]
        v = r.result
        # Numbers compare as numbers, as the model's step does (a read of 2.0 is a read
        # of 2); a non-number matches no count.
        if not (type(v) is int or type(v) is float) or not low <= v <= high:
            definite = done[:k_done]
            seen = {id(c) for c in definite}
            in_flight = [c for c in by_start[:k_started] if id(c) not in seen]
            return BoundsViolation(r, low, high, definite, in_flight)
    return None


def _start(c: Call) -> int:
    return c.start


def _end(c: Call) -> int:
    """A completed call's end (the calls sorted by it all have one)."""
    assert c.end is not None
    return c.end
