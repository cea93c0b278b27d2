"""Step functions equal to the built-in models' ``step``, on values frozen beforehand.

The search calls ``step`` hundreds of thousands of times; the models' own steps freeze
their arguments on every call and go through a method or two (a kv key's through
three). Freezing once per op and stepping with these plain functions makes the search
about twice as fast. Each is tied to one exact model class, and
``tests/test_linearizable.py`` checks it against that class's ``step`` on random states
and ops, so a change to a model that is not mirrored here fails the tests rather than
the verdicts.

Commoner still are steps that need no call at all: a read fits only the state it
returned, a write's new state is its argument, a cas fits only its old value. A model's
*guard* gives, per op, the state the op needs (``ANY`` when it fits every state) and its
effect (``SAME`` state, a fixed new state, or ``CALL`` the step), so the search decides
most candidates with one comparison, inline. The tests check guards against the models'
steps too.

Models with no fast step go through ``NumberedSteps``: their own step, once per state
and op.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from checkers.models import (
    INCONSISTENT,
    UNKNOWN,
    CasRegister,
    Counter,
    Model,
    Mutex,
    Register,
    Sentinel,
)

Step = Callable[[Any, str, Any, Any], Any]
Guard = Callable[[str, Any, Any], tuple[Any, Any]]


ANY: Any = Sentinel("ANY")
"""A guard's need: the op fits every state."""
SAME: Any = Sentinel("SAME")
"""A guard's effect: the state stays as it is."""
CALL: Any = Sentinel("CALL")
"""A guard's effect: only the step function can tell (it may still be inconsistent)."""
MEMO: Any = Sentinel("MEMO")
"""The effect of every op of a model with no fast step: the search looks the step up, or
makes it, in ``NumberedSteps``."""
DEAD: Any = Sentinel("DEAD")
NO_COUNT: Any = Sentinel("NO_COUNT")
"""The guard of a counter read whose value equals no count."""
"""A kv key's value that no op still to come can observe (see ``dead_value_test``)."""


def counter_step(state: int, f: str, arg: Any, result: Any) -> Any:
    if f == "read":  # a boolean is not a count, though Python says True == 1
        if result is UNKNOWN or (result == state and type(result) is not bool):
            return state
        return INCONSISTENT
    if f == "add":
        return state + arg
    raise ValueError(f"counter model has no operation {f!r}")


def register_step(state: Any, f: str, arg: Any, result: Any) -> Any:
    if f == "read":
        return state if result is UNKNOWN or result == state else INCONSISTENT
    if f == "write":
        return arg
    raise ValueError(f"register model has no operation {f!r}")


def cas_register_step(state: Any, f: str, arg: Any, result: Any) -> Any:
    if f == "read":
        return state if result is UNKNOWN or result == state else INCONSISTENT
    if f == "write":
        return arg
    if f == "cas":
        return arg[1] if arg[0] == state else INCONSISTENT
    raise ValueError(f"cas-register model has no operation {f!r}")


def kv_key_step(state: Any, f: str, arg: Any, result: Any) -> Any:
    """One kv key's value (``KV.step_value``): a cas-register with ``append``."""
    if f == "append":
        return arg if state is None else state + arg
    return cas_register_step(state, f, arg, result)


def mutex_step(state: bool, f: str, arg: Any, result: Any) -> Any:
    if f == "acquire":
        return True if not state else INCONSISTENT
    if f == "release":
        return False if state else INCONSISTENT
    raise ValueError(f"mutex model has no operation {f!r}")


def register_guard(f: str, arg: Any, result: Any) -> tuple[Any, Any]:
    """(need, effect) of a register op, frozen values; a read that crashed fits all."""
    if f == "read":
        return (ANY if result is UNKNOWN else result), SAME
    if f == "write":
        return ANY, arg
    return ANY, CALL  # the step raises the model's error for an unknown op


def cas_register_guard(f: str, arg: Any, result: Any) -> tuple[Any, Any]:
    """Also for a kv key, whose ``append`` goes through ``CALL``."""
    if f == "cas" and isinstance(arg, tuple) and len(arg) == 2:
        return arg[0], arg[1]
    return register_guard(f, arg, result)


def counter_guard(f: str, arg: Any, result: Any) -> tuple[Any, Any]:
    if f == "read":
        if type(result) is bool:   # matches no count (see counter_step)
            return NO_COUNT, SAME
        return (ANY if result is UNKNOWN else result), SAME
    return ANY, CALL


GUARDS: dict[type, Guard] = {
    Counter: counter_guard, Register: register_guard, CasRegister: cas_register_guard,
}

FAST_STEPS: dict[type, Step] = {
    Counter: counter_step, Register: register_step, CasRegister: cas_register_step,
    Mutex: mutex_step,
}


def fast_step(model: Model) -> Step | None:
    """The plain step function for ``model``'s exact class, or None (use its ``step``).
    A kv key's model (``checkers.partitions.KeyModel``) names ``kv_key_step`` itself."""
    return getattr(model, "fast_step", None) or FAST_STEPS.get(type(model))


def fast_guard(model: Model) -> Guard | None:
    """The guard for ``model``'s exact class (a kv key's model names its own), or None:
    every op then goes through ``CALL``. Only models with a ``fast_step`` have one."""
    return getattr(model, "fast_guard", None) or GUARDS.get(type(model))


def append_target(f: int, nxt: list[int], ent_op: list[int], pure: list[bool],
                  need: list[Any], then: list[Any]) -> Any:
    """For a model whose ``CALL`` steps only extend the state (``calls_extend``: a kv
    key's appends), in the search's current configuration: the value the op of return
    entry ``f`` (the first return entry) must read, when every state until it is
    linearized can only extend the current one; else None.

    That op must be linearized before any op invoked after ``f``, so until then only
    the candidates (the call entries before ``f``) can go first. If it is read-only and
    none of them sets the state (a write or cas), the next state must be a prefix of
    what it read (``extends_to``), or the read can never fit: appends in any other
    order are dead ends, cut at once instead of found out ops later.
    """
    x = ent_op[f]
    if x > -2 or not pure[-2 - x]:
        return None
    target = need[-2 - x]
    if not isinstance(target, str | tuple):
        return None
    w = nxt[0]
    while w != f:
        o = ent_op[w]
        if not pure[o] and then[o] is not CALL:
            return None
        w = nxt[w]
    return target


def extends_to(state: Any, target: Any) -> bool:
    """Whether appending may still turn ``state`` into ``target``."""
    return type(state) is type(target) and target[:len(state)] == state


def dead_value_test(needs: Sequence[Any]) -> Callable[[Any], bool] | None:
    """For a model whose ``CALL`` steps only extend the state (a kv key's appends): a test
    telling values that no op of the history can ever observe, or None.

    Only ops with a need (an ok read, a cas) observe the value. If a value is a prefix
    of no needed value, neither is any extension of it: from it, reads and cases never
    fit, appends lead to another such value, and writes set a value of their own. Every
    such value so behaves the same from here on, and the search may treat them all as
    one, ``DEAD``: orders of appends that a later write wipes out unread are then one
    configuration, not one per order.
    """
    by_type: dict[type, list[Any]] = {}
    for v in needs:
        if isinstance(v, str | tuple):
            by_type.setdefault(type(v), []).append(v)
    try:
        for values in by_type.values():
            values.sort()
    except TypeError:  # tuples of values that do not compare: no test
        return None

    def is_dead(value: Any) -> bool:
        if not isinstance(value, str | tuple):
            return False
        values = by_type.get(type(value))
        if values is None:
            return True
        i = bisect_left(values, value)  # values starting with ``value`` come first
        return i == len(values) or values[i][:len(value)] != value

    return is_dead


def dead_aware(step: Step, is_dead: Callable[[Any], bool]) -> Step:
    """``step`` for a kv key's appends, on values where dead ones are all ``DEAD``."""
    def step_alive(state: Any, f: str, arg: Any, result: Any) -> Any:
        if state is DEAD and f == "append":
            return DEAD
        new = step(state, f, arg, result)
        return DEAD if is_dead(new) else new
    return step_alive


class NumberedSteps:
    """A model's own step on numbered states, each (state, op) stepped once.

    A model without a fast step may be costly to step (a whole map rebuilt per step),
    and the search's scan meets the same op in the same state again and again as it
    restarts from the head; so states get numbers (equal states, one number), the
    search looks ``memo[number * n + first_same[o]]`` up and calls ``step`` only when
    that is missing. Identical ops (same f, argument and result) share their steps.
    Sound because a model is a sequential specification: its step is a function of the
    state and the op, nothing else.
    """

    def __init__(self, model: Model, fs: Sequence[str], args: Sequence[Any],
                 results: Sequence[Any]) -> None:
        initial = model.init()
        self.states: list[Any] = [initial]
        self.memo: dict[int, Any] = {}
        # Same repr, not just ==: a model may tell 1 from 1.0 or True, or a list
        # from a tuple.
        first: dict[str, int] = {}
        self.first_same = [first.setdefault(repr(op), o)
                           for o, op in enumerate(zip(fs, args, results))]
        self.step = self._stepper(model, fs, args, results)

    def _stepper(self, model: Model, fs: Sequence[str], args: Sequence[Any],
                 results: Sequence[Any]) -> Callable[[int, int], Any]:
        """``step(number, o)``: the number of the state after op ``o`` in state
        ``number``, or INCONSISTENT; remembered in ``memo``. A closure over locals,
        since the search calls it hundreds of thousands of times."""
        model_step, states, memo, first_same = model.step, self.states, self.memo, \
            self.first_same
        numbers: dict[Any, int] = {states[0]: 0}
        n = len(fs)

        def step(number: int, o: int) -> Any:
            new = model_step(states[number], fs[o], args[o], results[o])
            if new is not INCONSISTENT:
                count = len(states)
                new_state, new = new, numbers.setdefault(new, count)
                if new == count:
                    states.append(new_state)
            memo[number * n + first_same[o]] = new
            return new

        return step
