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

EDN is parsed by the ``edn_format`` library. It reports errors without positions, so on
a failure the text is re-scanned with that library's own lexer to name the line of the
problem; the happy path pays nothing for that. Every failure is a ``HistoryError``
whose one-line message starts with ``file:line:``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import edn_format
from edn_format import EDNDecodeError, Keyword, Symbol
from edn_format.edn_lex import lex as edn_lexer

from harness.history import TYPES, HistoryError, Op, read_jsonl

FORMATS = ("jsonl", "edn", "jepsen-log", "porcupine")

# Jepsen 0.3 writes ops as records; their body is an ordinary op map.
edn_format.add_tag("jepsen.history.Op", lambda m: m)

_LOG_OP = re.compile(
    r"jepsen\.util\s+(?:-\s+)?(?P<process>:?[\w.-]+)\s+:(?P<type>invoke|ok|fail|info)"
    r"\s+:?(?P<f>[^\s]+)(?:\s+(?P<value>.*?))?\s*$"
)
_PORCUPINE_F = {"get": "read", "put": "write", "append": "append"}
_PORCUPINE_LINE = re.compile(
    r'\{:process (?P<process>\d+), :type :(?P<type>invoke|ok|fail|info), '
    r':f :(?P<f>get|put|append), :key "(?P<key>[^"\\]*)", :value (?P<value>nil|"[^"\\]*")\}'
)
_OPENERS = {"VECTOR_START": "]", "LIST_START": ")", "MAP_START": "}", "SET_START": "}"}
_CLOSERS = {"VECTOR_END", "LIST_END", "MAP_OR_SET_END"}
_OPENER_OF = {"]": "[", ")": "(", "}": "{"}
_KNOWN_TAGS = {"inst", "uuid", "jepsen.history.Op"}


def read_history(path: Path | str, fmt: str = "auto") -> list[Op]:
    """Reads a history file in ``fmt`` (or the format its content shows, for ``auto``)."""
    path = Path(path)
    if fmt not in FORMATS and fmt != "auto":
        raise HistoryError(f"unknown history format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "auto":
        fmt = detect_file_format(path)
    if fmt == "jsonl":
        read_head(path)  # the friendly errors for a missing or unreadable file
        try:
            return read_jsonl(path)
        except UnicodeDecodeError as e:
            raise HistoryError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return _READERS[fmt](read_text(path), path)


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
        raise HistoryError(f"{path}: empty history")
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
    with _friendly_errors(path), open(path, "rb") as f:
        head = f.read(limit)
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:
            raise HistoryError(f"{path}: not UTF-8 text (byte {e.start})") from None
        return head[:e.start].decode("utf-8")


def read_text(path: Path | str) -> str:
    """The file's text; a missing, unreadable or non-UTF-8 file is a HistoryError."""
    with _friendly_errors(path):
        return Path(path).read_text(encoding="utf-8")


@contextmanager
def _friendly_errors(path: Path | str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise HistoryError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise HistoryError(f"{path}: is a directory, not a history file") from None
    except UnicodeDecodeError as e:
        raise HistoryError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise HistoryError(f"{path}: cannot read ({e.strerror})") from None


# ---------------------------------------------------------------- EDN values

def plain(v: Any) -> Any:
    """An EDN value as plain JSON-like Python: keywords and symbols become strings,
    vectors and lists become lists, maps dicts with string keys, sets sorted lists."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, Keyword):
        return v.name
    if isinstance(v, Symbol):
        return str(v)
    if isinstance(v, Mapping):
        return {_key(k): plain(x) for k, x in v.items()}
    if isinstance(v, frozenset | set):
        items = [plain(x) for x in v]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(v, Sequence):
        return [plain(x) for x in v]
    if isinstance(v, Fraction | Decimal):
        return float(v)
    return str(v)


def _key(k: Any) -> str:
    p = plain(k)
    return p if isinstance(p, str) else str(p)


# ------------------------------------------------------------- EDN locating

@dataclass(slots=True)
class _Scan:
    """Where the op-level elements of an EDN text start and end, from the lexer."""

    spans: list[tuple[int, int]]
    problem: str | None = None
    problem_pos: int = 0


class _Lines:
    """Character offset -> 1-based line number."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos)


def _scan(text: str) -> _Scan:
    """Splits ``text`` into op-level elements with edn_format's lexer, noting the first
    bracket or lexical problem. Ops are the elements of a top-level vector or list, or
    the top-level forms themselves when there is no wrapper."""
    lexer = edn_lexer(text)
    stack: list[tuple[str, int]] = []   # (closer expected, position of opener)
    spans: list[tuple[int, int]] = []
    op_depth: int | None = None
    start = 0
    try:
        for tok in iter(lexer.token, None):
            if op_depth is None:
                op_depth = 1 if tok.type in ("VECTOR_START", "LIST_START") else 0
            depth = len(stack)
            if tok.type in _OPENERS:
                if depth == op_depth:
                    start = tok.lexpos
                stack.append((_OPENERS[tok.type], tok.lexpos))
            elif tok.type in _CLOSERS:
                if not stack or stack[-1][0] != tok.value:
                    return _Scan(spans, f"unbalanced brackets (unexpected {tok.value!r})",
                                 tok.lexpos)
                stack.pop()
                if len(stack) == op_depth:
                    spans.append((start, tok.lexpos + 1))
            elif depth == op_depth:
                spans.append((tok.lexpos, lexer.lexpos))
    except EDNDecodeError:
        pos = lexer.lexpos
        what = "unterminated string" if text[pos:pos + 1] == '"' else \
            f"illegal character {text[pos:pos + 1]!r}"
        return _Scan(spans, what, pos)
    if stack:
        closer, opened = stack[-1]
        return _Scan(spans, f"unbalanced brackets (truncated? {_OPENER_OF[closer]!r} opened "
                            f"at line {_Lines(text).at(opened)} is never closed)", len(text))
    return _Scan(spans)


def _edn_error(text: str, path: Path, fallback: str) -> HistoryError:
    """The first problem in an EDN text that edn_format refused, with its line."""
    lines = _Lines(text)
    scan = _scan(text)
    if scan.problem:
        pos = min(scan.problem_pos, max(len(text.rstrip()) - 1, 0))
        return HistoryError(f"{path}:{lines.at(pos)}: {scan.problem}")
    for a, b in scan.spans:
        try:
            edn_format.loads(text[a:b])
        except NotImplementedError:
            tags = re.findall(r"#([A-Za-z][\w.*+!?$%&=<>/-]*)", text[a:b])
            tag = next((t for t in tags if t not in _KNOWN_TAGS), "")
            return HistoryError(f"{path}:{lines.at(a)}: unsupported EDN tag #{tag}")
        except EDNDecodeError as e:
            return HistoryError(f"{path}:{lines.at(a)}: {_edn_message(e)}")
    return HistoryError(f"{path}: {fallback}")


def _edn_message(e: BaseException) -> str:
    if isinstance(e, NotImplementedError):
        return "unsupported EDN tag"
    msg = str(e)
    return msg if "LexToken" not in msg else "unexpected token"


def _load_edn(text: str, path: Path) -> list[Any]:
    try:
        forms = edn_format.loads_all(text)
    except (EDNDecodeError, NotImplementedError) as e:
        raise _edn_error(text, path, _edn_message(e)) from None
    if len(forms) == 1 and isinstance(forms[0], Sequence) and not isinstance(forms[0], str):
        return list(forms[0])
    return list(forms)


# ---------------------------------------------------------------- readers

def _op_from_map(m: Any, position: int) -> Op:
    """One op from a decoded EDN map; raises HistoryError (without a place) if not."""
    if not isinstance(m, Mapping):
        raise HistoryError(f"expected an op map, got {plain(m)!r}")
    d = {_key(k): plain(v) for k, v in m.items()}
    for key in ("type", "f", "process"):
        if key not in d:
            raise HistoryError(f"op map without :{key}")
    if d["type"] not in TYPES:
        raise HistoryError(f"unknown op type {d['type']!r}")
    index = d.pop("index", position)
    time = d.pop("time", -1)
    if not isinstance(index, int) or not isinstance(time, int):
        raise HistoryError(":index and :time must be integers")
    extra = {k: v for k, v in d.items() if k not in ("type", "f", "value", "process")}
    return Op(d["type"], str(d["f"]), d.get("value"), d["process"], time, index, extra)


def _ops_from_maps(forms: list[Any], text: str, path: Path,
                   convert: Callable[[Any, int], Op]) -> list[Op]:
    ops = []
    for i, m in enumerate(forms):
        try:
            ops.append(convert(m, i))
        except HistoryError as e:
            spans = _scan(text).spans
            line = _Lines(text).at(spans[i][0]) if i < len(spans) else "?"
            raise HistoryError(f"{path}:{line}: {e}") from None
    return ops


def read_edn(text: str, path: Path) -> list[Op]:
    return _nil_reads_unknown(_ops_from_maps(_load_edn(text, path), text, path, _op_from_map))


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


def read_porcupine(text: str, path: Path) -> list[Op]:
    """Porcupine writes every line in one fixed shape, and its own test suite reads them
    with one regular expression per op kind. When every line has exactly that shape
    (strings without escapes) the same is done here, ~40 times faster than decoding
    EDN; anything else goes through edn_format."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    matches = [_PORCUPINE_LINE.fullmatch(ln.strip()) for ln in lines]
    if not all(matches):
        return _ops_from_maps(_load_edn(text, path), text, path, _porcupine_op)
    ops = []
    for i, m in enumerate(matches):
        value = None if m["value"] == "nil" else m["value"][1:-1]
        ops.append(Op(m["type"], _PORCUPINE_F[m["f"]], [m["key"], value],
                      int(m["process"]), -1, i))
    return ops


def read_jepsen_log(text: str, path: Path) -> list[Op]:
    """Op lines of a Jepsen log. Each line's value (and the error Jepsen may print after
    it) is EDN. edn_format is slow per call and per token, and a log repeats few
    distinct values (nil, small numbers, [old new]), so each distinct value text is
    decoded once, all in one call."""
    matches: list[tuple[int, re.Match[str]]] = []
    for n, line in enumerate(text.split("\n"), 1):
        m = _LOG_OP.search(line)
        if m:
            matches.append((n, m))
    if not matches:
        raise HistoryError(f"{path}: no Jepsen op lines (`jepsen.util - P :type :f value`)")
    last = matches[-1][0]
    if not text.endswith("\n") and last == text.count("\n") + 1:
        # A logger ends every line; an op line without its newline was cut short, and
        # `:ok :read 4` cut from `:ok :read 42` would otherwise be read as a wrong op.
        raise HistoryError(f"{path}:{last}: truncated op line (no newline at the end)")
    first_line: dict[str, int] = {}
    for n, m in matches:
        first_line.setdefault(m["value"] or "", n)
    decoded = _log_values(first_line, path)
    ops = []
    for i, (_n, m) in enumerate(matches):
        raw = m["process"].lstrip(":")
        process: int | str = int(raw) if raw.isdigit() else raw
        fields = decoded[m["value"] or ""]
        value = plain(fields[0]) if fields else None
        extra = {"error": plain(fields[1])} if len(fields) > 1 else {}
        ops.append(Op(m["type"], m["f"], value, process, -1, i, extra))
    return ops


def _log_values(first_line: dict[str, int], path: Path) -> dict[str, Sequence[Any]]:
    """Each distinct value text -> its EDN forms (the value, then any error)."""
    texts = list(first_line)
    try:
        forms = edn_format.loads_all("\n".join(f"[{t}]" for t in texts))
        if len(forms) == len(texts) and all(isinstance(f, Sequence) for f in forms):
            return dict(zip(texts, forms))
    except (EDNDecodeError, NotImplementedError):
        pass
    for t in sorted(texts, key=first_line.__getitem__):   # the line that broke the batch
        try:
            if len(edn_format.loads_all(f"[{t}]")) != 1:
                raise EDNDecodeError("unbalanced brackets")
        except (EDNDecodeError, NotImplementedError):
            raise HistoryError(f"{path}:{first_line[t]}: malformed op value {t!r}") from None
    raise HistoryError(f"{path}: malformed op values")


_READERS: dict[str, Callable[[str, Path], list[Op]]] = {
    "edn": read_edn,
    "jepsen-log": read_jepsen_log,
    "porcupine": read_porcupine,
}
