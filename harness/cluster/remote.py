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


def require_programs(remote: Remote, node: str, programs: Sequence[str], package: str,
                     install: str) -> None:
    """Checks on the node itself (never on the controller) that ``programs`` are on its
    PATH. With ``install="apt"`` (``-o install=apt``) a node that lacks them gets
    ``package`` from apt first, then is checked again. EnvironmentFailure in one line
    naming the node, what it lacks and how to get it."""
    missing = _missing(remote, node, programs)
    if missing and install == "apt":
        apt_install(remote, node, [package])
        missing = _missing(remote, node, programs)
    if missing:
        raise EnvironmentFailure(f"node {node} lacks {', '.join(missing)} "
                                 f"({install_hint(package, install)})")


def install_hint(package: str, install: str) -> str:
    """How to get ``package``, for a message saying a node lacks it."""
    if install == "apt":
        return f"apt-get install {package} did not provide it"
    return f"apt-get install {package} there, or give -o install=apt"


def _missing(remote: Remote, node: str, programs: Sequence[str]) -> list[str]:
    script = 'for p in "$@"; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done'
    found = remote.run(node, ["sh", "-c", script, "sh", *programs], check=False)
    if found.returncode != 0:
        return list(programs)
    return found.stdout.split()


APT_TIMEOUT = 900.0
"""Seconds an apt-get may take on a node: downloads over a slow link, and waiting for the
dpkg lock that another apt (or a neighbouring node of the same host) holds."""
_APT = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q",
        "-o", f"DPkg::Lock::Timeout={int(APT_TIMEOUT) - 60}"]


def apt_install(remote: Remote, node: str, packages: Sequence[str]) -> None:
    """Installs ``packages`` on the node as Jepsen's DB setup does: non-interactive,
    without recommended packages, never upgrading one already installed (``--no-upgrade``:
    an installed package is apt's no-op). Runs through ``remote.run``, so as root (the
    ssh backend adds ``sudo -n`` for a user who is not). A host whose package lists are
    missing or stale gets one ``apt-get update`` and a second try. EnvironmentFailure in
    one line naming the node and apt's last words when it still fails."""
    install = [*_APT, "install", "-y", "--no-install-recommends", "--no-upgrade", *packages]
    done = remote.run(node, install, check=False, timeout=APT_TIMEOUT)
    if done.returncode != 0:
        remote.run(node, [*_APT, "update"], check=False, timeout=APT_TIMEOUT)
        done = remote.run(node, install, check=False, timeout=APT_TIMEOUT)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise EnvironmentFailure(f"node {node}: apt-get install {' '.join(packages)} "
                                 f"failed ({said.strip()[:200]})")
