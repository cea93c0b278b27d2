"""What every history reader shares: the error it raises, how it opens a file, how deep
values may nest, and how a reader stops when the check's budget runs out.

A reader must turn any input into a history or a one-line ``HistoryError`` naming the
line: so files that are not regular (a FIFO would block forever, ``/dev/zero`` never
ends) are refused before a byte is read, values nested deeper than any operation needs
are refused where they are read (later consumers recurse), and integral floats become
ints (JSON has one number type: a counter read of 2.0 is a read of 2).
"""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from harness.errors import UsageError

MAX_DEPTH = 64
"""How deeply values may nest in a history read from a file. Operations hold numbers,
keys and small tuples; anything deeper is hostile and would exhaust the recursion of
every later consumer (freezing, JSON encoding, the report)."""
CHECK_EVERY = 1 << 14
"""Readers ask the budget whether to stop once per this many lines or ops."""


class HistoryError(UsageError, ValueError):
    """A history file that cannot be read; the message names the line."""


class Limits(Protocol):
    """A budget readers consult (``checkers.calls.Budget`` is one)."""

    def exceeded(self) -> str | None: ...


class BudgetExceeded(Exception):
    """Reading stopped because the time or memory budget ran out: the check's verdict is
    unknown, not an error in the history."""

    def __init__(self, reason: str, where: str) -> None:
        super().__init__(f"{reason} while reading the history ({where})")
        self.reason = reason
        self.where = where


def check_budget(limits: Limits | None, where: str) -> None:
    if limits is not None and (reason := limits.exceeded()) is not None:
        raise BudgetExceeded(reason, where)


@contextmanager
def open_history(path: Path | str) -> Iterator[BinaryIO]:
    """The file at ``path`` opened for binary reading, if it is a regular file.

    ``stat`` first, so a FIFO, a device or a directory is refused without opening it;
    the open is non-blocking and the opened file is checked again, so a file swapped
    for a FIFO in between cannot block either."""
    with friendly_errors(path):
        _require_regular(os.stat(path), path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            _require_regular(os.fstat(fd), path)
            os.set_blocking(fd, True)
            f = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
    with f:
        with friendly_errors(path):
            yield f


def _require_regular(st: os.stat_result, path: Path | str) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise HistoryError(f"{path}: is a directory, not a history file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if
                stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise HistoryError(f"{path}: is {kind}, not a history file")


@contextmanager
def friendly_errors(path: Path | str) -> Iterator[None]:
    """OS and decoding errors as one-line HistoryErrors naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise HistoryError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise HistoryError(f"{path}: is a directory, not a history file") from None
    except PermissionError:
        raise HistoryError(f"{path}: not readable (permission denied)") from None
    except UnicodeDecodeError as e:
        raise HistoryError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise HistoryError(f"{path}: cannot read ({e.strerror or e})") from None


def read_bytes(path: Path | str, limits: Limits | None = None,
               chunk: int = 1 << 22) -> bytes:
    """The whole of a regular file, in chunks so that the budget is consulted as it
    grows (a history on a slow or huge file must not outlast ``--time-limit``)."""
    parts: list[bytes] = []
    total = 0
    with open_history(path) as f:
        while data := f.read(chunk):
            parts.append(data)
            total += len(data)
            check_budget(limits, f"byte {total}")
    return b"".join(parts)


def read_text(path: Path | str, limits: Limits | None = None) -> str:
    """The file's text; a missing, unreadable, special or non-UTF-8 file is a
    HistoryError."""
    data = read_bytes(path, limits)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise not_utf8(path, data, e) from None


def not_utf8(path: Path | str, data: bytes, e: UnicodeDecodeError) -> HistoryError:
    line = data.count(b"\n", 0, e.start) + 1
    return HistoryError(f"{path}:{line}: not UTF-8 text (byte {e.start})")


class _TooDeep(Exception):
    pass


def plain_json(value: Any, depth: int = 0) -> Any:
    """A decoded JSON value as an op holds it: integral floats as ints, nesting bounded
    (``HistoryError`` beyond ``MAX_DEPTH``)."""
    t = type(value)
    if t is float:
        return int(value) if value.is_integer() else value
    if t is list:
        if depth >= MAX_DEPTH:
            raise HistoryError(f"values nested more than {MAX_DEPTH} deep")
        return [plain_json(v, depth + 1) for v in value]
    if t is dict:
        if depth >= MAX_DEPTH:
            raise HistoryError(f"values nested more than {MAX_DEPTH} deep")
        return {k: plain_json(v, depth + 1) for k, v in value.items()}
    return value


@contextmanager
def gc_paused() -> Iterator[None]:
    """Reading and searching allocate millions of objects (ops, the search's cache and
    stack of tuples) that form no cycles; CPython's collector would traverse them again
    and again as they pile up, so it waits."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
