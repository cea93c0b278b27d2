"""Builds a validated Spec from a TOML test file and command-line flags.

Flags override the file; the file overrides the defaults. Every check that can be made
before a cluster exists is made here, so bad input costs the user one line and no
teardown.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from harness.context import Spec
from harness.errors import UsageError

_FLAG_FIELDS = ("system", "workload", "backend", "concurrency", "rate", "time_limit",
                "seed", "store", "image", "build_image")
_BACKENDS = ("local", "docker", "ssh")


def build_spec(test_file: str | None, options: dict[str, str], flags: dict[str, Any]) -> Spec:
    values: dict[str, Any] = {}
    if test_file:
        values.update(_read_toml(test_file))
    for key in _FLAG_FIELDS:
        if flags.get(key) is not None:
            values[key] = flags[key]
    if flags.get("nemesis") is not None:
        values["nemesis"] = flags["nemesis"]
    if flags.get("node_names"):
        values["nodes"] = list(flags["node_names"])
    elif flags.get("nodes") is not None:
        values["nodes"] = flags["nodes"]
    values["options"] = {**values.get("options", {}), **options}
    return _validated(values)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise UsageError(f"cannot read test file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: {e}") from None
    known = {f.name for f in fields(Spec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)}")
    if "options" in data:
        if not isinstance(data["options"], dict):
            raise UsageError(f"{path}: options must be a table of KEY = VALUE")
        data["options"] = {str(k): str(v) for k, v in data["options"].items()}
    return data


def _validated(v: dict[str, Any]) -> Spec:
    nemesis = v.get("nemesis", ["partition", "kill"])
    if isinstance(nemesis, str):
        nemesis = [n.strip() for n in nemesis.split(",") if n.strip()]
    if nemesis == ["none"]:
        nemesis = []
    v["nemesis"] = nemesis
    nodes = v.get("nodes", 5)
    if isinstance(nodes, int):
        if nodes < 1:
            raise UsageError(f"--nodes must be at least 1, got {nodes}")
        nodes = [f"n{i}" for i in range(1, nodes + 1)]
    if not nodes or len(set(nodes)) != len(nodes):
        raise UsageError(f"nodes must be distinct and non-empty, got {nodes}")
    v["nodes"] = [str(n) for n in nodes]
    for key, kind in (("concurrency", int), ("time_limit", float), ("rate", float)):
        if v.get(key) is None:
            continue
        try:
            v[key] = kind(v[key])
        except (TypeError, ValueError):
            raise UsageError(f"{key.replace('_', '-')} must be a number, got {v[key]!r}") from None
        if v[key] <= 0:
            raise UsageError(f"{key.replace('_', '-')} must be positive, got {v[key]}")
    if v.get("backend", "local") not in _BACKENDS:
        raise UsageError(f"unknown backend {v['backend']!r} (known: {', '.join(_BACKENDS)})")
    if v.get("seed") is None:
        v["seed"] = random.SystemRandom().randrange(2**31)
    if "store" in v:
        v["store"] = str(Path(v["store"]))
    return Spec(**v)
