"""The one validation mechanism for what users type: a TOML test file, flags, ``-o`` options.

Every schema is a pydantic model derived from ``Schema``: unknown keys refused, types
checked strictly (``nodes = "abc"`` is not three nodes called a, b and c; ``1.5`` is not
an integer; ``true`` is not a number), numbers finite. Values typed on the command line
arrive as text and are parsed by the field's own type first (``from_text``), so a flag and
a TOML key go through the same checks and read the same errors. ``describe`` turns a
pydantic error into the end of a one-line message; the caller says where the value came
from (a file and line, a flag), because only the caller knows.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


@dataclass(frozen=True)
class TextAs:
    """Field metadata: command-line text for this field is parsed as ``kind`` (e.g. the
    ``nodes`` field holds names, but ``--nodes 3`` is a count)."""

    kind: Any


def from_text(model: type[BaseModel], field: str, text: str) -> Any:
    """``text`` (from the command line) as a value of ``field``'s type, for the strict
    schema to check; a ValidationError located at ``field`` when it does not parse."""
    info = model.model_fields[field]
    kind = next((m.kind for m in info.metadata if isinstance(m, TextAs)), info.annotation)
    adapter = _adapter(kind)
    if adapter is None:
        return text  # a type only its model can build: the model checks the text itself
    try:
        return adapter.validate_python(text)
    except ValidationError as e:
        first = e.errors()[0]
        detail: InitErrorDetails = {"type": first["type"], "loc": (field,), "input": text}
        if "ctx" in first:
            detail["ctx"] = first["ctx"]
        raise ValidationError.from_exception_data(model.__name__, [detail]) from None


_ADAPTERS: dict[Any, TypeAdapter[Any] | None] = {}


def _adapter(kind: Any) -> TypeAdapter[Any] | None:
    try:
        return _ADAPTERS[kind]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation: build it each time
        return _build(kind)
    _ADAPTERS[kind] = _build(kind)
    return _ADAPTERS[kind]


def _build(kind: Any) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(kind)
    except PydanticUserError:  # e.g. an arbitrary class a user's model allows
        return None


def no_effect(key: str, why: str) -> PydanticCustomError:
    """The error for an option that would change nothing in this combination."""
    return PydanticCustomError("no_effect", "has no effect " + why.replace("{", "{{")
                               .replace("}", "}}"), {"key": key})


def error_key(error: ErrorDetails) -> str | None:
    """The top-level key an error is about (a model-level error names it in ``ctx``)."""
    if error["loc"]:
        return str(error["loc"][0])
    key = (error.get("ctx") or {}).get("key")
    return str(key) if key is not None else None


_PHRASES = {
    "int_type": "must be an integer", "int_parsing": "must be an integer",
    "int_from_float": "must be an integer", "int_parsing_size": "is too large a number",
    "float_type": "must be a number", "float_parsing": "must be a number",
    "finite_number": "must be a finite number", "string_type": "must be a string",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "list_type": "must be a list", "dict_type": "must be a table",
    "missing": "is required", "recursion_loop": "is nested too deeply",
}


def describe(error: ErrorDetails) -> str:
    """A pydantic error as the end of a one-line message: what is wrong, and the value."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = _number(next(iter(ctx.values())))
        what = {"greater_than": "positive" if bound == "0" else f"greater than {bound}",
                "greater_than_equal": f"at least {bound}",
                "less_than": f"less than {bound}",
                "less_than_equal": f"at most {bound}"}[kind]
        text = f"must be {what}"
    elif kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        text = f"must be one of {expected}"
    elif kind == "string_too_short":
        text = "must not be empty" if ctx.get("min_length") == 1 else \
            f"must have at least {ctx.get('min_length')} characters"
    elif kind == "string_too_long":
        text = f"must have at most {ctx.get('max_length')} characters"
    elif kind in ("too_long", "too_short"):
        text = (f"must have at most {ctx.get('max_length')} items" if kind == "too_long"
                else f"must have at least {ctx.get('min_length')} items")
    elif kind == "value_error":
        text = str(ctx.get("error", error["msg"]))
    elif kind in _PHRASES:
        text = _PHRASES[kind]
    else:
        text = error["msg"][:1].lower() + error["msg"][1:]
    if kind in ("missing", "no_effect") or (kind == "value_error" and
                                             isinstance(error.get("input"), list | dict)):
        return text
    return f"{text}, got {show(error.get('input'))}"


def show(value: Any, limit: int = 40) -> str:
    """A short, safe rendering of a user's value: never a recursion, never a page."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 100:
        return "a number of more than 30 digits"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 100_000 else str(value)


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """``; did you mean X?`` for a near miss among ``known``, else nothing."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
