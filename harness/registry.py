"""Where names on the command line find their code.

Systems, workloads and checker models are looked up by name, or given as
``package.module:factory`` so a user's own plugs in without touching splitbrain. System
and workload factories take the run's ``-o KEY=VALUE`` options.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from harness.errors import UsageError

SYSTEMS = {
    "counterd": "harness.systems.counterd:make_system",
    "redis": "harness.systems.redis_counter:make_system",
    "etcd": "harness.systems.etcd_counter:make_system",
    "postgres": "harness.systems.postgres_counter:make_system",
}
WORKLOADS = {
    "counter": "workloads.counter:make_workload",
    "register": "workloads.register:make_workload",
    "kv": "workloads.kv:make_workload",
    "set": "workloads.set:make_workload",
}


def load_factory(kind: str, name: str, table: dict[str, str]) -> Callable[..., Any]:
    target = table.get(name, name if ":" in name else None)
    if target is None:
        known = ", ".join(sorted(table))
        raise UsageError(f"unknown {kind} {name!r} (known: {known}; or package.module:factory)")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"cannot import {kind} {name!r}: {e}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"{module_name} has no {attr!r} for {kind} {name!r}") from None


def load_system(name: str, options: dict[str, str]) -> Any:
    return load_factory("system", name, SYSTEMS)(options)


def load_workload(name: str, options: dict[str, str]) -> Any:
    return load_factory("workload", name, WORKLOADS)(options)


def catalogue() -> dict[str, list[str]]:
    from checkers.models import MODELS
    from nemeses.package import FAULTS

    return {
        "systems": sorted(SYSTEMS),
        "workloads": sorted(WORKLOADS),
        "nemeses": sorted(FAULTS),
        "models": sorted(MODELS),
    }
