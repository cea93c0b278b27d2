"""An operation: one entry of a history (the ★ history contract of ARCHITECTURE.md).

Its own module so that the readers (``harness.jsonl``, ``harness.formats``) and the
history (``harness.history``, which re-exports everything here) can all build ops
without importing each other.
"""

from __future__ import annotations

from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
TYPES = frozenset((INVOKE, OK, FAIL, INFO))
NEMESIS = "nemesis"

_CORE_FIELDS = frozenset(("index", "time", "type", "process", "f", "value"))
_TYPE_OF = {t: t for t in TYPES}  # interned: every op of a type shares one string
class _Extra(dict[str, Any]):
    """The ``extra`` of an op that has none: an empty dict that attaches itself to its op
    on the first write. Most ops read from a file have no optional fields, and a million
    empty dicts would cost a third of the history's memory."""

    __slots__ = ("_op",)
    _op: Op   # set right after construction (no __init__: dict's own is faster)

    def _attach(self) -> None:
        if self._op._extra is None:
            self._op._extra = self

    def __setitem__(self, key: str, value: Any) -> None:
        self._attach()
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._attach()
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._attach()
        return super().setdefault(key, default)

    def __ior__(self, other: Any) -> _Extra:  # type: ignore[override,misc]
        self.update(other)
        return self


class Op:
    """One history entry. ``extra`` holds optional fields (``node``, ``error``, ...).

    A plain class with slots rather than a dataclass so that an op without optional
    fields holds no dict at all (``extra`` makes one on the first write)."""

    __slots__ = ("type", "f", "value", "process", "time", "index", "_extra")
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __init__(self, type: str, f: str, value: Any = None,
                 process: int | str | None = None, time: int = -1, index: int = -1,
                 extra: dict[str, Any] | None = None) -> None:
        self.type = type
        self.f = f
        self.value = value
        self.process = process
        self.time = time
        self.index = index
        self._extra = extra

    @property
    def extra(self) -> dict[str, Any]:
        e = self._extra
        if e is None:
            e = _Extra()
            e._op = self
        return e

    @extra.setter
    def extra(self, value: dict[str, Any]) -> None:
        self._extra = value

    def _key(self) -> tuple[Any, ...]:
        return (self.type, self.f, self.value, self.process, self.time, self.index,
                self._extra or {})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Op):
            return NotImplemented
        return self._key() == other._key()

    def __repr__(self) -> str:
        return (f"Op(type={self.type!r}, f={self.f!r}, value={self.value!r}, "
                f"process={self.process!r}, time={self.time!r}, index={self.index!r}, "
                f"extra={self._extra or {}!r})")

    def complete(self, type: str, value: Any = None, **extra: Any) -> Op:
        """The completion of this invocation: same process and f, a new type and value."""
        return Op(type, self.f, value, self.process, extra=extra)

    def ok(self, value: Any = None, **extra: Any) -> Op:
        return self.complete(OK, value, **extra)

    def fail(self, error: str, value: Any = None, **extra: Any) -> Op:
        return self.complete(FAIL, value, error=error, **extra)

    def info(self, error: str, value: Any = None, **extra: Any) -> Op:
        return self.complete(INFO, value, error=error, **extra)

    @property
    def error(self) -> Any:
        e = self._extra
        return None if e is None else e.get("error")

    def to_dict(self) -> dict[str, Any]:
        d = {
            "index": self.index,
            "time": self.time,
            "type": self.type,
            "process": self.process,
            "f": self.f,
            "value": self.value,
        }
        if self._extra:
            d.update(self._extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Op:
        extra = {k: v for k, v in d.items() if k not in _CORE_FIELDS}
        return cls(
            d["type"], d["f"], d.get("value"), d.get("process"),
            d.get("time", -1), d.get("index", -1), extra,
        )
