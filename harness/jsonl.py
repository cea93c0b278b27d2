"""Reading splitbrain's ``history.jsonl``: fast, streaming and total.

Lines are decoded by msgspec a megabyte at a time straight into ``Record`` structs
(no dict per line); a batch holding any line that does not fit a record is read line
by line as dicts, so that every error names its line. Values are normalized as JSON
means them (an integral float is an int) and bounded in depth; any input gives ops or
a one-line ``HistoryError``. ``harness.history`` re-exports the public names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from harness.ops import _CORE_FIELDS, _TYPE_OF, Op
from harness.reading import (
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


class Record(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One line of ``history.jsonl`` as msgspec decodes it straight from the bytes, in
    batches of lines: at a fraction of the cost of a dict and an ``Op`` each. Holds the
    optional fields the recorder writes (``UNSET`` when absent); a line with any other
    field, or a batch with a bad line, is read line by line as dicts instead. Not
    tracked by the collector: a record holds no cycles. ``type`` comes out interned."""

    type: Literal["invoke", "ok", "fail", "info"]
    f: str
    process: int | str
    value: Any = None
    time: int = -1
    index: int = -1
    error: Any = msgspec.UNSET
    node: Any = msgspec.UNSET
    final: Any = msgspec.UNSET

    def optional_fields(self) -> dict[str, Any] | None:
        """The optional fields present (an ``Op``'s ``extra``), or None."""
        e, n, fin = self.error, self.node, self.final
        if e is UNSET and n is UNSET and fin is UNSET:
            return None
        return {k: v for k, v in (("error", e), ("node", n), ("final", fin)) if v is not UNSET}


UNSET = msgspec.UNSET
_NEEDS_PLAIN = frozenset((float, list, dict))
BATCH = 1 << 20
"""Bytes of lines decoded in one call."""


def iter_records(path: Path | str, *, tolerate_torn_tail: bool = False,
                 limits: Limits | None = None) -> Iterator[Record | Op]:
    """The ops of a splitbrain ``history.jsonl``, streaming, each as a ``Record`` or an
    ``Op``: both have ``type``, ``f``, ``value``, ``process``, ``time`` and ``index``,
    validated as ``parse_op`` validates them. For consumers that make one pass and keep
    nothing per op (``iter_jsonl`` makes ``Op``s of them).

    A malformed line raises HistoryError naming it. With ``tolerate_torn_tail`` a last
    line without its newline (a write cut short by SIGKILL) is skipped instead.
    ``limits`` is consulted every batch of lines (``BudgetExceeded``).
    """
    batch = msgspec.json.Decoder(list[Record]).decode
    slow = msgspec.json.Decoder().decode
    names: dict[str, str] = {}
    n = 0   # lines before this batch
    with open_history(path) as f:
        rest = b""
        while True:
            chunk = f.read(BATCH)
            lines = (rest + chunk if rest else chunk).split(b"\n")
            rest = b"" if not chunk else lines.pop()
            if len(rest) > MAX_LINE:
                raise HistoryError(f"{path}:{n + len(lines) + 1}: line longer than "
                                   f"{MAX_LINE >> 20} MiB")
            check_budget(limits, f"line {n + 1}")
            try:
                records = batch(b"[" + b",".join(lines) + b"]") if chunk else None
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                records = None  # read line by line, to name the line
            if records is not None and _plain_records(records, n):
                yield from records
            else:
                for i, line in enumerate(lines, n + 1):
                    try:
                        op = _parse(slow(line), names)
                    except (msgspec.DecodeError, HistoryError, RecursionError) as e:
                        if not line.strip():
                            continue
                        if not chunk and tolerate_torn_tail and \
                                isinstance(e, msgspec.DecodeError):
                            return   # the last line, cut short
                        raise _line_error(path, i, e, torn=not chunk) from None
                    if op.index < 0:
                        op.index = i - 1
                    yield op
            n += len(lines)
            if not chunk:
                return


def _plain_records(records: list[Record], n: int) -> bool:
    """Normalizes a batch's values in place as ``_parse`` would (integral floats to
    ints, nesting bounded) and numbers ops that have no index; False if a value is
    refused (the batch is then read line by line, to name the line)."""
    for i, r in enumerate(records, n):
        try:
            if type(r.value) in _NEEDS_PLAIN:
                r.value = plain_json(r.value)
            if r.error is not UNSET or r.node is not UNSET or r.final is not UNSET:
                r.error, r.node, r.final = (v if v is UNSET else plain_json(v)
                                            for v in (r.error, r.node, r.final))
        except HistoryError:
            return False
        if r.index < 0:
            r.index = i
    return True


def iter_jsonl(path: Path | str, *, tolerate_torn_tail: bool = False,
               limits: Limits | None = None) -> Iterator[Op]:
    """Reads a splitbrain ``history.jsonl``, streaming (see ``iter_records``)."""
    names: dict[str, str] = {}
    for r in iter_records(path, tolerate_torn_tail=tolerate_torn_tail, limits=limits):
        if isinstance(r, Op):
            yield r
        else:
            f = r.f
            yield Op(r.type, names.setdefault(f, f), r.value, r.process, r.time, r.index,
                     r.optional_fields())


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
