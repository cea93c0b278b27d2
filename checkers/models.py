"""Sequential specifications for the linearizability checker.

A model is Porcupine's Init/Step/Equal: ``init()`` gives the initial state, and
``step(state, f, arg, result)`` gives the state after an operation, or ``INCONSISTENT``
if the operation could not have returned ``result`` in ``state``. States are hashable
and compared with ``==`` (that is Equal), so the search can memoize on them. A crashed
operation's result is ``UNKNOWN``: it may have taken effect, with any result.

``key_of(arg)`` optionally splits a history into independent sub-histories (one per
key), each checked on its own: P-compositionality. A new model is a small class with these
methods, registered in ``MODELS``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, runtime_checkable


class Sentinel:
    """A named marker value that no history can contain."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


INCONSISTENT: Any = Sentinel("INCONSISTENT")
UNKNOWN: Any = Sentinel("UNKNOWN")


_ATOMS = frozenset({str, int, float, bool, type(None)})


def freeze(v: Any) -> Hashable:
    """Lists become tuples and dicts sorted item tuples, so values can be states."""
    if type(v) in _ATOMS:  # most values: one set lookup, not three isinstance calls
        return v
    if isinstance(v, list | tuple):
        return tuple(freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((freeze(k), freeze(x)) for k, x in v.items()))
    if isinstance(v, set | frozenset):
        return frozenset(freeze(x) for x in v)
    return v


@runtime_checkable
class Model(Protocol):
    name: str

    def init(self) -> Hashable: ...

    def step(self, state: Any, f: str, arg: Any, result: Any) -> Any: ...

    def describe(self, state: Any) -> str:
        """The state in words for counterexamples."""

    # Optional: ``read_only(f, arg) -> bool``, true for ops whose step never changes
    # the state; the search then takes them as forced moves. ``key_of(arg)`` splits a
    # history into independent keys (see KV).


class _ReadIsReadOnly:
    """Models whose only state-preserving op is ``read``."""

    def read_only(self, f: str, arg: Any) -> bool:
        """True for ops whose step never changes the state (the linearizability search
        takes them as soon as they fit, and drops them when they crashed)."""
        return f == "read"


class Counter(_ReadIsReadOnly):
    """``add`` delta (its result is ignored), ``read`` -> the count."""

    name = "counter"

    def __init__(self, initial: int = 0) -> None:
        self.initial = initial

    def init(self) -> int:
        return self.initial

    def step(self, state: int, f: str, arg: Any, result: Any) -> Any:
        if f == "add":
            return state + arg
        if f == "read":  # a boolean is not a count, though Python says True == 1
            if result is UNKNOWN or (result == state and type(result) is not bool):
                return state
            return INCONSISTENT
        raise ValueError(f"counter model has no operation {f!r}")

    def describe(self, state: int) -> str:
        return f"count = {state}"


class Register(_ReadIsReadOnly):
    """``write`` v, ``read`` -> v; the initial value is null unless given."""

    name = "register"

    def __init__(self, initial: Any = None) -> None:
        self.initial = freeze(initial)

    def init(self) -> Hashable:
        return self.initial

    def step(self, state: Any, f: str, arg: Any, result: Any) -> Any:
        if f == "write":
            return freeze(arg)
        if f == "read":
            return state if result is UNKNOWN or freeze(result) == state else INCONSISTENT
        raise ValueError(f"{self.name} model has no operation {f!r}")

    def describe(self, state: Any) -> str:
        return f"value = {_show(state)}"


class CasRegister(Register):
    """A register with ``cas [old, new]``: succeeds only when the value is ``old``."""

    name = "cas-register"

    def step(self, state: Any, f: str, arg: Any, result: Any) -> Any:
        if f == "cas":
            old, new = arg
            return freeze(new) if freeze(old) == state else INCONSISTENT
        return super().step(state, f, arg, result)


class KV(_ReadIsReadOnly):
    """Independent keys: values ``[key, v]`` with cas-register semantics per key, plus
    ``append`` (string or list concatenation, as Porcupine's key-value logs need).

    The state is a tuple of values, one per key in the order this model first met the
    keys (its ``slots``), without trailing initial values: equal maps are equal tuples
    whatever order keys were written in, and a step reads its key's value by index
    instead of scanning the map. States are so only meaningful to the model instance
    that made them. ``key_of`` splits a history by key so each key is searched on its
    own.
    """

    name = "kv"

    def __init__(self, initial: Any = None) -> None:
        self.register = CasRegister(initial)
        self.initial = self.register.initial
        self.slots: dict[Hashable, int] = {}

    def init(self) -> Hashable:
        return ()

    def step(self, state: tuple, f: str, arg: Any, result: Any) -> Any:
        key, v = arg
        try:
            slot = self.slots[key]
        except (KeyError, TypeError):  # a key met first, or one to freeze (a list)
            slot = self.slots.setdefault(freeze(key), len(self.slots))
        n = len(state)
        initial = self.initial
        before = state[slot] if slot < n else initial
        # The common ops on strings inline; the rest as one key's step.
        if f == "append" and type(v) is str and type(before) is str:
            if not v:
                return state
            after = before + v
        else:
            res = result[1] if isinstance(result, list | tuple) else result
            if f == "read" and (res is UNKNOWN or type(res) is str):
                return state if res is UNKNOWN or res == before else INCONSISTENT
            after = self.step_value(before, f, v, res)
            if after is INCONSISTENT:
                return INCONSISTENT
            if after == before:
                return state
        if slot >= n:
            return state + (initial,) * (slot - n) + (after,)
        values = list(state)  # (cheaper than slicing the tuple around the slot)
        values[slot] = after
        if slot == n - 1 and after == initial:  # no trailing initial values
            while values and values[-1] == initial:
                values.pop()
        return tuple(values)

    def step_value(self, before: Any, f: str, v: Any, res: Any) -> Any:
        """One key's step, on that key's value alone (``v`` and ``res`` without the
        key): the checker searches each key on its own with it."""
        if f == "append":
            return freeze(v) if before is None else before + freeze(v)
        return self.register.step(before, f, v, res)

    def key_of(self, arg: Any) -> Hashable:
        return freeze(arg[0])

    def describe(self, state: tuple) -> str:
        keys = list(self.slots)
        pairs = sorted(f"{_show(keys[i])} = {_show(v)}" for i, v in enumerate(state)
                       if v != self.initial)
        return ", ".join(pairs) or "all initial"


class Set(_ReadIsReadOnly):
    """``add`` e, ``read`` -> the whole set (any order)."""

    name = "set"

    def __init__(self, initial: Any = None) -> None:
        self.initial = frozenset(freeze(x) for x in (initial or ()))

    def init(self) -> frozenset:
        return self.initial

    def step(self, state: frozenset, f: str, arg: Any, result: Any) -> Any:
        if f == "add":
            return state | {freeze(arg)}
        if f == "read":
            if result is UNKNOWN:
                return state
            return state if frozenset(freeze(x) for x in result) == state else INCONSISTENT
        raise ValueError(f"set model has no operation {f!r}")

    def describe(self, state: frozenset) -> str:
        return "{" + ", ".join(sorted(_show(x) for x in state)) + "}"


class Mutex:
    """``acquire`` succeeds only when free, ``release`` only when held."""

    name = "mutex"

    def __init__(self, initial: Any = None) -> None:
        self.initial = bool(initial)

    def init(self) -> bool:
        return self.initial

    def step(self, state: bool, f: str, arg: Any, result: Any) -> Any:
        if f == "acquire":
            return True if not state else INCONSISTENT
        if f == "release":
            return False if state else INCONSISTENT
        raise ValueError(f"mutex model has no operation {f!r}")

    def describe(self, state: bool) -> str:
        return "held" if state else "free"


class MultiRegister:
    """``txn`` of ``[read|write, key, value]`` micro-ops over several registers."""

    name = "multi-register"

    def __init__(self, initial: Any = None) -> None:
        self.initial = freeze(initial or {})

    def init(self) -> Hashable:
        return self.initial

    def step(self, state: tuple, f: str, arg: Any, result: Any) -> Any:
        if f != "txn":
            raise ValueError(f"multi-register model has no operation {f!r}")
        values = dict(state)
        known = result is not UNKNOWN and result is not None
        mops: Sequence = result if known else arg
        for mf, k, v in mops:
            k = freeze(k)
            if mf == "write":
                values[k] = freeze(v)
            elif mf == "read":
                if known and values.get(k) != freeze(v):
                    return INCONSISTENT
            else:
                raise ValueError(f"multi-register txn has no micro-op {mf!r}")
        return tuple(sorted(values.items(), key=repr))

    def describe(self, state: tuple) -> str:
        return ", ".join(f"{_show(k)} = {_show(v)}" for k, v in state)

    def read_only(self, f: str, arg: Any) -> bool:
        """A txn of reads only never changes the state."""
        return f == "txn" and all(mop[0] == "read" for mop in arg or ())


def _show(v: Any) -> str:
    return "null" if v is None else repr(v) if isinstance(v, str) else str(v)


MODELS: dict[str, Callable[..., Model]] = {
    m.name: m for m in (Counter, Register, CasRegister, KV, Set, Mutex, MultiRegister)
}


def make_model(name: str, initial: Any = None) -> Model:
    """A model by name; ``initial`` overrides its initial state when not None."""
    try:
        cls = MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown model {name!r} (known: {known})") from None
    return cls() if initial is None else cls(initial)
