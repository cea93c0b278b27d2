"""Options (``-o KEY=VALUE``, or a TOML ``[options]`` table), declared as schemas.

Each system and workload declares the options it understands as a pydantic model, a
subclass of ``Options``, and marks its factory with ``@declares(TheOptions)``. The spec
loader then checks a run's options against the system's and the workload's schemas
together (``check_options``): a key neither knows is refused with the known ones and a
"did you mean"; a value is checked by the type, bounds and combination rules of the one
that owns it. Keys may be written with ``-`` or ``_``.

A user's system (``--system package.module:factory``) can do the same: give the factory an
``options_model`` attribute holding a pydantic model class (``@declares`` does just that;
subclassing ``Options`` gives strict types and finite numbers). Without one, its options
reach the factory unchecked, since splitbrain cannot know what they mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, Field, ValidationError

from harness.errors import UsageError
from harness.schema import Schema, describe, did_you_mean, error_key, from_text

MAX_SECONDS = 300.0
"""The longest any timeout or wait may be: a value past it is a typo, or a run that
would sit waiting for recovery for hours."""

Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
"""A positive, finite, bounded number of seconds (timeouts, intervals)."""
Pause = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
"""A wait that may be zero."""
Port = Annotated[int, Field(ge=1, le=65535)]
Install = Literal["none", "apt"]
"""``-o install=apt``: a node that lacks the system's programs gets their Debian package
(``harness.cluster.remote.apt_install``), as Jepsen's DB setup does; ``none`` (the
default) only says which node lacks what."""


class Options(Schema):
    """The base of every options schema; ``owner`` names it in messages."""

    owner: ClassVar[str] = "system"

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> Self:
        """The options this schema names, checked; other keys are left to the parts that
        own them (``check_options`` refuses keys nobody owns). Text values are parsed by
        the field's type. A UsageError in one line for a bad value."""
        try:
            return validate(cls, options, text=None)
        except ValidationError as e:
            first = e.errors()[0]
            raise UsageError(f"{cls.owner} option {_shown(error_key(first))} "
                             f"{describe(first)}") from None


M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def declares(model: type[BaseModel]) -> Callable[[F], F]:
    """Marks a system or workload factory with the schema of its options."""
    def mark(factory: F) -> F:
        setattr(factory, "options_model", model)  # noqa: B010 (an attribute of a function)
        return factory
    return mark


def validate(model: type[M], options: Mapping[str, Any], text: set[str] | None) -> M:
    """``model`` from the keys of ``options`` it names ('-' and '_' alike). Values whose
    key is in ``text`` (all string values when ``text`` is None) are command-line text,
    parsed by the field's type; the rest are typed (TOML) and checked strictly."""
    mine: dict[str, Any] = {}
    for key, value in options.items():
        name = _name(key)
        if name in model.model_fields:
            if isinstance(value, str) and (text is None or key in text):
                value = from_text(model, name, value)
            mine[name] = value
    return model.model_validate(mine)


def check_options(options: Mapping[str, Any], where: Mapping[str, str], *, text: set[str],
                  system: tuple[str, type[BaseModel] | None],
                  workload: tuple[str, type[BaseModel] | None]) -> None:
    """Refuses, in one line that says ``where`` the key was given, an option neither the
    system nor the workload knows, or a bad value for the one that owns it. A system
    or workload without a schema may take any key: then only values are checked."""
    owners = [(name, model) for name, model in (system, workload) if model is not None]
    if len(owners) == 2:
        known = sorted({_shown(f) for _, model in owners for f in model.model_fields})
        for key in options:
            if _name(key) not in {_name(k) for k in known}:
                hint = did_you_mean(_shown(key), known)
                listed = ", ".join(known) or "none"
                raise UsageError(f"{where.get(key, '-o')}: unknown option {key!r} for "
                                 f"{system[0]} with the {workload[0]} workload{hint} "
                                 f"(known: {listed})")
    for owner, model in owners:
        try:
            validate(model, options, text)
        except ValidationError as e:
            first = e.errors()[0]
            field = error_key(first)
            key = next((k for k in options if _name(k) == field), field or "")
            raise UsageError(f"{where.get(key, '-o')}: {owner} option {_shown(field)} "
                             f"{describe(first)}") from None


def _name(key: str) -> str:
    return key.replace("-", "_")


def _shown(key: str | None) -> str:
    return (key or "?").replace("_", "-")
