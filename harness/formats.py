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

EDN is read into plain values by ``harness.edn_values``: a fast path for the subset
Jepsen writes (``harness.edn_fast``), and the ``edn_format`` library, the reference, for
anything else; this module turns those values into ops. On a failure the text is
scanned again to name the line of the problem (``harness.edn_locate``); the happy path
pays nothing for that. Every failure is a ``HistoryError`` whose one-line message
starts with ``file:line:``; a read that outlasts the check's budget raises
``BudgetExceeded``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import edn_format
from edn_format import EDNDecodeError

from harness import edn_fast
from harness.edn_locate import (
    REFERENCE_ERRORS,
    Lines,
    op_starts,
)
from harness.edn_values import at_op, load_edn, plain
from harness.history import TYPES, Op, read_jsonl
from harness.reading import (
    HistoryError,
    Limits,
    gc_paused,
    not_utf8,
    open_history,
    read_text,
)

FORMATS = ("jsonl", "edn", "jepsen-log", "porcupine")

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
            raise at_op(text, path, i, e) from None
    return ops


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
    forms = load_edn(text, path, limits)
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
        return _ops_from_maps(load_edn(text, path, limits), text, path, _porcupine_op)
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
