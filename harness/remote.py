"""The Remote protocol: how the controller reaches a node.

Backends (local network namespaces, Docker containers, SSH hosts) differ in how a
command gets to a node, not in what the harness asks of them, so everything above this
seam (system adapters, nemeses, daemons) is written once against ``Remote``. Commands
are argument lists, never shell strings built by concatenation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from harness.errors import EnvironmentFailure


class RemoteError(EnvironmentFailure, RuntimeError):
    """A command on a node failed (non-zero exit with ``check=True``) or timed out: the
    environment failed the run, which ends "unknown"."""


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

    def address(self, node: str) -> str:
        """The node's IP address, as clients and other nodes reach it."""

    def run(
        self, node: str, argv: Sequence[str], *, check: bool = True,
        timeout: float | None = 60, input: str | None = None,
    ) -> Result:
        """Runs ``argv`` on ``node`` and waits for it."""

    def upload(self, node: str, local_path: str, remote_path: str) -> None: ...

    def download(self, node: str, remote_path: str, local_path: str) -> None: ...

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

    def address(self, node: str) -> str:
        return "127.0.0.1"

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
    together), waits for all, then raises the first failure. Interrupted (Ctrl-C), it
    still waits for the actions under way: what follows (a teardown) must not race them."""
    nodes = list(nodes)
    if not nodes:
        return
    pool = ThreadPoolExecutor(max_workers=len(nodes))
    try:
        futures = [pool.submit(action, node) for node in nodes]
        wait(futures)
    finally:
        pool.shutdown(wait=True)
    for future in futures:
        future.result()
