"""What the unit counter's explanations read of a history: ops by position, and which
completion ends which invocation.

A list of ops answers that directly (``ListTimeline``). A history of millions of ops
read from a file would take gigabytes as ``Op`` objects, so ``ColumnTimeline`` keeps
it as columns instead (a byte for the type, small codes for process and ``f``, arrays
of 64-bit integers for time and index, the values as decoded) and makes an ``Op``
only for the few positions an explanation looks at: about 60 bytes an op.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from itertools import islice
from operator import attrgetter
from typing import Any, Protocol

from harness.history import INVOKE, NEMESIS, TYPES, Op, completions

CHUNK = 1 << 16
"""Ops turned into columns at a time."""


class Timeline(Protocol):
    """A history by position, as the explanations read it."""

    def __len__(self) -> int: ...
    def __getitem__(self, pos: int) -> Op: ...

    def completion_of(self, start: int) -> int | None:
        """The position of the completion of the invocation at ``start``, if any."""

    def invocation_of(self, end: int) -> int:
        """The position of the invocation that the completion at ``end`` completes."""

    def concurrent_with(self, start: int) -> Iterator[int]:
        """Positions of the client invocations, in order, whose ops overlap the one
        invoked at ``start``: invoked before it completed, not completed before it
        began (or never), itself left out."""


class ListTimeline:
    """A timeline over a list of ops."""

    def __init__(self, history: list[Op]) -> None:
        self.history = history
        self.completion = completions(history)
        self.invocation = {end: start for start, end in self.completion.items()}

    def __len__(self) -> int:
        return len(self.history)

    def __getitem__(self, pos: int) -> Op:
        return self.history[pos]

    def completion_of(self, start: int) -> int | None:
        return self.completion.get(start)

    def invocation_of(self, end: int) -> int:
        return self.invocation[end]

    def concurrent_with(self, start: int) -> Iterator[int]:
        end = self.completion.get(start, len(self.history))
        for s, op in enumerate(self.history[:end]):
            if op.type == INVOKE and op.process != NEMESIS and s != start:
                e = self.completion.get(s)
                if e is None or e > start:
                    yield s


class _Codes(dict[Any, int]):
    """Small integer codes for the few distinct processes and names of a history,
    assigned on first sight (``map(codes.__getitem__, ...)`` runs in C)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[Any] = []

    def __missing__(self, key: Any) -> int:
        code = self[key] = len(self.names)
        self.names.append(key)
        return code


_TYPES = sorted(TYPES)
_TYPE_CODE = {t: i for i, t in enumerate(_TYPES)}
_INVOKE = _TYPE_CODE[INVOKE]


class TooWide(Exception):
    """A time or index does not fit the 64-bit columns."""


class ColumnTimeline:
    """A timeline kept as columns, read from a stream of ops (``Op``s or a reader's
    records, with plain ``time`` and ``index``) that a scan has already found to have
    one op in flight per process. Read lazily, as far as the explanation looks: a
    history that goes wrong early is not read to its end again. Reading raises
    ``TooWide`` for a time or index past 64 bits."""

    def __init__(self, ops: Iterable[Any]) -> None:
        self.types = array("b")
        self.processes = array("l")
        self.fs = array("l")
        self.values: list[Any] = []
        self.times = array("q")
        self.indices = array("q")
        self.process_codes = _Codes()
        self.f_codes = _Codes()
        self._ops: Iterator[Any] | None = iter(ops)

    def close(self) -> None:
        """Stops reading (closes the reader's file, if it is a generator)."""
        close = getattr(self._ops, "close", None)
        if close is not None:
            close()
        self._ops = None

    def _more(self) -> bool:
        """Reads the next chunk of ops into the columns; False at the end."""
        chunk = list(islice(self._ops, CHUNK)) if self._ops is not None else []
        if not chunk:
            self.close()
            return False
        self.types.extend(map(_TYPE_CODE.__getitem__, map(attrgetter("type"), chunk)))
        self.processes.extend(map(self.process_codes.__getitem__,
                                  map(attrgetter("process"), chunk)))
        self.fs.extend(map(self.f_codes.__getitem__, map(attrgetter("f"), chunk)))
        self.values.extend(map(attrgetter("value"), chunk))
        try:
            self.times.extend(map(attrgetter("time"), chunk))
            self.indices.extend(map(attrgetter("index"), chunk))
        except OverflowError:
            raise TooWide() from None
        return True

    def _has(self, pos: int) -> bool:
        while pos >= len(self.types):
            if not self._more():
                return False
        return True

    def __len__(self) -> int:
        while self._more():
            pass
        return len(self.types)

    def __getitem__(self, pos: int) -> Op:
        if not self._has(pos):
            raise IndexError(pos)
        return Op(_TYPES[self.types[pos]], self.f_codes.names[self.fs[pos]],
                  self.values[pos], self.process_codes.names[self.processes[pos]],
                  self.times[pos], self.indices[pos])

    def completion_of(self, start: int) -> int | None:
        """A process's next op after an invocation is its completion (the scan that
        found the history invalid checked that), found by a search in C."""
        self._has(start)
        p, searched = self.processes[start], start + 1
        while True:
            try:
                return self.processes.index(p, searched)
            except ValueError:
                searched = len(self.processes)
                if not self._more():
                    return None

    def invocation_of(self, end: int) -> int:
        self._has(end)
        p = self.processes[end]
        for s in range(end - 1, -1, -1):
            if self.processes[s] == p:
                return s
        raise KeyError(end)

    def concurrent_with(self, start: int) -> Iterator[int]:
        """The invocations still open at ``start`` (each process's last op before it,
        found walking back), then those made while it was in flight."""
        self._has(start)
        types, processes = self.types, self.processes
        nemesis = self.process_codes.get(NEMESIS, -1)
        seen = {nemesis}
        open_ = []
        for s in range(start - 1, -1, -1):
            p = processes[s]
            if p not in seen:
                seen.add(p)
                if types[s] == _INVOKE:
                    open_.append(s)
        yield from reversed(open_)
        end = self.completion_of(start)
        s = start + 1
        while (s < end if end is not None else self._has(s)):
            if types[s] == _INVOKE and processes[s] != nemesis:
                yield s
            s += 1
