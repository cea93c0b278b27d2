"""Importers for histories recorded by other tools, so they can be checked here.

Four formats are read into splitbrain ``Op`` lists:

- ``jsonl``: splitbrain's own ``history.jsonl``;
- ``edn``: Jepsen/Knossos EDN, a vector or list of op maps, or op maps one after
  another (newer Jepsen writes one map per line);
- ``jepsen-log``: the op lines Jepsen's ``jepsen.util`` logger prints
  (``INFO  jepsen.util - 3<TAB>:invoke<TAB>:cas<TAB>[3 0]``); other lines are skipped;
- ``porcupine``: Porcupine's key-value logs (one EDN map per line with ``:key``), mapped
  onto the ``kv`` model: value ``[key, v]``, ``get`` -> ``read``, ``put`` -> ``write``,
  ``append`` kept (the kv model appends strings).

EDN is read by a fast path for the subset Jepsen writes (``harness.edn_fast``), and by
the ``edn_format`` library, the reference, for anything else. On a failure the text is
scanned again to name the line of the problem (``harness.edn_locate``); the happy path
pays nothing for that. Every failure is a ``HistoryError`` whose one-line message
starts with ``file:line:``; a read that outlasts the check's budget raises
``BudgetExceeded``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import edn_format
from edn_format import EDNDecodeError, Keyword, Symbol

from harness import edn_fast
from harness.edn_locate import (
    REFERENCE_ERRORS,
    Lines,
    edn_error,
    edn_message,
    op_spans,
    op_starts,
)
from harness.history import TYPES, Op, read_jsonl
from harness.reading import (
    MAX_DEPTH,
    HistoryError,
    Limits,
    check_budget,
    gc_paused,
    not_utf8,
    open_history,
    read_text,
)

FORMATS = ("jsonl", "edn", "jepsen-log", "porcupine")

# Jepsen 0.3 writes ops as records; their body is an ordinary op map.
edn_format.add_tag("jepsen.history.Op", lambda m: m)

_LOG_OP = re.compile(
    r"jepsen\.util\s+(?:-\s+)?(?P<process>:?[\w.-]+)\s+:(?P<type>invoke|ok|fail|info)"
    r"\s+:?(?P<f>[^\s]+)(?:\s+(?P<value>.*?))?\s*$"
)
_PORCUPINE_F = {"get": "read", "put": "write", "append": "append"}
_PORCUPINE_LINE = re.compile(
    r'\{:process (?P<process>[0-9]{1,18}), :type :(?P<type>invoke|ok|fail|info), '
    r':f :(?P<f>get|put|append), :key "(?P<key>[^"\\]*)", :value (?P<value>nil|"[^"\\]*")\}'
)


def read_history(path: Path | str, fmt: str = "auto", *,
                 limits: Limits | None = None) -> list[Op]:
    """Reads a history file in ``fmt`` (or the format its content shows, for ``auto``).

    ``limits`` (the check's budget) is consulted as the file is read: running out
    raises ``BudgetExceeded``."""
    path = Path(path)
    if fmt not in FORMATS and fmt != "auto":
        raise HistoryError(f"unknown history format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "auto":
        fmt = detect_file_format(path)
    if fmt == "jsonl":
        return read_jsonl(path, limits=limits)
    with gc_paused():   # millions of new objects, no cycles among them
        return _READERS[fmt](read_text(path, limits), path, limits)


def detect_file_format(path: Path | str) -> str:
    """The format of the file at ``path``, from its first 256 KiB."""
    return detect_format(read_head(path), path)


def detect_format(text: str, path: Path | str = "<history>") -> str:
    """Names the format of ``text`` from its first meaningful characters and lines.

    The extension is not trusted: Jepsen logs are ``.log`` or ``.txt``, Porcupine's kv
    logs are ``.txt``, EDN histories are often ``.edn`` but not always.
    """
    lines = [ln for ln in text.split("\n") if ln.strip() and not ln.lstrip().startswith(";")]
    if not lines:
        raise HistoryError(f"{path}:1: empty history")
    first = lines[0].lstrip()
    if first.startswith(('{"', '{ "')):
        return "jsonl"
    if first.startswith("{") and re.search(r"(^|[\s,{]):key[\s,]", first):
        return "porcupine"
    if first[0] in "({#" or re.match(r"\[\s*([\[{#\]]|$)", first):
        return "edn"   # a "[" before anything but a map or vector is a log's timestamp
    if any(_LOG_OP.search(ln) for ln in lines[:2000]):
        return "jepsen-log"
    raise HistoryError(
        f"{path}:1: cannot tell the history format; name it with --format "
        f"({', '.join(FORMATS)})"
    )


def read_head(path: Path | str, limit: int = 1 << 18) -> str:
    """The first ``limit`` bytes of the file as text (a character cut at the end is
    dropped): enough to tell a format without reading a large history twice."""
    with open_history(path) as f:
        head = f.read(limit)
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:
            raise not_utf8(path, head, e) from None
        return head[:e.start].decode("utf-8")


# ---------------------------------------------------------------- EDN values

def plain(v: Any, depth: int = 0) -> Any:
    """An EDN value as plain JSON-like Python: keywords and symbols become strings,
    vectors and lists become lists, maps dicts with string keys, sets sorted lists,
    integral floats ints (as JSON's, so 2.0 reads as 2). Values nested deeper than
    ``MAX_DEPTH`` are a HistoryError."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() else v
    if isinstance(v, Keyword):
        return v.name
    if isinstance(v, Symbol):
        return str(v)
    if isinstance(v, Fraction | Decimal):
        try:
            return plain(float(v))
        except (OverflowError, ValueError):
            return str(v)
    if depth >= MAX_DEPTH:
        raise HistoryError(f"values nested more than {MAX_DEPTH} deep")
    if isinstance(v, Mapping):
        return {_key(k, depth): plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, frozenset | set):
        items = [plain(x, depth + 1) for x in v]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(v, Sequence):
        return [plain(x, depth + 1) for x in v]
    return str(v)


def _key(k: Any, depth: int = 0) -> str:
    p = plain(k, depth + 1)
    return p if isinstance(p, str) else str(p)


def _load_edn(text: str, path: Path, limits: Limits | None = None) -> list[Any]:
    """The op-level forms of ``text``, as plain values: the fast path's, or the
    reference's when the text holds anything the fast path does not read."""
    try:
        forms = edn_fast.loads_all(text, limits)
    except edn_fast.Unsupported:
        return _load_reference(text, path, limits)
    if len(forms) == 1 and isinstance(forms[0], list) and _LONE_SEQUENCE.match(text):
        return forms[0]   # (a lone set is a list too once plain, but holds no ops)
    return forms


_LONE_SEQUENCE = re.compile(r"(?:[\s,]|;[^\n]*|#[A-Za-z][^\s,\[\](){}\"]*)*[\[(]")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
REFERENCE_PART = 2000
"""Op-level elements edn_format reads per call, so that the budget is consulted between
calls and a history of millions of ops never exists whole as edn_format's values."""


def _load_reference(text: str, path: Path, limits: Limits | None) -> list[Any]:
    """The op-level forms of ``text`` as edn_format reads them: in parts of
    ``REFERENCE_PART`` elements when there are more (each part is read alone, so a
    part's error is placed at the part's lines)."""
    starts, end = op_spans(text)
    whole = len(starts) <= REFERENCE_PART or _stray(text[:starts[0]], "[(") or \
        _stray(text[end + 1:] if end < len(text) else "", "") or _unsplittable(text)
    lines = Lines(text)
    out: list[Any] = []
    for k in range(0, 1 if whole else len(starts), REFERENCE_PART):
        if k:
            check_budget(limits, f"line {lines.at(starts[k])}")
        a, b = (0, len(text)) if whole else (
            starts[k], starts[k + REFERENCE_PART] if k + REFERENCE_PART < len(starts) else end)
        part = text[a:b]
        try:
            forms = edn_format.loads_all(part)
        except REFERENCE_ERRORS as e:
            raise edn_error(part, path, edn_message(e), lines.at(a)) from None
        if whole and len(forms) == 1 and _is_list(forms[0]):
            forms = list(forms[0])
        for i, form in enumerate(forms, k):
            try:
                out.append(plain(form))
            except HistoryError as e:
                raise _at_op(text, path, i, e) from None
    return out


def _unsplittable(text: str) -> bool:
    """Whether ``text`` has what ``op_spans`` does not follow: a discarded form (``#_``)
    or a character literal (``\\(`` would count as a bracket)."""
    outside_strings = _STRING.sub("", text)
    return "#_" in outside_strings or "\\" in outside_strings


def _stray(text: str, allowed: str) -> bool:
    """Whether ``text`` (before the first element or after the last) holds anything
    but whitespace, commas, comments and one of ``allowed``."""
    rest = re.sub(r";[^\n]*|[\s,]", "", text)
    return rest not in ("", *allowed)


def _is_list(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, str)


# ---------------------------------------------------------------- readers

def _op_from_map(d: Any, position: int) -> Op:
    """One op from a plain op map; raises HistoryError (without a place) if not."""
    if not isinstance(d, dict):
        raise HistoryError(f"expected an op map, got {_describe(d)}")
    for key in ("type", "f", "process"):
        if key not in d:
            raise HistoryError(f"op map without :{key}")
    type_, f, process = d["type"], d["f"], d["process"]
    if not isinstance(type_, str) or type_ not in TYPES:
        raise HistoryError(f"unknown op type {_describe(type_)}")
    if not isinstance(f, str):
        raise HistoryError(f":f must be a keyword or a string, got {_describe(f)}")
    if type(process) is not int and not isinstance(process, str):
        raise HistoryError(f":process must be an integer or a keyword, got "
                           f"{_describe(process)}")
    index = d.get("index", position)
    time = d.get("time", -1)
    if type(index) is not int or type(time) is not int:
        raise HistoryError(":index and :time must be integers")
    extra = {k: v for k, v in d.items()
             if k not in ("type", "f", "value", "process", "index", "time")}
    return Op(type_, f, d.get("value"), process, time, index, extra or None)


def _describe(v: Any) -> str:
    """A value in an error message, kept to one short line whatever it holds."""
    text = repr(v)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _ops_from_maps(forms: list[Any], text: str, path: Path,
                   convert: Callable[[Any, int], Op]) -> list[Op]:
    ops = []
    for i, m in enumerate(forms):
        try:
            ops.append(convert(m, i))
        except HistoryError as e:
            raise _at_op(text, path, i, e) from None
    return ops


def _at_op(text: str, path: Path, i: int, e: HistoryError) -> HistoryError:
    """``e`` placed at the line where the ``i``-th op-level element begins."""
    starts = op_starts(text)
    line = Lines(text).at(starts[i]) if i < len(starts) else 1
    return HistoryError(f"{path}:{line}: {e}")


def op_lines(path: Path | str, fmt: str, count: int) -> list[int]:
    """The line of each of the first ``count`` ops ``read_history`` returns for this
    file (an op not found: 0). Only for error messages: it reads the file again."""
    path = Path(path)
    if fmt == "jsonl":
        with open_history(path) as f:
            return [n for n, line in enumerate(f, 1) if line.strip()][:count]
    text = read_text(path)
    lines = Lines(text)
    if fmt == "jepsen-log":
        return [n for n, line in enumerate(text.split("\n"), 1) if _LOG_OP.search(line)][:count]
    if fmt == "porcupine":
        return [n for n, line in enumerate(text.split("\n"), 1) if line.strip()][:count]
    return [lines.at(pos) for pos in op_starts(text)[:count]]


def read_edn(text: str, path: Path, limits: Limits | None = None) -> list[Op]:
    forms = _load_edn(text, path, limits)
    return _nil_reads_unknown(_ops_from_maps(forms, text, path, _op_from_map))


def _nil_reads_unknown(history: list[Op]) -> list[Op]:
    """Knossos's convention for EDN histories: a read that completed with nil returned
    no value (Jepsen writes nil where a client could not tell), so it matches any state.
    In splitbrain's contract such a read is an ``info`` read, which constrains nothing.
    Porcupine's Jepsen logs are read differently (nil there is the initial value). A
    Jepsen independent history's read of ``[key nil]`` is the same read of one key (its
    checker hands Knossos each key's values alone)."""
    for op in history:
        v = op.value
        if op.type == "ok" and op.f == "read" and (
                v is None or (isinstance(v, list) and len(v) == 2 and v[1] is None)):
            op.type = "info"
            op.extra["error"] = "nil read: value unknown (Knossos convention)"
    return history


def _porcupine_op(m: Any, position: int) -> Op:
    op = _op_from_map(m, position)
    if op.f not in _PORCUPINE_F:
        raise HistoryError(f"Porcupine kv op {op.f!r} is not get, put or append")
    if "key" not in op.extra:
        raise HistoryError("Porcupine kv op without :key")
    op.value = [op.extra.pop("key"), op.value]
    op.f = _PORCUPINE_F[op.f]
    return op


def read_porcupine(text: str, path: Path, limits: Limits | None = None) -> list[Op]:
    """Porcupine writes every line in one fixed shape, and its own test suite reads them
    with one regular expression per op kind. When every line has exactly that shape
    (strings without escapes) the same is done here, ~40 times faster than decoding
    EDN; anything else is read as EDN."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    matches = [_PORCUPINE_LINE.fullmatch(ln.strip()) for ln in lines]
    if not all(matches):
        return _ops_from_maps(_load_edn(text, path, limits), text, path, _porcupine_op)
    ops = []
    for i, m in enumerate(matches):
        assert m is not None
        value = None if m["value"] == "nil" else m["value"][1:-1]
        ops.append(Op(m["type"], _PORCUPINE_F[m["f"]], [m["key"], value],
                      int(m["process"]), -1, i))
    return ops


def read_jepsen_log(text: str, path: Path, limits: Limits | None = None) -> list[Op]:
    """Op lines of a Jepsen log. Each line's value (and the error Jepsen may print after
    it) is EDN. A log repeats few distinct values (nil, small numbers, [old new]), so
    each distinct value text is decoded once, all in one call."""
    matches: list[tuple[int, re.Match[str]]] = []
    for n, line in enumerate(text.split("\n"), 1):
        m = _LOG_OP.search(line)
        if m:
            matches.append((n, m))
    if not matches:
        raise HistoryError(f"{path}:1: no Jepsen op lines (`jepsen.util - P :type :f "
                           "value`)")
    last = matches[-1][0]
    if not text.endswith("\n") and last == text.count("\n") + 1:
        # A logger ends every line; an op line without its newline was cut short, and
        # `:ok :read 4` cut from `:ok :read 42` would otherwise be read as a wrong op.
        raise HistoryError(f"{path}:{last}: truncated op line (no newline at the end)")
    first_line: dict[str, int] = {}
    for n, m in matches:
        first_line.setdefault(m["value"] or "", n)
    decoded = _log_values(first_line, path, limits)
    ops = []
    for i, (_n, m) in enumerate(matches):
        raw = m["process"].lstrip(":")
        process: int | str = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 \
            else raw
        fields = decoded[m["value"] or ""]
        value = fields[0] if fields else None
        extra = {"error": fields[1]} if len(fields) > 1 else None
        ops.append(Op(m["type"], m["f"], value, process, -1, i, extra))
    return ops


def _log_values(first_line: dict[str, int], path: Path,
                limits: Limits | None) -> dict[str, list[Any]]:
    """Each distinct value text -> its plain EDN forms (the value, then any error)."""
    texts = list(first_line)
    batch = "\n".join(f"[{t}]" for t in texts)
    try:
        forms = edn_fast.loads_all(batch, limits)
    except edn_fast.Unsupported:
        try:
            forms = [plain(f) for f in edn_format.loads_all(batch)]
        except (*REFERENCE_ERRORS, HistoryError):
            forms = []
    if len(forms) == len(texts) and all(isinstance(f, list) for f in forms):
        return dict(zip(texts, forms))
    for t in sorted(texts, key=first_line.__getitem__):   # the line that broke the batch
        where = f"{path}:{first_line[t]}"
        try:
            one = edn_format.loads_all(f"[{t}]")
            if len(one) != 1:
                raise EDNDecodeError("unbalanced brackets")
            plain(one[0])
        except HistoryError as e:
            raise HistoryError(f"{where}: {e}") from None
        except REFERENCE_ERRORS:
            raise HistoryError(f"{where}: malformed op value {_describe(t)}") from None
    raise HistoryError(f"{path}:{min(first_line.values())}: malformed op values")


_READERS: dict[str, Callable[[str, Path, Limits | None], list[Op]]] = {
    "edn": read_edn,
    "jepsen-log": read_jepsen_log,
    "porcupine": read_porcupine,
}
