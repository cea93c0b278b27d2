"""A fast reader for the part of EDN that Jepsen writes, falling back to edn_format.

Jepsen histories are vectors of flat op maps: keywords, integers, strings, nil,
vectors of those. ``edn_format`` (the reference) lexes with PLY and builds immutable
collections token by token: 7 s for the 2.7 MB Knossos corpus. Here one regular
expression splits the text into tokens in C and a loop builds the *plain* values
(``harness.edn_values.plain``: keywords and symbols as strings, vectors and lists as
lists, maps as dicts with string keys, sets as sorted lists) directly.

Only tokens whose meaning is certain are taken: any other token (a character, a ratio,
a tag other than Jepsen's op record, a number with a suffix)
raises ``Unsupported`` and the caller reads the whole text with edn_format instead, so
the fast path never decides what the reference would decide differently.
``tests/test_formats.py`` checks the two agree on the Knossos corpus and on generated
EDN.
"""

from __future__ import annotations

import re
from typing import Any

from edn_format.edn_lex import decode_escapes

from harness.reading import CHECK_EVERY, MAX_DEPTH, Limits, check_budget

_PLAIN = r'[^\s,\[\](){}";#\\]'   # a character of an atom in a flat map
_TOKENS = re.compile(
    r'\{(?:' + _PLAIN + r'|[\s,]|\[(?:' + _PLAIN + r'|[\s,])*\])*\}'   # a flat map
    r'|"[^"\\]*(?:\\.[^"\\]*)*"|#\{|[\[\](){}]|;[^\n]*|[^\s,\[\](){}";]+|"')
_NAME = r"[A-Za-z0-9_.*+!?$%&=<>-]+(?:/[A-Za-z0-9_.*+!?$%&=<>-]+)?"
_PAIR = re.compile(r"[\s,]*:(" + _NAME + r")[\s,]+(" + _PLAIN + r"+|\[[^\]]*\])")
_FLAT_MAP = re.compile(r"\{(?:[\s,]*:" + _NAME + r"[\s,]+(?:" + _PLAIN
                       + r"+|\[[^\]]*\]))*[\s,]*\}")
_SEPARATORS = re.compile(r"[\s,]+")
_MISSING = object()
CACHED = 1 << 16
"""Distinct atom texts decoded once and kept."""
_ATOM = re.compile(
    r"(?P<int>-?(?:0|[1-9][0-9]{0,17}))"
    r"|(?P<float>-?[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]{1,3})?)"
    r"|:(?P<kw>[A-Za-z0-9_.*+!?$%&=<>-]+(?:/[A-Za-z0-9_.*+!?$%&=<>-]+)?)"
    r"|(?P<sym>[A-Za-z][A-Za-z0-9_.*+!?$%&=<>-]*(?:/[A-Za-z0-9_.*+!?$%&=<>-]+)?)"
)
_CONSTANTS: dict[str, Any] = {"nil": None, "true": True, "false": False}
_JEPSEN_OP_TAG = "#jepsen.history.Op"   # a record whose body is an ordinary op map
_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}


class Unsupported(Exception):
    """The text holds something the fast path does not read: use the reference."""


def loads_all(text: str, limits: Limits | None = None) -> list[Any]:
    """Every top-level form of ``text`` as plain values, or ``Unsupported``.

    ``limits`` is consulted every ``CHECK_EVERY`` tokens (``BudgetExceeded``)."""
    tokens = _TOKENS.findall(text)
    top: list[Any] = []
    items = top
    stack: list[tuple[list[Any], str]] = []   # (the enclosing items, this opener)
    atoms: dict[str, Any] = {}   # each distinct atom text decoded once
    for base in range(0, len(tokens), CHECK_EVERY):
        if base:
            check_budget(limits, f"token {base}")
        for tok in tokens[base:base + CHECK_EVERY]:
            c = tok[0]
            if c == '"':
                if len(tok) < 2:
                    raise Unsupported("unterminated string")
                items.append(tok[1:-1] if "\\" not in tok else _escaped(tok))
            elif c == "{" and len(tok) > 1:
                if len(stack) + 2 > MAX_DEPTH:
                    raise Unsupported("nested too deep")
                items.append(_flat_map(tok, atoms))
            elif c in "[({" or tok == "#{":
                if len(stack) >= MAX_DEPTH:
                    raise Unsupported("nested too deep")
                stack.append((items, tok))
                items = []
            elif c in "])}":
                if not stack:
                    raise Unsupported("unbalanced")
                outer, opener = stack.pop()
                if _CLOSER[opener] != c:
                    raise Unsupported("unbalanced")
                outer.append(_collection(opener, items))
                items = outer
            elif c == ";" or tok == _JEPSEN_OP_TAG:
                continue
            else:
                items.append(_cached(tok, atoms))
    if stack:
        raise Unsupported("unbalanced")
    return top


def _flat_map(tok: str, atoms: dict[str, Any]) -> Any:
    """A map of keywords to atoms and vectors of atoms (most of a Jepsen history), read
    as one token: a pair costs one match instead of a trip round the token loop, and
    each distinct value text is decoded once."""
    if _FLAT_MAP.fullmatch(tok) is None:
        return _general_map(tok, atoms)
    pairs = _PAIR.findall(tok, 1)
    get = atoms.get
    out = {}
    for key, text in pairs:
        v = get(text, _MISSING)
        if v is _MISSING:
            v = _cached(text, atoms)
        if type(v) is tuple:
            v = list(v)   # a vector: each op gets its own list
        out[key] = v
    if len(out) != len(pairs):
        raise Unsupported("duplicate keys")
    return out


def _general_map(tok: str, atoms: dict[str, Any]) -> Any:
    """A braced token that is not a flat map after all (``{:a}``, ``{:a[1]}``, a
    symbol key): its tokens one by one. The braces hold only atoms and flat vectors."""
    items: list[Any] = []
    vector: list[Any] | None = None
    for t in _TOKENS.findall(tok, 1, len(tok) - 1):
        if t == "[":
            vector = []
        elif t == "]":
            items.append(vector)
            vector = None
        else:
            (items if vector is None else vector).append(_cached(t, atoms))
    return _collection("{", items)


def _cached(tok: str, atoms: dict[str, Any]) -> Any:
    """An atom's value, or a flat vector's as a tuple (the caller copies it)."""
    try:
        return atoms[tok]
    except KeyError:
        pass
    if tok[0] == "[":
        value: Any = tuple(_cached(x, atoms) for x in _SEPARATORS.split(tok[1:-1]) if x)
    else:
        value = _atom(tok)
    if len(atoms) < CACHED:   # times and indices never repeat: keep the cache small
        atoms[tok] = value
    return value


def _escaped(tok: str) -> str:
    """A string with escapes, decoded by the reference's own function."""
    try:
        return decode_escapes(tok[1:-1])
    except ValueError:   # a malformed escape: the reference says where
        raise Unsupported(tok[:20]) from None


def _atom(tok: str) -> Any:
    if tok.isdigit() and tok.isascii() and len(tok) < 19 and (tok[0] != "0" or tok == "0"):
        return int(tok)   # the commonest atom, without the regular expression
    if tok in _CONSTANTS:
        return _CONSTANTS[tok]
    m = _ATOM.fullmatch(tok)
    if m is None:
        raise Unsupported(tok[:20])
    kind = m.lastgroup
    if kind == "int":
        return int(tok)
    if kind == "float":
        value = float(tok)
        return int(value) if value.is_integer() else value  # as JSON: 2.0 is 2
    return m.group(kind or 0)  # a keyword's or a symbol's name


def _collection(opener: str, items: list[Any]) -> Any:
    if opener == "{":
        if len(items) % 2:
            raise Unsupported("odd map")
        raw = items[::2]
        keys = [k if type(k) is str else _key(k) for k in raw]
        if len(set(keys)) != len(keys) or len(set(raw)) != len(raw):
            raise Unsupported("duplicate keys")   # the reference keeps the last (True == 1)
        return dict(zip(keys, items[1::2]))
    if opener == "#{":
        if not all(type(x) in (int, float) for x in items):
            raise Unsupported("set of collections")
        unique = list(set(items))
        try:
            return sorted(unique)
        except TypeError:
            return sorted(unique, key=repr)
    return items


def _key(k: Any) -> str:
    if k is None or type(k) in (int, float, bool):
        return str(k)
    raise Unsupported("collection as a map key")
