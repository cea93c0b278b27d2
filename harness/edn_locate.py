"""Where an EDN text goes wrong, by line: only ever run once a read has failed.

edn_format reports errors without positions, so the text is scanned again with that
library's own lexer to find the first lexical or bracket problem, then each op-level
element is decoded alone to find the first that fails. Every exception the reference
can raise on hostile input (a ratio over zero, an integer past Python's 4,300 digits,
nesting past the recursion limit) becomes a message here, never a traceback.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

import edn_format
from edn_format import EDNDecodeError
from edn_format.edn_lex import lex as edn_lexer

from harness.reading import HistoryError

_OPENERS = {"VECTOR_START": "]", "LIST_START": ")", "MAP_START": "}", "SET_START": "}"}
_CLOSERS = {"VECTOR_END", "LIST_END", "MAP_OR_SET_END"}
_OPENER_OF = {"]": "[", ")": "(", "}": "{"}
_KNOWN_TAGS = {"inst", "uuid", "jepsen.history.Op"}
REFERENCE_ERRORS = (EDNDecodeError, NotImplementedError, RecursionError, ValueError,
                    ArithmeticError, TypeError, KeyError, IndexError, AttributeError)
"""What edn_format raises on input it cannot read: its own error, and what its token
handlers let escape (``1/0``, huge integers, deep nesting, odd tags)."""
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|#\{|[\[\](){}]|;[^\n]*|[^\s,\[\](){}";]+')


@dataclass(slots=True)
class Scan:
    """Where the op-level elements of an EDN text start and end, from the lexer."""

    spans: list[tuple[int, int]]
    problem: str | None = None
    problem_pos: int = 0


class Lines:
    """Character offset -> 1-based line number."""

    def __init__(self, text: str, first: int = 1) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.first = first

    def at(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos) + self.first - 1


def op_starts(text: str) -> list[int]:
    return op_spans(text)[0]


def op_spans(text: str) -> tuple[list[int], int]:
    """The offset of each op-level element, counted as the readers count ops (the
    elements of a lone top-level vector or list, else the top-level forms), found with
    one regular expression rather than the slow reference lexer: for naming the line
    of an op that decoded but is not a valid op, and for reading a long text in parts.
    Also where the last element ends: the lone vector's closing bracket, or the end.
    A tag belongs to the element it precedes."""
    top: list[int] = []      # top-level forms
    inner: list[int] = []    # elements of the first top-level form
    depth = 0
    tag: int | None = None   # where a tag waiting for its element began
    close = len(text)
    for m in _STRUCTURE.finditer(text):
        tok = m.group()
        c = tok[0]
        if c == ";":
            continue
        start = m.start() if tag is None else tag
        if c == "#" and tok != "#{":
            tag = start if depth <= 1 else None
            continue
        tag = None
        if depth == 0 and c not in "])}":
            top.append(start)
        elif depth == 1 and len(top) == 1 and c not in "])}":
            inner.append(start)
        if c in "[({" or tok == "#{":
            depth += 1
        elif c in "])}":
            depth = max(depth - 1, 0)
            if depth == 0 and len(top) == 1:
                close = m.start()
    if len(top) == 1 and text[top[0]] in "[(":
        return inner, close
    return top, len(text)


def scan(text: str) -> Scan:
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
                    return Scan(spans, f"unbalanced brackets (unexpected {tok.value!r})",
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
        return Scan(spans, what, pos)
    except ZeroDivisionError:   # the lexer's ratio handler
        return Scan(spans, "a ratio with a zero denominator", lexer.lexpos)
    except (ValueError, ArithmeticError):   # its integer handler: past 4,300 digits
        return Scan(spans, "a number too long to read", lexer.lexpos)
    if stack:
        closer, opened = stack[-1]
        return Scan(spans, f"unbalanced brackets (truncated? {_OPENER_OF[closer]!r} opened "
                           f"at line {Lines(text).at(opened)} is never closed)", len(text))
    return Scan(spans)


def edn_error(text: str, path: Path, fallback: str, first_line: int = 1) -> HistoryError:
    """The first problem in an EDN text that edn_format refused, with its line
    (``text`` may be a part of the file that begins at ``first_line``)."""
    lines = Lines(text, first_line)
    found = scan(text)
    if found.problem:
        pos = min(found.problem_pos, max(len(text.rstrip()) - 1, 0))
        return HistoryError(f"{path}:{lines.at(pos)}: {found.problem}")
    for a, b in found.spans:
        try:
            edn_format.loads(text[a:b])
        except NotImplementedError:
            tags = re.findall(r"#([A-Za-z][\w.*+!?$%&=<>/-]*)", text[a:b])
            tag = next((t for t in tags if t not in _KNOWN_TAGS), "")
            return HistoryError(f"{path}:{lines.at(a)}: unsupported EDN tag #{tag}")
        except REFERENCE_ERRORS as e:
            return HistoryError(f"{path}:{lines.at(a)}: {edn_message(e)}")
    return HistoryError(f"{path}:{first_line}: {fallback}")


def edn_message(e: BaseException) -> str:
    if isinstance(e, NotImplementedError):
        return "unsupported EDN tag"
    if isinstance(e, RecursionError):
        return "values nested too deep"
    if not isinstance(e, EDNDecodeError):
        return f"cannot decode ({type(e).__name__}: {_first_line(e)})"
    msg = _first_line(e)
    return msg if "LexToken" not in msg else "unexpected token"


def _first_line(e: BaseException) -> str:
    lines = str(e).splitlines()
    return lines[0][:200] if lines else type(e).__name__
