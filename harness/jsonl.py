"""Reading splitbrain's ``history.jsonl``: fast, streaming and total.

Lines are decoded by msgspec a megabyte at a time straight into ``Record`` structs
(no dict per line); a batch holding any line that does not fit a record is read line
by line as dicts, so that every error names its line. Values are normalized as JSON
means them (an integral float is an int) and bounded in depth; any input gives ops or
a one-line ``HistoryError``. ``harness.history`` re-exports the public names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from harness.ops import _CORE_FIELDS, _TYPE_OF, Op
from harness.reading import (
    MAX_DEPTH,
    HistoryError,
    Limits,
    check_budget,
    gc_paused,
    open_history,
    plain_json,
)


def parse_op(obj: Any, where: str) -> Op:
    """Validates one decoded JSON object as an op; ``where`` names it in errors."""
    try:
        return _parse(obj, {})
    except HistoryError as e:
        raise HistoryError(f"{where}: {e}") from None


def _parse(obj: Any, names: dict[str, str]) -> Op:
    """One op from a decoded JSON object, or a HistoryError without a place. ``names``
    interns ``f``: a history repeats a handful of names a million times."""
    if type(obj) is not dict:
        raise HistoryError(f"expected a JSON object, got {_json_type(obj)}")
    try:
        type_, f, process = obj["type"], obj["f"], obj["process"]
    except KeyError as e:
        raise HistoryError(f"missing field {e.args[0]!r}") from None
    t = _TYPE_OF.get(type_) if type(type_) is str else None
    if t is None:
        raise HistoryError(f"unknown type {_short(type_)} (known: invoke, ok, fail, info)")
    if type(f) is not str:
        raise HistoryError(f"f must be a string, got {_short(f)}")
    if type(process) is not int and type(process) is not str:
        raise HistoryError(f"process must be an integer or a string, got {_short(process)}")
    core = 3
    value = obj.get("value")
    if value is not None:
        core += 1
        if type(value) is float or type(value) is list or type(value) is dict:
            value = plain_json(value)
    elif "value" in obj:
        core += 1
    time = obj.get("time", -1)
    if time != -1:
        core += 1
        time = _integer(time, "time")
    index = obj.get("index", -1)
    if index != -1:
        core += 1
        index = _integer(index, "index")
    extra = None
    if len(obj) > core:
        extra = {k: plain_json(v) for k, v in obj.items() if k not in _CORE_FIELDS}
    return Op(t, names.setdefault(f, f), value, process, time, index, extra)


def _integer(v: Any, name: str) -> int:
    if type(v) is int:
        return v
    if type(v) is float and v.is_integer():
        return int(v)
    if v is None:
        return -1
    raise HistoryError(f"{name} must be an integer, got {_short(v)}")


def _json_type(v: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _short(v: Any) -> str:
    """A value in an error message: its type when it is not a plain scalar, so that
    a hostile value (a megabyte string, an array nested 900 deep) stays one short line."""
    if type(v) is str:
        return repr(v) if len(v) <= 40 else repr(v[:40]) + "..."
    if v is None or type(v) is bool or type(v) is float:
        return repr(v)
    if type(v) is int:
        return repr(v) if v.bit_length() < 128 else "a very large integer"
    return _json_type(v)


MAX_LINE = 64 << 20
"""The longest line a history may have: an op is a few hundred bytes; without a bound a
file with no newline would be read whole into memory."""


Integral = int | Annotated[float, msgspec.Meta(multiple_of=1)]
"""``time`` and ``index`` as a history may hold them: JSON has one number type, so
``5.0`` is 5 (``_integer``'s rule); anything else sends the batch line by line."""


class Record(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One line of ``history.jsonl`` as msgspec decodes it straight from the bytes, in
    batches of lines: at a fraction of the cost of a dict and an ``Op`` each. A file's
    optional fields (``node``, ``error``, a user's own) become fields of a subclass
    made for that file (``_Batches``), ``UNSET`` when absent. Not tracked by the
    collector: a record holds no cycles. ``type`` comes out interned."""

    type: Literal["invoke", "ok", "fail", "info"]
    f: str
    process: int | str
    value: Any = None
    time: Integral = -1
    index: Integral = -1

    def optional_fields(self) -> dict[str, Any] | None:
        """The optional fields present (an ``Op``'s ``extra``), or None."""
        out = None
        for name, key in _OPTIONAL.get(type(self), ()):
            v = getattr(self, name)
            if v is not UNSET:
                if out is None:
                    out = {}
                out[key] = v
        return out

    def to_op(self, f: str) -> Op:
        """This record as an ``Op`` named ``f`` (its own ``f``, or an interned equal);
        ``time`` and ``index`` must be ints, as they are in a plain batch."""
        return Op(self.type, f, self.value, self.process, self.time,  # type: ignore[arg-type]
                  self.index, self.optional_fields())  # type: ignore[arg-type]


UNSET = msgspec.UNSET
_OPTIONAL: dict[type, tuple[tuple[str, str], ...]] = {}
"""Per record class, its optional fields: attribute name and the JSON key."""
BATCH = 1 << 20
"""Bytes of lines decoded in one call."""
MAX_OPTIONAL = 32
"""Distinct optional fields a file may have before its batches are read line by line."""
_UNKNOWN_FIELD = re.compile(r"unknown field `.*` - at `\$\[(\d+)\]`$", re.DOTALL)
_NOT_OPENING = bytes(b for b in range(256) if b not in b"[{\n")


class _Batches:
    """Decodes a batch of whole lines into records, or says (None) that the batch must
    be read line by line, which the records would not do exactly as ``_parse`` does.

    It learns the file's optional fields as it meets them (msgspec names the first
    unknown one; its line is decoded as a dict for its keys and the record class is
    made again). A batch is taken only when each line is one object: every newline
    sits between ``}`` and ``{`` (inside a value that is no valid JSON, so each newline
    ends a value) and there are as many records as lines. Values nested deeper than
    ``MAX_DEPTH`` need more ``[``/``{`` on one line than that, which a count over the
    batch rules out almost always, and a scan of its brackets otherwise. With ``plain``
    floats in values come out as ``plain_json`` makes them (``_plain_float``)."""

    def __init__(self, plain: bool) -> None:
        self.optional: list[str] = []
        self._float_hook = _plain_float if plain else None
        self._decode = msgspec.json.Decoder(Record, float_hook=self._float_hook).decode_lines
        self._probe = msgspec.json.Decoder().decode

    def decode(self, body: bytes, lines: int, openings: bytes) -> list[Record] | None:
        """The records of ``body``'s ``lines``; ``openings`` is ``body`` with only its
        ``[``, ``{`` and newlines left (``_openings``)."""
        if body.count(b"}\n{") != lines - 1 or _maybe_too_deep(openings, lines):
            return None
        for _ in range(MAX_OPTIONAL + 1):
            try:
                records = self._decode(body)
            except msgspec.ValidationError as e:
                if not self._learn(str(e), body):
                    return None
                continue
            except (msgspec.DecodeError, RecursionError):
                return None
            return records if len(records) == lines else None
        return None

    def _learn(self, error: str, body: bytes) -> bool:
        """Adds the optional fields of the line msgspec refused for an unknown field;
        False if it refused it for anything else."""
        m = _UNKNOWN_FIELD.search(error)
        if m is None:
            return False
        try:
            obj = self._probe(body.split(b"\n")[int(m.group(1))])
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, IndexError):
            return False
        new = [k for k in obj if k not in _CORE_FIELDS and k not in self.optional] \
            if type(obj) is dict else []
        if not new or len(self.optional) + len(new) > MAX_OPTIONAL:
            return False
        names = [(f"x{i}", k) for i, k in enumerate(self.optional + new)]
        try:   # (msgspec refuses names with a quote, a backslash or a control character)
            cls = msgspec.defstruct("Record", [(a, Any, UNSET) for a, _ in names],
                                    bases=(Record,), rename=dict(names))
        except (ValueError, TypeError):
            return False
        self.optional += new
        _OPTIONAL[cls] = tuple(names)
        self._decode = msgspec.json.Decoder(  # type: ignore[assignment]
            cls, float_hook=self._float_hook).decode_lines
        return True


def _plain_float(literal: str) -> int | float:
    """A float literal in a value as ``plain_json`` makes it (an integral one is an
    int), called by msgspec as it decodes; one too large for a float is refused, as
    msgspec refuses it without this hook."""
    v = float(literal)
    if v.is_integer():
        return int(v)
    if math.isinf(v):
        raise ValueError("Number out of range")
    return v


def _openings(body: bytes) -> bytes:
    """``body`` with only its ``[``, ``{`` and newlines: one pass that both counts the
    lines and bounds how deeply each may nest."""
    return body.translate(None, _NOT_OPENING)


def _maybe_too_deep(openings: bytes, lines: int) -> bool:
    """Whether a line may hold a value nested deeper than ``MAX_DEPTH``: it would have
    more than ``MAX_DEPTH + 1`` openings besides its own ``{`` (``openings`` holds each
    line's openings, so it is a few bytes a line)."""
    if len(openings) - (lines - 1) - lines <= MAX_DEPTH:
        return False
    return re.search(rb"[^\n]{%d}" % (MAX_DEPTH + 2), openings) is not None


def iter_records(path: Path | str, *, tolerate_torn_tail: bool = False,
                 limits: Limits | None = None, plain: bool = True
                 ) -> Iterator[Record | Op]:
    """The ops of a splitbrain ``history.jsonl``, streaming, each as a ``Record`` or an
    ``Op``: both have ``type``, ``f``, ``value``, ``process``, ``time`` and ``index``,
    validated as ``parse_op`` validates them. For consumers that make one pass and keep
    nothing per op (``iter_jsonl`` makes ``Op``s of them).

    A malformed line raises HistoryError naming it. With ``tolerate_torn_tail`` a last
    line without its newline (a write cut short by SIGKILL) is skipped instead.
    ``limits`` is consulted every batch of lines (``BudgetExceeded``). Without
    ``plain`` a record's numbers are left as decoded (``time``, ``index`` or ``value``
    may be an integral float) and an absent ``index`` stays -1: for a consumer that
    compares them as numbers, for speed; what is refused, and where, is the same.
    """
    return chain.from_iterable(_batches(path, tolerate_torn_tail, limits, plain))


def _batches(path: Path | str, tolerate_torn_tail: bool, limits: Limits | None,
             plain: bool) -> Iterator[list[Record] | list[Op]]:
    """``iter_records``'s ops a batch at a time (handed on by ``chain``, in C)."""
    batches = _Batches(plain)
    names: dict[str, str] = {}
    n = 0   # lines before this batch
    with open_history(path) as f:
        rest = b""
        while True:
            chunk = f.read(BATCH)
            data = rest + chunk if rest else chunk
            cut = data.rfind(b"\n") if chunk else len(data)
            if cut < 0:
                body, rest = b"", data
            else:
                body, rest = data[:cut], data[cut + 1:]
            openings = _openings(body)
            lines = openings.count(b"\n") + 1 if cut >= 0 else 0
            if len(rest) > MAX_LINE:
                raise HistoryError(f"{path}:{n + lines + 1}: line longer than "
                                   f"{MAX_LINE >> 20} MiB")
            if lines and (body or chunk):
                check_budget(limits, f"line {n + 1}")
                records = batches.decode(body, lines, openings) if chunk else None
                if records is not None:
                    if plain:
                        _plain_records(records, n)
                    yield records
                else:
                    yield list(_line_by_line(path, body, n, names, eof=not chunk,
                                             tolerate_torn_tail=tolerate_torn_tail))
                n += lines
            if not chunk:
                return


def _line_by_line(path: Path | str, body: bytes, n: int, names: dict[str, str], *,
                  eof: bool, tolerate_torn_tail: bool) -> Iterator[Op]:
    """The ops of ``body``'s lines (the first is line ``n + 1``), one at a time, so
    that an error names its line. ``eof``: ``body`` is the file's last line, without a
    newline: a write cut short, skipped if ``tolerate_torn_tail``."""
    slow = msgspec.json.Decoder().decode
    lines = body.split(b"\n")
    for i, line in enumerate(lines, n + 1):
        try:
            op = _parse(slow(line), names)
        except (msgspec.DecodeError, HistoryError, RecursionError) as e:
            if not line.strip():
                continue
            if eof and tolerate_torn_tail and isinstance(e, msgspec.DecodeError):
                return   # the last line, cut short
            raise _line_error(path, i, e, torn=eof) from None
        if op.index < 0:
            op.index = i - 1
        yield op


def _plain_records(records: list[Record], n: int) -> None:
    """Makes a batch's ``time`` and ``index`` ints as ``_parse`` would (integral floats
    to ints) and numbers ops that have no index (values came out plain: ``_Batches``
    decodes their floats with ``_plain_float`` and bounded their nesting). Each column
    goes op by op only where its types, gathered in C, call for it."""
    times = list(map(_TIME, records))
    if float in set(map(type, times)):
        for r, t in zip(records, times):
            r.time = int(t)
    indices = list(map(_INDEX, records))
    if set(map(type, indices)) != {int} or (indices and min(indices) < 0):
        for i, (r, index) in enumerate(zip(records, indices), n):
            if type(index) is float:
                r.index = index = int(index)
            if index < 0:
                r.index = i


_TIME, _INDEX = attrgetter("time"), attrgetter("index")


def iter_jsonl(path: Path | str, *, tolerate_torn_tail: bool = False,
               limits: Limits | None = None) -> Iterator[Op]:
    """Reads a splitbrain ``history.jsonl``, streaming (see ``iter_records``)."""
    names: dict[str, str] = {}
    for r in iter_records(path, tolerate_torn_tail=tolerate_torn_tail, limits=limits):
        if isinstance(r, Op):
            yield r
        else:   # (time and index are ints: the records are plain)
            yield r.to_op(names.setdefault(r.f, r.f))


def _line_error(path: Path | str, n: int, e: Exception, *, torn: bool) -> HistoryError:
    if isinstance(e, HistoryError):
        return HistoryError(f"{path}:{n}: {e}")
    if isinstance(e, RecursionError):  # msgspec's own depth limit, deeper than ours
        return HistoryError(f"{path}:{n}: values nested too deeply")
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, msgspec.ValidationError):  # a number msgspec cannot represent
        return HistoryError(f"{path}:{n}: {msg.split(' - at ')[0].lower()} (a number too large)")
    what = "truncated" if torn else "malformed"
    return HistoryError(f"{path}:{n}: {what} JSON ({msg})")


def read_jsonl(path: Path | str, *, tolerate_torn_tail: bool = False,
               limits: Limits | None = None) -> list[Op]:
    with gc_paused():
        return list(iter_jsonl(path, tolerate_torn_tail=tolerate_torn_tail, limits=limits))
