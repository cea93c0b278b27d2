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
most candidates with one comparison, inline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from checkers.models import (
    INCONSISTENT,
    UNKNOWN,
    CasRegister,
    Counter,
    Model,
    Mutex,
    Register,
)

Step = Callable[[Any, str, Any, Any], Any]
Guard = Callable[[str, Any, Any], tuple[Any, Any]]


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ANY: Any = _Marker("ANY")
"""A guard's need: the op fits every state."""
SAME: Any = _Marker("SAME")
"""A guard's effect: the state stays as it is."""
CALL: Any = _Marker("CALL")
"""A guard's effect: only the step function can tell (it may still be inconsistent)."""
MEMO: Any = _Marker("MEMO")
"""The effect of every op of a model with no fast step: the search looks up or makes the
step of the numbered state (see ``checkers.search``)."""


def counter_step(state: int, f: str, arg: Any, result: Any) -> Any:
    if f == "read":
        return state if result is UNKNOWN or result == state else INCONSISTENT
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
