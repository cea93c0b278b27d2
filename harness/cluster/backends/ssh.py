"""The ssh backend: every node is a real host, reached over SSH with paramiko.

``--backend ssh --node [USER@]HOST[:PORT]`` (repeatable; the node's name is what was
given), with settings from the test's ``[ssh]`` table and ``~/.ssh/config`` (see
``harness.cluster.ssh_conn``). One connection per host, opened in parallel when the
environment is checked, carries every command and file transfer of the run.

A node's peer address is the address the controller reached it at (what partition rules
match, what servers bind to), and its endpoint for a port is that address and port: the
controller must reach the nodes as they reach each other. A controller that is itself
one of the nodes (the same kernel and network namespace) is refused: a partition on
that node would cut the controller's own SSH connection.

Each run has a work directory on each host, ``<workdir>/splitbrain-<run-id>/<node>``
(``workdir`` defaults to /var/tmp), recorded in the run's ledger before it is made. The
ledger also records, per host and before any fault, that splitbrain's iptables chains
may be there, and keeps how to reach the host again (host, port, user, key paths,
known_hosts: never a secret), so ``splitbrain cleanup`` after a killed controller
reconnects and removes that run's daemons (by the pid files in its work directory),
its chains and its work directory, and nothing else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import posixpath
import re
import secrets
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from harness.cluster import net
from harness.cluster.cleanup import register_remover, remove_run
from harness.cluster.ledger import STATE_DIR, Ledger, locked, new_ledger
from harness.cluster.remote import RemoteError, Result
from harness.cluster.ssh_conn import (
    IDENTITY_ARGV,
    Connection,
    Target,
    connect,
    controller_identity,
    parse_settings,
    resolve_target,
)
from harness.errors import EnvironmentFailure, UsageError

if TYPE_CHECKING:
    from harness.context import Spec

DEFAULT_WORKDIR = "/var/tmp"


def check_cleanup() -> None:
    """Cleanup needs nothing of the controller but the ledger and the user's SSH setup."""


def from_spec(spec: Spec) -> SSHRemote:
    return SSHRemote(spec.nodes, spec.ssh.settings())


class SSHRemote:
    """Nodes as SSH hosts. ``nodes``: the ``[USER@]HOST[:PORT]`` of each, which are also
    their names; ``settings``: the ``[ssh]`` table."""

    def __init__(self, nodes: Sequence[str] = (), settings: dict[str, Any] | None = None,
                 *, state_dir: Path | str = STATE_DIR) -> None:
        self.settings = parse_settings(settings or {})
        self.root = self.settings.get("workdir", DEFAULT_WORKDIR)
        self.state_dir = Path(state_dir)
        self.ledger: Ledger | None = None
        self.nodes: list[str] = []
        self.targets: dict[str, Target] = {}
        self._conns: dict[str, Connection] = {}
        self._addresses: dict[str, str] = {}
        self._choose(nodes)

    def _choose(self, nodes: Sequence[str]) -> None:
        if len(set(nodes)) != len(nodes):
            raise UsageError(f"node names must be distinct: {list(nodes)}")
        self._close()
        self.nodes = list(nodes)
        self.targets = {node: resolve_target(node, self.settings) for node in nodes}

    # -- names -------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        if self.ledger is None:
            raise RemoteError("the ssh cluster is not set up")
        return self.ledger.run_id

    def _conn(self, node: str) -> Connection:
        if node not in self._conns:
            raise RemoteError(f"unknown node {node!r} (nodes: {', '.join(self.nodes)})")
        return self._conns[node]

    def run_dir(self) -> str:
        return posixpath.join(self.root, f"splitbrain-{self.run_id}")

    # -- lifecycle ---------------------------------------------------------------------

    def check_environment(self) -> None:
        """Connects to every host at once: one line for the first that cannot be
        reached, refuses a host key or our user, or is the controller itself."""
        if not self.targets:
            raise UsageError("the ssh backend needs nodes: --node [USER@]HOST[:PORT]")
        if self._conns:
            return
        with ThreadPoolExecutor(max_workers=len(self.targets)) as pool:
            futures = {node: pool.submit(connect, t) for node, t in self.targets.items()}
        failures = []
        for node, future in futures.items():
            try:
                self._conns[node] = future.result()
            except Exception as e:
                failures.append(e)
        try:
            if failures:
                raise failures[0]
            self._check_hosts()
        except BaseException:
            self._close()
            raise

    def _check_hosts(self) -> None:
        me = controller_identity()
        seen: dict[str, str] = {}
        for node, conn in self._conns.items():
            address = conn.peer_address
            if address in seen:
                raise UsageError(f"nodes {seen[address]} and {node} are the same host "
                                 f"({address}): faults act on whole hosts")
            seen[address] = node
            self._addresses[node] = address
            if conn.target.sudo:
                conn.run(["true"])  # a missing sudo right: one line, before anything runs
            if conn.run(IDENTITY_ARGV, check=False).stdout.strip() == me:
                raise UsageError(f"node {node} is this controller itself: a partition "
                                 "could cut splitbrain's own SSH; run the controller on "
                                 "another machine")

    def setup(self, nodes: Sequence[str]) -> None:
        if self.ledger is not None:
            raise RemoteError(f"cluster {self.run_id} is already set up")
        if list(nodes) != self.nodes:
            self._choose(nodes)
        self.check_environment()
        with locked(self.state_dir):
            self.ledger = new_ledger(self.state_dir, backend="ssh", nodes=self.nodes)
        try:
            run_dir = self.run_dir()
            for node in self.nodes:
                target = self._conn(node).target.to_dict()
                self.ledger.record("ssh-dir", path=run_dir, run_id=self.run_id,
                                   target=target)
                self.ledger.record("ssh-chains", run_id=self.run_id, target=target)
            for node in self.nodes:
                try:
                    self._makedirs(node, self.workdir(node))
                except OSError as e:
                    raise EnvironmentFailure(f"host {node}: cannot make the work directory "
                                             f"{self.workdir(node)}: {e}") from None
        except BaseException:
            self.teardown()
            raise

    def teardown(self) -> None:
        """Removes what the ledger names on every host, then closes the connections."""
        if self.ledger is not None:
            _LIVE.update({_key(c.target.to_dict()): c for c in self._conns.values()})
            try:
                lines = remove_run(self.ledger)
            finally:
                for c in self._conns.values():
                    _LIVE.pop(_key(c.target.to_dict()), None)
            if self.ledger.path.exists():
                raise RemoteError("teardown incomplete: " + "; ".join(lines))
            self.ledger = None
        self._close()

    def _close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns = {}
        self._addresses = {}

    # -- the Remote protocol -----------------------------------------------------------

    def peer_address(self, node: str) -> str:
        self._conn(node)
        return self._addresses[node]

    def endpoint(self, node: str, port: int) -> tuple[str, int]:
        return (self.peer_address(node), port)

    def workdir(self, node: str) -> str:
        index = self.nodes.index(node) + 1 if node in self.nodes else 0
        if not index:
            raise RemoteError(f"unknown node {node!r} (nodes: {', '.join(self.nodes)})")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", node)
        return posixpath.join(self.run_dir(), f"{index}-{name}")

    def run(self, node: str, argv: Sequence[str], *, check: bool = True,
            timeout: float | None = 60, input: str | None = None) -> Result:
        return self._conn(node).run(argv, check=check, timeout=timeout, input=input)

    def upload(self, node: str, local_path: str, remote_path: str) -> None:
        """Through SFTP; with sudo, into a staging directory of the user's first, then
        copied into place by root (the destination may be root's)."""
        if not os.path.exists(local_path):
            raise RemoteError(f"cannot upload {local_path}: no such file or directory")
        conn = self._conn(node)
        if not conn.target.sudo:
            self._put(node, local_path, remote_path)
            return
        staging = posixpath.join(self.run_dir(), f".upload-{secrets.token_hex(4)}")
        try:
            self._put(node, local_path, staging)
            self.run(node, ["mkdir", "-p", "--", posixpath.dirname(remote_path) or "/"])
            self.run(node, ["cp", "-rT", "--", staging, remote_path])
        finally:
            self.run(node, ["rm", "-rf", "--", staging], check=False)

    def _put(self, node: str, local_path: str, remote_path: str) -> None:
        sftp = self._conn(node).sftp()
        try:
            self._makedirs(node, posixpath.dirname(remote_path) or "/")
            if not os.path.isdir(local_path):
                sftp.put(local_path, remote_path)
                return
            for directory, _, files in os.walk(local_path):
                relative = os.path.relpath(directory, local_path)
                target = posixpath.normpath(posixpath.join(remote_path, relative))
                self._makedirs(node, target)
                for name in files:
                    sftp.put(os.path.join(directory, name), posixpath.join(target, name))
        except OSError as e:
            raise RemoteError(f"{node}: cannot upload {local_path} to {remote_path}: "
                              f"{e}") from None

    def download(self, node: str, remote_path: str, local_path: str) -> None:
        sftp = self._conn(node).sftp()
        try:
            _get(sftp, remote_path, Path(local_path))
        except OSError as e:
            raise RemoteError(f"{node}: cannot download {remote_path}: {e}") from None

    def _makedirs(self, node: str, path: str) -> None:
        """``mkdir -p`` through SFTP, so the directories are the SSH user's."""
        sftp = self._conn(node).sftp()
        missing = []
        while path not in ("", "/"):
            try:
                sftp.stat(path)
                break
            except FileNotFoundError:
                missing.append(path)
                path = posixpath.dirname(path)
        for directory in reversed(missing):
            with contextlib.suppress(OSError):
                sftp.mkdir(directory)
            sftp.stat(directory)  # raises if it still does not exist


def _get(sftp: paramiko.SFTPClient, remote: str, local: Path) -> None:
    if stat.S_ISDIR(sftp.stat(remote).st_mode or 0):
        local.mkdir(parents=True, exist_ok=True)
        for entry in sftp.listdir_attr(remote):
            _get(sftp, posixpath.join(remote, entry.filename), local / entry.filename)
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    sftp.get(remote, str(local))


# -- removers (for teardown and `splitbrain cleanup`) -----------------------------------

_LIVE: dict[tuple[str, int, str], Connection] = {}
"""Connections of live runs (their teardown) and of this cleanup, by host."""


def _key(target: dict[str, Any]) -> tuple[str, int, str]:
    return (target["host"], int(target["port"]), target["user"])


def _connection(r: dict[str, Any]) -> Connection:
    """The live run's connection to the resource's host, or a new one (kept until exit)
    made from the ledger's record and the user's SSH setup."""
    key = _key(r["target"])
    if key in _LIVE and not _LIVE[key].active:  # the host went away since; try again
        _LIVE.pop(key).close()
    if key not in _LIVE:
        from harness.errors import SplitbrainError

        try:
            _LIVE[key] = connect(Target.from_dict(r["target"]))
        except SplitbrainError as e:
            raise RuntimeError(str(e)) from None
        atexit.register(_LIVE[key].close)
    return _LIVE[key]


_KILL_DAEMONS = (
    'find "$1" -name "*.pid" -type f 2>/dev/null | while IFS= read -r f; do\n'
    '  pid=$(cat "$f" 2>/dev/null)\n'
    '  case "$pid" in ""|*[!0-9]*) continue;; esac\n'
    '  kill -KILL -"$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || continue\n'
    '  echo "$pid"\n'
    'done\n'
)


def _guard(r: dict[str, Any]) -> str:
    path = r["path"]
    if not posixpath.isabs(path) or f"splitbrain-{r.get('run_id')}" not in path.split("/"):
        raise RuntimeError(f"refusing {path}: not a directory of run {r.get('run_id')}")
    return str(path)


def _kill_daemons(r: dict[str, Any]) -> list[str]:
    """Every daemon whose pid file lies in the run's work directory on the host."""
    node = r["target"]["node"]
    conn = _connection(r)
    out = conn.run(["sh", "-c", _KILL_DAEMONS, "sh", _guard(r)], check=False, timeout=60)
    killed = out.stdout.split()
    return [f"killed {len(killed)} daemon{'s' * (len(killed) != 1)} on {node}"] if killed \
        else []


def _remove_dir(r: dict[str, Any]) -> list[str]:
    path, node = _guard(r), r["target"]["node"]
    result = _connection(r).run(
        ["sh", "-c", '[ -e "$1" ] || exit 0; rm -rf -- "$1" && echo removed', "sh", path],
        check=False, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{node}: cannot remove {path}: {result.stderr.strip()}")
    return [f"removed directory {path} on {node}"] if result.stdout.strip() else []


_REMOVE_CHAINS = (
    'for c in "$@"; do\n'
    '  found=\n'
    '  iptables -w -C INPUT -j "$c" 2>/dev/null && found=1\n'
    '  iptables -w -n -L "$c" >/dev/null 2>&1 && found=1\n'
    '  [ -n "$found" ] || continue\n'
    '  while iptables -w -C INPUT -j "$c" 2>/dev/null; do\n'
    '    iptables -w -D INPUT -j "$c" || exit 1\n'
    '  done\n'
    '  if iptables -w -n -L "$c" >/dev/null 2>&1; then\n'
    '    iptables -w -F "$c" && iptables -w -X "$c" || exit 1\n'
    '  fi\n'
    '  echo "$c"\n'
    'done\n'
)
"""Removes each named chain and every jump to it from INPUT; prints what it removed."""


def _remove_chains(r: dict[str, Any]) -> list[str]:
    """splitbrain's chains on the host (their names are splitbrain's alone), in one
    command: a run's faults may have made any of them."""
    node = r["target"]["node"]
    result = _connection(r).run(
        ["sh", "-c", _REMOVE_CHAINS, "sh", net.CHAIN, net.LOSS_CHAIN, net.DELAY_CHAIN],
        check=False, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{node}: cannot remove splitbrain's chains: "
                           f"{result.stderr.strip()}")
    return [f"removed chain {c} on {node}" for c in result.stdout.split()]


register_remover("ssh-dir", _remove_dir, quiesce=_kill_daemons)
register_remover("ssh-chains", _remove_chains)
