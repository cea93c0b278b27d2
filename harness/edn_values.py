"""EDN text as plain values: the op-level forms of a history, before they are ops.

The fast path (``harness.edn_fast``) reads the subset Jepsen writes; anything else goes
to the ``edn_format`` library, the reference, in parts of ``REFERENCE_PART`` op-level
elements so that the budget is consulted between parts. ``plain`` is the one meaning
both paths give a value: keywords and symbols as strings, vectors and lists as lists.
A failure is a ``HistoryError`` placed at its line (``harness.edn_locate``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import edn_format
from edn_format import Keyword, Symbol

from harness import edn_fast
from harness.edn_locate import REFERENCE_ERRORS, Lines, edn_error, edn_message, op_spans, op_starts
from harness.reading import MAX_DEPTH, HistoryError, Limits, check_budget

# Jepsen 0.3 writes ops as records; their body is an ordinary op map.
edn_format.add_tag("jepsen.history.Op", lambda m: m)


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


def load_edn(text: str, path: Path, limits: Limits | None = None) -> list[Any]:
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
    whole = len(starts) <= REFERENCE_PART or not _splittable(text, starts[0], end)
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
                raise at_op(text, path, i, e) from None
    return out


def _unsplittable(text: str) -> bool:
    """Whether ``text`` has what ``op_spans`` does not follow: a discarded form (``#_``)
    or a character literal (``\\(`` would count as a bracket)."""
    outside_strings = _STRING.sub("", text)
    return "#_" in outside_strings or "\\" in outside_strings


_CLOSER = {"": "", "[": "]", "(": ")"}


def _splittable(text: str, first: int, end: int) -> bool:
    """Whether parts cut at the op-level elements read as the whole text does: before
    the ``first`` element there is nothing, or the opening bracket of a lone sequence
    that its own bracket closes at ``end``; nothing follows; and nothing ``op_spans``
    does not follow (``_unsplittable``). Otherwise the reference reads the whole, and
    a text cut short or closed by the wrong bracket is its error, not a history."""
    before = _bare(text[:first])
    if before not in _CLOSER or _bare(text[end + 1:]):
        return False
    closed = end == len(text) if not before else text[end:end + 1] == _CLOSER[before]
    return closed and not _unsplittable(text)


def _bare(text: str) -> str:
    """``text`` without whitespace, commas and comments."""
    return re.sub(r";[^\n]*|[\s,]", "", text)


def _is_list(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, str)


def at_op(text: str, path: Path, i: int, e: HistoryError) -> HistoryError:
    """``e`` placed at the line where the ``i``-th op-level element begins."""
    starts = op_starts(text)
    line = Lines(text).at(starts[i]) if i < len(starts) else 1
    return HistoryError(f"{path}:{line}: {e}")
