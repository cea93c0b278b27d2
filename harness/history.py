"""Operations and the durable history (the ★ history contract of ARCHITECTURE.md).

A history is a sequence of operations in recording order. Every client operation is
recorded twice: an ``invoke`` before the request is sent, and a completion (``ok``,
``fail`` or ``info``) after the reply. The writer appends one JSON object per line and
flushes after every operation, so a controller killed with SIGKILL still leaves every
complete line readable; ``sync()`` fsyncs at phase ends. Ops are ``harness.ops``'s and
the reader is ``harness.jsonl``'s; both are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from harness.errors import StoreError
from harness.jsonl import MAX_LINE, Record, iter_jsonl, iter_records, parse_op, read_jsonl
from harness.ops import FAIL, INFO, INVOKE, NEMESIS, OK, TYPES, Op
from harness.reading import HistoryError

__all__ = ["FAIL", "INFO", "INVOKE", "MAX_LINE", "NEMESIS", "OK", "TYPES", "HistoryError",
           "HistoryWriter", "Op", "Pair", "Record", "completions", "iter_jsonl",
           "iter_records", "pairs", "parse_op", "read_jsonl"]

def _describe(value: Any) -> str:
    """A value JSON cannot hold, said in words."""
    if isinstance(value, float):
        return repr(value)  # 'nan', 'inf', '-inf'
    if isinstance(value, int):
        return f"an integer of {value.bit_length()} bits"
    return f"a {type(value).__name__} that JSON cannot hold"


class HistoryWriter:
    """Appends operations to ``history.jsonl``, stamping index and time.

    Each line is flushed to the operating system as soon as it is written, so nothing
    recorded is lost if the controller dies; ``sync`` additionally fsyncs.

    A write that fails (a full disk) is never silent: it raises StoreError (an
    EnvironmentFailure, which stops the run), and so does every later ``append``, since a
    history with a hole in it would be checked as if the missing ops never happened.
    """

    def __init__(self, path: Path | str, t0_ns: int | None = None) -> None:
        self.path = Path(path)
        self.t0_ns = time.monotonic_ns() if t0_ns is None else t0_ns
        try:
            self._file: TextIO | _Unwritable = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise StoreError(f"could not create {self.path} ({e.strerror or e})",
                             path=self.path) from e
        self._dumps = json.JSONEncoder(separators=(",", ":"), default=str,
                                       allow_nan=False).encode
        self.count = 0
        self.failure: StoreError | None = None
        """Why the history stopped being written, once it has."""

    def now(self) -> int:
        """Nanoseconds since the run started, on the monotonic clock."""
        return time.monotonic_ns() - self.t0_ns

    def append(self, op: Op) -> Op:
        """Stamps ``op`` with the next index and the current time, and records it."""
        op.index = self.count
        op.time = time.monotonic_ns() - self.t0_ns
        self.count += 1
        try:
            line = self._dumps(op.to_dict())
        except (ValueError, RecursionError):  # a user client's NaN, huge int, deep value
            line = self._dumps(self._recordable(op.to_dict()))
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as e:
            raise self._failed(e, f"op {op.index} on") from e
        return op

    def _recordable(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` with each value JSON cannot hold (NaN, infinities, an integer
        past 4,300 digits, nesting past the recursion limit) replaced by a string that
        says what it was: the history stays readable, and the checkers see an ill-typed
        value (an anomaly such as "read returned 'nan'") rather than the run losing its
        history."""
        out = {}
        for key, value in fields.items():
            try:
                self._dumps(value)
                out[key] = value
            except (ValueError, RecursionError):
                out[key] = _describe(value)
        return out

    def sync(self) -> None:
        if not self._file.closed:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as e:
                raise self._failed(e, "its last ops") from e

    def close(self) -> None:
        """Syncs and closes; after a failure only closes (what could not be written is
        named by ``failure``)."""
        if self._file.closed:
            return
        try:
            if self.failure is None:
                self.sync()
        finally:
            with contextlib.suppress(OSError):  # a buffer that cannot be written either
                self._file.close()

    def _failed(self, e: OSError, lost: str) -> StoreError:
        if self.failure is None:
            self.failure = StoreError(
                f"could not write {self.path} ({e.strerror or e}): {lost} "
                "could not be recorded", path=self.path)
            broken, self._file = self._file, _Unwritable(self.failure)
            with contextlib.suppress(OSError):
                broken.close()
        return self.failure


class _Unwritable:
    """Stands in for a history file that failed: every write raises the first failure,
    so the hot path of ``append`` needs no check of its own."""

    closed = False

    def __init__(self, failure: StoreError) -> None:
        self.failure = failure

    def write(self, text: str) -> int:
        raise self.failure

    def flush(self) -> None:
        raise self.failure

    def fileno(self) -> int:
        raise self.failure

    def close(self) -> None:
        self.closed = True


@dataclass(slots=True)
class Pair:
    """An invocation and its completion (None if it never completed)."""

    invoke: Op
    completion: Op | None

    @property
    def type(self) -> str:
        """``ok``, ``fail``, or ``info`` (which includes never completed)."""
        return self.completion.type if self.completion is not None else INFO

    @property
    def end(self) -> float:
        """Completion time; ``inf`` for an operation that may still take effect."""
        if self.completion is None or self.completion.type == INFO:
            return float("inf")
        return self.completion.time


def pairs(history: Iterable[Op], *, include_nemesis: bool = False) -> list[Pair]:
    """Matches each invocation with its process's next completion, in invocation order.

    Raises HistoryError when a process invokes twice without completing or completes
    without invoking: the contract allows one operation in flight per process.
    """
    open_: dict[Any, Pair] = {}
    out: list[Pair] = []
    for op in history:
        if op.process == NEMESIS and not include_nemesis:
            continue
        if op.type == INVOKE:
            if op.process in open_:
                raise HistoryError(
                    f"op {op.index}: process {op.process} invoked again while op "
                    f"{open_[op.process].invoke.index} was still in flight"
                )
            started = Pair(op, None)
            open_[op.process] = started
            out.append(started)
        else:
            p = open_.pop(op.process, None)
            if p is None:
                raise HistoryError(
                    f"op {op.index}: {op.type} for process {op.process} with no invocation"
                )
            p.completion = op
    return out


def completions(history: list[Op]) -> dict[int, int]:
    """Position of each client invocation in ``history`` -> position of its completion
    (invocations that never completed are absent). Nemesis ops are skipped. Unlike
    ``pairs`` it does not validate: use it on histories ``pairs`` has already accepted."""
    open_: dict[Any, int] = {}
    out: dict[int, int] = {}
    for pos, op in enumerate(history):
        if op.process == NEMESIS:
            continue
        if op.type == INVOKE:
            open_[op.process] = pos
        elif (start := open_.pop(op.process, None)) is not None:
            out[start] = pos
    return out
