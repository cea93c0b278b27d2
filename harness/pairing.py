"""Systems and workloads apart: which client of a system serves which workload.

A system provides a DB and one client per workload it supports: ``clients``, a mapping
from workload name to a client factory ``async (test, node) -> Client``. A system with
no ``clients`` attribute (the original protocol: a DB and ``open_client``) serves the
counter workload alone. The pair asked for on the command line is looked up here before
any cluster exists; an unsupported one is a one-line usage error naming the pairs that
work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.client import Client
    from harness.context import Test

ClientFactory = Callable[["Test", str], Awaitable["Client"]]
"""Opens a client bound to one node: ``await factory(test, node)``."""


def clients_of(system: Any) -> Mapping[str, ClientFactory]:
    """The system's client factories by workload name."""
    clients = getattr(system, "clients", None)
    if clients is None:
        return {"counter": system.open_client}
    return clients


def client_factory(system_name: str, system: Any, workload: str) -> ClientFactory:
    """The client with which ``system`` serves ``workload``, or a UsageError."""
    clients = clients_of(system)
    if workload in clients:
        return clients[workload]
    raise UsageError(f"system {system_name} has no client for workload {workload} "
                     f"(pairs that work: {pairs_text()})")


def matrix() -> dict[str, list[str]]:
    """Every bundled system's workloads, read from the systems themselves (each built
    with default options, which only parses them)."""
    from harness.registry import SYSTEMS, load_system

    return {name: sorted(clients_of(load_system(name, {}))) for name in sorted(SYSTEMS)}


def pairs_text() -> str:
    """``counterd: counter; etcd: counter, kv, register; ...``"""
    return "; ".join(f"{s}: {', '.join(ws)}" for s, ws in matrix().items())


def matrix_table() -> list[str]:
    """The matrix as `splitbrain list` prints it: a row per system, a column per
    workload, ``x`` where the system has a client for the workload."""
    from harness.registry import WORKLOADS

    rows = matrix()
    workloads = sorted(set(WORKLOADS) | {w for ws in rows.values() for w in ws})
    first = max(len("system"), *(len(s) for s in rows))
    widths = [max(len(w), 1) for w in workloads]
    lines = ["  ".join(["system".ljust(first), *(w.ljust(n) for w, n in zip(workloads, widths))])]
    for system, supported in rows.items():
        cells = [("x" if w in supported else "-").ljust(n) for w, n in zip(workloads, widths)]
        lines.append("  ".join([system.ljust(first), *cells]).rstrip())
    return lines
