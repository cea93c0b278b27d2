"""Builds a validated Spec from a TOML test file and command-line flags.

Flags override the file; the file overrides the defaults. Both go through one schema
(``harness.context.Spec``, then the options schemas of the chosen system and workload), so
every check that can be made before a cluster exists is made here, and bad input costs the
user one line that says where the bad value is: the file and line, or the flag.
"""

from __future__ import annotations

import os
import random
import re
import stat
import tomllib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.context import NemesisSettings, Spec
from harness.errors import UsageError
from harness.registry import options_model
from harness.schema import describe, did_you_mean, error_key, from_text, show
from harness.systems.options import check_options

MAX_FILE_BYTES = 1 << 20
"""A test file is a few lines; a megabyte is not one."""

FLAGS = {"system": "--system", "workload": "--workload", "nemesis": "--nemesis",
         "backend": "--backend", "nodes": "--nodes", "concurrency": "--concurrency",
         "rate": "--rate", "time_limit": "--time-limit", "seed": "--seed",
         "store": "--store", "image": "--image", "build_image": "--build-image"}
"""Spec fields settable by a flag of the same name; a new flag is one entry here."""


def build_spec(test_file: str | None, options: Mapping[str, str],
               flags: Mapping[str, Any]) -> Spec:
    """The Spec for a TOML file (or none) and flags as click gives them (text, or None
    where not given); ``options`` are the ``-o KEY=VALUE`` pairs, as text."""
    values: dict[str, Any] = {}
    file_values: dict[str, Any] = {}
    where: dict[str, str] = {}
    lines: dict[tuple[str, ...], int] = {}
    if test_file:
        values, lines = _read_toml(test_file)
        file_values = dict(values)
        where = {key: _at(test_file, lines, (key,)) for key in values}
        if "nemesis_settings" in values:  # the settings live in a [nemesis] table
            raise UsageError(f"{where['nemesis_settings']}: unknown key 'nemesis_settings'; "
                             "put the settings in a [nemesis] table")
        if isinstance(values.get("nemesis"), dict):
            where.update({f"nemesis.{key}": _at(test_file, lines, ("nemesis", key))
                          for key in values["nemesis"]})
            where["nemesis"] = where.get("nemesis.faults", where["nemesis"])
    file_options = values.get("options", {})
    option_where = {key: _at(str(test_file), lines, ("options", key))
                    for key in (file_options if isinstance(file_options, dict) else ())}
    option_where.update({key: f"-o {printable(key)}" for key in options})
    try:
        if test_file:  # a bad value in the file is refused even where a flag overrides it
            Spec.model_validate(values, context={"file-only": True})
        for key, flag in FLAGS.items():
            if flags.get(key) is not None:
                where[key] = flag
                values[key] = _flag_value(key, flags[key])
                if key == "nemesis" and isinstance(file_nemesis := (file_values.get(key)), dict):
                    values[key] = {**file_nemesis, "faults": values[key]}  # keep its settings
        if flags.get("node_names"):
            if flags.get("nodes") is not None:
                raise UsageError("give --nodes N or --node NAME (repeated), not both")
            where["nodes"] = "--node"
            values["nodes"] = list(flags["node_names"])
        if options and isinstance(file_options, dict):
            values["options"] = {**file_options, **options}
        elif options:
            values.setdefault("options", dict(options))
        if "seed" not in values:
            values["seed"] = random.SystemRandom().randrange(2**31)
        spec = Spec.model_validate(values)
    except ValidationError as e:
        raise UsageError(_message(e, where, option_where)) from None
    except RecursionError:
        raise UsageError(f"{printable(str(test_file))}: values are nested too deeply") from None
    if spec.backend == "ssh" and not isinstance(values.get("nodes"), list):
        raise UsageError("the ssh backend needs its hosts: --node [USER@]HOST[:PORT] "
                         "(repeated), or nodes = [...] in the test file")
    models = {kind: _options_model(kind, getattr(spec, kind), where.get(kind, ""))
              for kind in ("system", "workload")}
    check_options(spec.options, option_where, text=set(options),
                  system=(spec.system, models["system"]),
                  workload=(spec.workload, models["workload"]))
    return spec


def _options_model(kind: str, name: str, source: str) -> type[BaseModel] | None:
    """The options schema of the named system or workload; an unknown name is refused
    here, with the file line that gave it (a flag names itself in the message)."""
    try:
        return options_model(kind, name)
    except UsageError as e:
        if source and not source.startswith("-"):
            raise UsageError(f"{source}: {e}") from None
        raise


def _flag_value(key: str, text: Any) -> Any:
    """Text from a flag parsed by the field's own type (click passes text through)."""
    return from_text(Spec, key, text) if isinstance(text, str) else text


def _message(error: ValidationError, where: Mapping[str, str],
             option_where: Mapping[str, str]) -> str:
    first = error.errors()[0]
    key = error_key(first)
    loc = first["loc"]
    if key == "options" and len(loc) > 1:
        where = {"options": option_where.get(str(loc[1]), where.get("options", ""))}
        if loc[-1] == "[key]":
            return (f"{where['options']}: option name {show(loc[1])} may use only letters, "
                    "digits, '_', '.' and '-'")
        if len(loc) > 2:  # the value matched no member of the union of option values
            finite = not isinstance(first["input"], float)
            first = {**first, "loc": loc[:2], "type": "option_value" if finite else
                     "finite_number", "msg": "must be a string, a number or true/false"}
    if key == "nemesis_settings" and len(loc) > 1:
        source = where.get(f"nemesis.{loc[1]}", where.get("nemesis", ""))
        if first["type"] == "extra_forbidden":
            known = ["faults", *NemesisSettings.model_fields]
            return (f"{source}: unknown key {show(loc[1])} in [nemesis]"
                    f"{did_you_mean(str(loc[1]), known)} (known: {', '.join(known)})")
        return f"{source}: nemesis.{printable(str(loc[1]))} {describe(first)}"
    if first["type"] == "extra_forbidden" and key is not None and len(loc) == 2:
        table = Spec.model_fields[key].annotation  # a key inside a table such as [ssh]
        if isinstance(table, type) and issubclass(table, BaseModel):
            bad, known = str(loc[1]), sorted(table.model_fields)
            return (f"{where.get(key, '')}: unknown key {show(bad)} in [{key}]"
                    f"{did_you_mean(bad, known)} (known: {', '.join(known)})")
    if first["type"] == "extra_forbidden" and key is not None:
        known = sorted(set(Spec.model_fields) - {"nemesis_settings"})
        return (f"{where.get(key, '')}: unknown key {show(key)}{did_you_mean(key, known)} "
                f"(known: {', '.join(known)})")
    source = where.get(key or "", "")
    if source.startswith("-"):
        return f"{source} {describe(first)}"
    path = printable(".".join(str(part) for part in first["loc"]) or str(key))
    return f"{source}: {path} {describe(first)}" if source else f"{path} {describe(first)}"


def printable(text: str) -> str:
    """``text`` for a one-line message: control characters (a newline in a file name or
    a key) escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


def _read_toml(path: str) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """The file's table and the line of each key; a UsageError for anything but a
    readable regular file of valid TOML (a FIFO would block, a device never end)."""
    shown = printable(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read test file {shown}: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"cannot read test file {shown}: not a regular file")
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise UsageError(f"cannot read test file {shown}: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{shown}: larger than {MAX_FILE_BYTES >> 20} MiB: not a test file")
    try:
        text = data.decode("utf-8")
        table = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise UsageError(f"{shown}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{shown}: {_one_line(str(e))}") from None
    except RecursionError:
        raise UsageError(f"{shown}: values are nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise UsageError(f"{shown}: {_one_line(str(e).split(';')[0])}") from None
    return table, key_lines(text)


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "invalid"
    return first if len(first) <= 200 else first[:197] + "..."


def _at(path: str, lines: Mapping[tuple[str, ...], int], key: tuple[str, ...]) -> str:
    line = lines.get(key)
    return f"{printable(path)} line {line}" if line else printable(path)


_HEADER = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
                  r"""(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line (from 1) where each key is set, as its path of tables: ``("nodes",)``,
    ``("options", "timeout")``. tomllib gives no positions, and an error that names the
    line is worth a rough scan; a key it cannot place simply gets no line."""
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header and not line.lstrip().startswith("[["):
            table = _parts(header.group(1))
            for depth in range(1, len(table) + 1):
                found.setdefault(table[:depth], number)
            continue
        key = _KEY.match(line)
        if key:
            path = table + _parts(key.group(1))
            for depth in range(len(table) + 1, len(path) + 1):
                found.setdefault(path[:depth], number)
            rest = line[key.end():]
        else:
            rest = line
        for quotes in ('"""', "'''"):
            if rest.count(quotes) % 2 == 1:
                in_multiline = quotes
                break
    return found


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(p.strip("\"'") for p in _PART.findall(dotted))
