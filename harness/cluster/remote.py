"""The Remote protocol: how the controller reaches a node.

Backends (local network namespaces, Docker containers, SSH hosts) differ in how a
command gets to a node, not in what the harness asks of them, so everything above this
seam (system adapters, nemeses, daemons) is written once against ``Remote``. Commands
are argument lists, never shell strings built by concatenation.

A node has two kinds of address, never confused: its **peer address** is what other
nodes use to reach it, what its servers bind to and what partition rules match; the
controller's **endpoint** for a port on a node is where clients and readiness probes
connect. They coincide on network namespaces and may differ anywhere else (a published
port, a real host behind NAT). Nothing is assumed to be shared with the controller: no
file system (``upload``/``download`` move bytes through the backend) and no binaries
(a system looks for its programs on the node, through ``run``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from harness.errors import EnvironmentFailure


class RemoteError(RuntimeError):
    """A command on a node failed (non-zero exit with ``check=True``) or timed out."""


@dataclass(frozen=True, slots=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@runtime_checkable
class Remote(Protocol):
    def setup(self, nodes: Sequence[str]) -> None:
        """Brings the nodes up (creates namespaces, containers; checks SSH)."""

    def teardown(self) -> None:
        """Removes everything ``setup`` made. Must be safe to call twice."""

    def check_environment(self) -> None:
        """Raises UsageError with one line when this backend cannot work here (not
        root, no Docker engine, a missing image), before anything is created."""

    def peer_address(self, node: str) -> str:
        """The address other nodes reach ``node`` at: what its servers bind to and what
        partition rules match."""

    def endpoint(self, node: str, port: int) -> tuple[str, int]:
        """Where the controller connects to reach ``port`` on ``node``."""

    def run(
        self, node: str, argv: Sequence[str], *, check: bool = True,
        timeout: float | None = 60, input: str | None = None,
    ) -> Result:
        """Runs ``argv`` on ``node`` and waits for it."""

    def upload(self, node: str, local_path: str, remote_path: str) -> None:
        """Copies a controller file or directory to ``remote_path`` on the node."""

    def download(self, node: str, remote_path: str, local_path: str) -> None:
        """Copies a file or directory of the node to ``local_path`` on the controller."""

    def workdir(self, node: str) -> str:
        """A writable directory on the node for the system's files, pid files, logs."""


class NoopRemote:
    """A Remote whose nodes accept every command and do nothing: for controller tests."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[str, ...]]] = []

    def setup(self, nodes: Sequence[str]) -> None:
        self.nodes = list(nodes)

    def teardown(self) -> None:
        pass

    def check_environment(self) -> None:
        pass

    def peer_address(self, node: str) -> str:
        return "127.0.0.1"

    def endpoint(self, node: str, port: int) -> tuple[str, int]:
        return ("127.0.0.1", port)

    def run(self, node, argv, *, check=True, timeout=60, input=None) -> Result:
        self.commands.append((node, tuple(argv)))
        return Result(0, "", "")

    def upload(self, node: str, local_path: str, remote_path: str) -> None:
        pass

    def download(self, node: str, remote_path: str, local_path: str) -> None:
        pass

    def workdir(self, node: str) -> str:
        return f"/tmp/splitbrain-noop/{node}"


def on_each_node(nodes: Iterable[str], action: Callable[[str], None]) -> None:
    """Runs ``action`` on every node at once (a fault or a restart should hit them
    together), waits for all, then raises the first failure."""
    nodes = list(nodes)
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        futures = [pool.submit(action, node) for node in nodes]
    for future in futures:
        future.result()


@runtime_checkable
class NodeFaults(Protocol):
    """Faults of a whole node, which only some backends can cause (a container can be
    killed or frozen as a unit; a namespace cannot)."""

    def kill_node(self, node: str) -> None:
        """Every process of the node dies at once, as in a power loss."""

    def start_node(self, node: str) -> None:
        """Boots a killed node again (its files are kept; its processes are not)."""

    def pause_node(self, node: str) -> None:
        """Freezes every process of the node."""

    def resume_node(self, node: str) -> None: ...


def require_programs(remote: Remote, node: str, programs: Sequence[str],
                     install: str) -> None:
    """Checks on the node itself (never on the controller) that ``programs`` are on its
    PATH; EnvironmentFailure naming the node, what it lacks and ``install``."""
    script = 'for p in "$@"; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done'
    found = remote.run(node, ["sh", "-c", script, "sh", *programs], check=False)
    missing = found.stdout.split()
    if found.returncode != 0 or missing:
        raise EnvironmentFailure(f"node {node} lacks {', '.join(missing) or programs[0]} "
                                 f"({install})")
