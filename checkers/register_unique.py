"""Read/write registers whose written values are all distinct: a polynomial check.

When every write writes a value no other write (nor the initial state) has, each read
names the one write it read from, and linearizability reduces to Gibbons & Korach's
zone conditions (as restated by Golab, Li and Shah, 2011). Cluster each write with the
reads of its value. Let ``f`` be the earliest return and ``s`` the latest invocation in
a cluster. If ``f < s`` the value must be the register's value throughout ``[f, s]``:
a *forward zone*; otherwise the cluster is squeezed into ``[s, f]``: a *backward zone*.
The history is linearizable iff no read returns before its write is invoked, no two
forward zones intersect, and no backward zone lies inside a forward zone. That is
O(n log n) where the general search is exponential.

Crashed ops: a crashed read constrains nothing (the caller drops it). A crashed write
nobody read can be taken never to have happened; one that was read must have happened,
at any time after its invocation, which is exactly an op that returns at +infinity.
The initial value is a write that returned before everything began.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from checkers.calls import Call
from checkers.models import freeze

_NEG_INF = float("-inf")
_POS_INF = float("inf")


@dataclass
class Cluster:
    """A value, its write (None for the initial value), and the two ops bounding its
    zone: the one that returned first and the one invoked last."""

    value: Any
    write: Call | None
    first_end_op: Call | None
    last_start_op: Call | None


@dataclass
class Violation:
    """Why the history is not linearizable, in terms of the ops that show it."""

    kind: str  # "never-written", "read-before-write", "zones-overlap", "zone-inside"
    op: Call
    """The op that cannot be linearized."""
    value: Any
    """The value the register must hold while ``op`` would take effect."""
    involved: list[Call | None]
    """Ops that pin the values down (None where a zone has no such op)."""
    explanation_facts: dict[str, Any]


def applicable(calls: list[Call], initial: Any) -> bool:
    """True when the calls are reads and writes only, with distinct written values that
    differ from the initial value."""
    seen = {freeze(initial)}
    for c in calls:
        if c.f == "write":
            v = _frozen(c.arg)
            if v in seen:
                return False
            seen.add(v)
        elif c.f != "read":
            return False
    return True


def check_unique_register(calls: list[Call], initial: Any) -> Violation | None:
    """None when linearizable, else the first violation found.

    ``calls`` must satisfy ``applicable`` and hold no crashed reads. Cluster k is
    value k's: k = 0 the initial value, then the writes in call order; per cluster
    ``first_end``/``last_start`` track its earliest return and latest invocation.
    """
    initial = freeze(initial)
    cluster_of = {initial: 0}
    writes: list[Call | None] = [None]
    for c in calls:
        if c.f == "write":
            cluster_of[_frozen(c.arg)] = len(writes)
            writes.append(c)
    m = len(writes)
    first_end = [_POS_INF] * m
    first_end_op: list[Call | None] = [None] * m
    last_start = [_NEG_INF] * m
    last_start_op: list[Call | None] = [None] * m
    first_end[0] = _NEG_INF
    for c in calls:
        if c.f == "read":
            k = cluster_of.get(_frozen(c.result))
            if k is None:
                return Violation("never-written", c, _frozen(c.result), [], {})
            assert c.end is not None   # crashed reads are left out (``searchable``)
            if c.end < first_end[k]:
                first_end[k], first_end_op[k] = c.end, c
            if c.start > last_start[k]:
                last_start[k], last_start_op[k] = c.start, c
    forward: list[tuple[float, float, int]] = []
    backward: list[tuple[float, float, int]] = []
    for k in range(m):
        w = writes[k]
        read = last_start_op[k] is not None
        if w is not None:
            if first_end[k] < w.start:
                r = _some(first_end_op[k])
                return Violation("read-before-write", r, _frozen(r.result), [w], {})
            if w.end is None:
                if not read:
                    continue  # a crashed write nobody read: take it as never done
            elif w.end < first_end[k]:
                first_end[k], first_end_op[k] = w.end, w
            if w.start > last_start[k]:
                last_start[k], last_start_op[k] = w.start, w
        elif not read:
            continue
        if first_end[k] < last_start[k]:
            forward.append((first_end[k], last_start[k], k))
        else:
            backward.append((last_start[k], first_end[k], k))

    def cluster(k: int) -> Cluster:
        w = writes[k]
        value = initial if w is None else _frozen(w.arg)
        return Cluster(value, w, first_end_op[k], last_start_op[k])

    forward.sort()
    reach_end, reach = _NEG_INF, -1  # the forward zone reaching furthest so far
    for f, s, k in forward:
        if f < reach_end:
            a, b = cluster(reach), cluster(k)
            return Violation("zones-overlap", _some(a.last_start_op), b.value,
                             [b.first_end_op, b.last_start_op, a.first_end_op],
                             {"inner": b, "outer": a})
        if s > reach_end:
            reach_end, reach = s, k
    starts = [z[0] for z in forward]
    for s, f, k in backward:
        i = bisect_left(starts, s) - 1
        if i >= 0 and f < forward[i][1]:
            outer, inner = cluster(forward[i][2]), cluster(k)
            return Violation("zone-inside", _some(outer.last_start_op), outer.value,
                             [outer.first_end_op, inner.write],
                             {"inner": inner, "outer": outer})
    return None


def _some(c: Call | None) -> Call:
    """The op at a zone's end: a zone compared has one (a read or its write)."""
    assert c is not None
    return c


_ATOMS = frozenset((int, str, float, bool, type(None)))


def _frozen(v: Any) -> Any:
    """``freeze``, skipping the common values that need none."""
    return v if v.__class__ in _ATOMS else freeze(v)
