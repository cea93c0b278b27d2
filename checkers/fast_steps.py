"""Step functions equal to the built-in models' ``step``, on values frozen beforehand.

The search calls ``step`` hundreds of thousands of times; the models' own steps freeze
their arguments on every call and go through a method or two (a kv key's through
three). Freezing once per op and stepping with these plain functions makes the search
about twice as fast. Each is tied to one exact model class, and
``tests/test_linearizable.py`` checks it against that class's ``step`` on random states
and ops, so a change to a model that is not mirrored here fails the tests rather than
the verdicts.
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


FAST_STEPS: dict[type, Step] = {
    Counter: counter_step, Register: register_step, CasRegister: cas_register_step,
    Mutex: mutex_step,
}


def fast_step(model: Model) -> Step | None:
    """The plain step function for ``model``'s exact class, or None (use its ``step``).
    A kv key's model (``checkers.partitions.KeyModel``) names ``kv_key_step`` itself."""
    return getattr(model, "fast_step", None) or FAST_STEPS.get(type(model))
