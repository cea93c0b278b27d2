"""Checking a system's ``-o KEY=VALUE`` options, with the one-line errors users see.

Options arrive as text; a system picks out the keys it knows (the rest belong to other
parts of the run, such as the workload) and turns them into checked values here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from harness.errors import UsageError


def choices(system: str, options: Mapping[str, str],
            table: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """The options named in ``table`` that were given, each one of its choices."""
    picked = {}
    for name, allowed in table.items():
        if name in options:
            if options[name] not in allowed:
                raise UsageError(f"{system} option {name} must be one of "
                                 f"{', '.join(allowed)}, got {options[name]!r}")
            picked[name] = options[name]
    return picked


def number(system: str, name: str, text: str, kind: type[int] | type[float]) -> int | float:
    """``text`` as a finite int or float, or a UsageError naming the option."""
    try:
        value = kind(text)
        if math.isfinite(value):
            return value
    except ValueError:
        pass
    what = "an integer" if kind is int else "a number"
    raise UsageError(f"{system} option {name.replace('_', '-')} must be {what}, got {text!r}")


def seconds(system: str, name: str, text: str) -> float:
    """``text`` as a positive number of seconds, or a UsageError naming the option."""
    value = float(number(system, name, text, float))
    if value <= 0:
        raise UsageError(f"{system} option {name.replace('_', '-')} must be positive, "
                         f"got {text!r}")
    return value
