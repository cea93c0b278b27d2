"""Where names on the command line find their code.

Systems, workloads and checker models are looked up by name, or given as
``package.module:factory`` so a user's own plugs in without touching splitbrain. System
and workload factories take the run's ``-o KEY=VALUE`` options. The current directory is
searched last for a user's module (as ``python -m`` searches it first), so
``--system examples.memcached:make_system`` works from the repository's root.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from harness.errors import UsageError
from harness.system import System
from workloads.base import Workload

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
BUILT_IN = set(SYSTEMS.values()) | set(WORKLOADS.values())

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_TARGET = re.compile(rf"({_IDENTIFIER}(?:\.{_IDENTIFIER})*):({_IDENTIFIER})")


def load_factory(kind: str, name: str, table: dict[str, str]) -> Callable[..., Any]:
    """The factory ``name`` stands for: a key of ``table``, or ``package.module:attr``.
    Total over any text: every failure, including one of the user's module as it is
    imported, is a one-line UsageError."""
    target = table.get(name, name if ":" in name else None)
    if target is None:
        known = ", ".join(sorted(table))
        raise UsageError(f"unknown {kind} {name!r:.80} (known: {known}; "
                         "or package.module:factory)")
    found = _TARGET.fullmatch(target) if len(target) <= 300 else None
    if found is None:
        raise UsageError(f"bad {kind} {name!r:.80}: expected package.module:factory")
    module_name, attr = found.groups()
    if module_name.partition(".")[0] in sys.stdlib_module_names:
        # Nothing in the standard library is a splitbrain plug-in, and some of it would
        # wait on the terminal or exit when called with the options (builtins:input).
        raise UsageError(f"{name} is in Python's standard library, not a {kind} factory")
    try:  # as `python -m` would: a user's code beside them (a deleted cwd has none)
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
    except OSError:
        pass
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as e:  # a user's module may fail in any way as it runs
        raise UsageError(f"cannot import {kind} module {module_name!r}: "
                         f"{type(e).__name__}: {_first_line(e)}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise UsageError(f"{module_name} has no {attr!r} for {kind} {name!r}")
    if not callable(factory):
        raise UsageError(f"{name} is not a {kind} factory: it is not callable")
    return factory


def options_model(kind: str, name: str) -> type[BaseModel] | None:
    """The schema a system or workload factory declares for its options, if any
    (``harness.systems.options.declares``)."""
    factory = load_factory(kind, name, SYSTEMS if kind == "system" else WORKLOADS)
    model = getattr(factory, "options_model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def load_system(name: str, options: dict[str, Any]) -> System:
    system = _made("system", name, SYSTEMS, options)
    if not isinstance(system, System):
        raise UsageError(f"{name} did not make a system (it made a "
                         f"{type(system).__name__}): a system has name, db(), "
                         "serving_nodes() and open_client()")
    return system


def load_workload(name: str, options: dict[str, Any]) -> Workload:
    workload = _made("workload", name, WORKLOADS, options)
    if not isinstance(workload, Workload):
        raise UsageError(f"{name} did not make a workload (it made a "
                         f"{type(workload).__name__}): see workloads/base.py")
    return workload


def _made(kind: str, name: str, table: dict[str, str], options: dict[str, Any]) -> Any:
    """The factory's product. A bundled factory's exception is splitbrain's bug and
    propagates; a user's factory failing is bad input, said in one line."""
    factory = load_factory(kind, name, table)
    if table.get(name) in BUILT_IN:
        return factory(dict(options))
    try:
        return factory(dict(options))
    except UsageError:
        raise
    except (Exception, SystemExit) as e:
        raise UsageError(f"the {kind} factory {name} failed: "
                         f"{type(e).__name__}: {_first_line(e)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else "(no message)"
    return first if len(first) <= 200 else first[:197] + "..."


def catalogue() -> dict[str, list[str]]:
    from checkers.models import MODELS
    from nemeses.package import FAULTS

    return {
        "systems": sorted(SYSTEMS),
        "workloads": sorted(WORKLOADS),
        "nemeses": sorted(FAULTS),
        "models": sorted(MODELS),
    }
