"""Counterexamples in plain words, from whichever analyzer found the history invalid.

Each analyzer knows a different kind of reason (the search: the deepest configuration
it reached; the unique-register zones: two values that had to be in place at once; the
counter bounds: a read outside what any order allows). This module turns each into a
``Counterexample`` phrased for the model, so a person reads about registers, counts,
locks and sets rather than about configurations.
"""

from __future__ import annotations

from typing import Any

from checkers.calls import Call, SearchOutcome
from checkers.counter_bounds import BoundsViolation
from checkers.counterexample import Counterexample, OpView
from checkers.models import UNKNOWN, Model
from checkers.register_unique import Violation
from harness.history import OK

MAX_CONCURRENT_SHOWN = 20


def view(c: Call) -> OpView:
    comp = c.completion
    shown = comp.value if comp is not None and comp.type == OK and comp.value is not None \
        else c.invoke.value
    return OpView(c.invoke.process, c.f, shown, comp.type if comp is not None else "info",
                  _seconds(c.invoke.time), _seconds(comp.time) if comp is not None else None,
                  c.invoke.index)


def from_search(model: Model, out: SearchOutcome, key: Any = None) -> Counterexample:
    """The search's deepest configuration, told as the op that could not follow it."""
    b = out.blocked
    state = model.describe(out.state)
    where = _key_prefix(key)
    n = len(out.prefix)
    after = (f"after the longest linearizable prefix ({n} op{'s' if n != 1 else ''})"
             if n else "at the start")
    if b is None:  # cannot happen for an invalid search; said plainly if it does
        text = f"{where}no order of the operations is linearizable; {after}: {state}"
        return Counterexample(OpView(None, "?", None, "?", None, None), text, state,
                              [view(c) for c in out.prefix])
    k = len(out.pending)
    who = f"{b.f} {_show(_shown_value(b))} on process {b.invoke.process} {_when(b)}"
    v = _shown_value(b)
    name = model.name

    def nothing(order: str, does: str) -> str:
        """The closing clause: what no concurrent operation could do."""
        if k == 0:
            return "and no other operation could still come before it"
        return f"and no {order} of the {k} operation{'s' if k != 1 else ''} concurrent " \
               f"with it {does}"

    if b.f == "read" and name == "counter":
        text = (f"{who}, but the count was {out.state} {after}, "
                f"{nothing('subset', f'brings it to {_show(v)}')}")
    elif b.f == "read" and name in ("register", "cas-register", "kv", "kv key"):
        held = _register_value(out.state, model, key)
        text = (f"{who}, but the register held {held} {after}, "
                f"{nothing('order', f'leaves {_show(_unkey(v, model))} in it')}")
    elif b.f == "read" and name == "set":
        text = (f"{who}, but the set was {state} {after}, "
                f"{nothing('order', 'makes it exactly what was read')}")
    elif b.f == "cas":
        held = _register_value(out.state, model, key)
        old = _show(_unkey(b.arg, model)[0])
        text = (f"{who} succeeded, but the register held {held} {after}, "
                f"{nothing('order', f'leaves {old} in it first')}")
    elif b.f in ("acquire", "release"):
        does = "releases it first" if b.f == "acquire" else "lets a holder release it"
        text = (f"{b.f} on process {b.invoke.process} {_when(b)} succeeded, but the lock "
                f"was {state} {after}, {nothing('order', does)}")
    elif b.f == "txn":
        text = (f"{who} saw values the registers never held together: they held {state} "
                f"{after}, {nothing('order', 'gives what it saw')}")
    else:
        text = (f"{who} cannot be linearized: the state is {state} {after}, "
                f"{nothing('order', 'makes it possible')}")
    shown = sorted(out.pending, key=lambda c: c.start)[:MAX_CONCURRENT_SHOWN]
    return Counterexample(view(b), where + text, state, [view(c) for c in out.prefix],
                          [view(c) for c in shown])


def from_zones(v: Violation, key: Any = None) -> Counterexample:
    """A unique-values register violation, told by the ops that pin the values down."""
    op = v.op
    who = f"{op.f} {_show(_shown_value(op))} on process {op.invoke.process} {_when(op)}"
    if v.kind == "never-written":
        text = f"{who}, but no operation ever wrote {_show(v.value)}"
    elif v.kind == "read-before-write":
        w = v.involved[0]
        assert w is not None   # the write is always there for this kind
        text = (f"{who} returned before the only write of {_show(v.value)} "
                f"(process {w.invoke.process}, {_when(w)}) was even invoked")
    elif v.kind == "zones-overlap":
        outer, inner = v.explanation_facts["outer"], v.explanation_facts["inner"]
        text = (f"{who}, but the register had to hold {_show(inner.value)} {_span(inner)}, "
                f"which overlaps the time {_show(outer.value)} had to stay in it, "
                f"{_span(outer)}; each value was written only once, so no order fits both")
    else:
        outer, inner = v.explanation_facts["outer"], v.explanation_facts["inner"]
        w = inner.write
        origin = "the initial value" if outer.write is None else "written only once"
        text = (f"{who}, but {_show(inner.value)} was written over it in between (by "
                f"process {w.invoke.process}, {_when(w)} to {_when(w, end=True)}), while "
                f"{_show(outer.value)} had to stay in the register {_span(outer)}, "
                f"and {_show(outer.value)} was {origin}")
    involved = [view(c) for c in v.involved if c is not None and c is not op]
    return Counterexample(view(op), _key_prefix(key) + text, "", [], involved)


def from_bounds(v: BoundsViolation) -> Counterexample:
    r = v.read
    total_in_flight = len(v.in_flight)
    text = (f"read {_show(r.result)} on process {r.invoke.process} {_when(r)}, but the "
            f"count could only be between {v.low} and {v.high} then: {len(v.definite)} "
            f"adds had completed before it began, and {total_in_flight} more were in "
            f"flight during it")
    shown = v.in_flight[:MAX_CONCURRENT_SHOWN]
    return Counterexample(view(r), text, "", [], [view(c) for c in shown])


def _span(cluster: Any) -> str:
    """When a value had to be in the register: from the earliest return among the ops
    that wrote or read it until the latest invocation among them."""
    a, b = cluster.first_end_op, cluster.last_start_op
    start = "from the start" if a is None else \
        f"from {_when(a, end=True)[3:]} ({a.f} by process {a.invoke.process} returned)"
    return f"{start} until {_when(b)[3:]} ({b.f} by process {b.invoke.process} began)"


def _shown_value(c: Call) -> Any:
    """What a person wants to see of an op: what it returned, if known, else its
    argument (a read's value, a txn's reads filled in, a write's value)."""
    return c.arg if c.result is UNKNOWN or c.result is None else c.result


def _unkey(v: Any, model: Model) -> Any:
    """The register value of a kv op's ``[key, v]``; other models' values as they are."""
    if model.name == "kv" and isinstance(v, list | tuple) and len(v) == 2:
        return v[1]
    return v


def _register_value(state: Any, model: Any, key: Any) -> str:
    """The register's value in ``state``; a kv state holds (key, value) pairs."""
    if model.name == "kv":
        state = dict(state).get(key, model.register.initial)
    return _show(state)


def _key_prefix(key: Any) -> str:
    return "" if key is None else f"key {_show(key)}: "


def _when(c: Call, end: bool = False) -> str:
    op = c.completion if end and c.completion is not None else c.invoke
    if op.time >= 0:
        return f"at {op.time / 1e9:.3f} s"
    return f"at history index {op.index}"


def _seconds(t: int) -> float | None:
    return t / 1e9 if t >= 0 else None


def _show(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return repr(v) if isinstance(v, str) else str(v)
