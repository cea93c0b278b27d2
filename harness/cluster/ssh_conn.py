"""SSH connections for the ssh backend: who to connect as, host keys, commands, files.

Settings come, most specific first, from the node's ``[USER@]HOST[:PORT]``, the test's
``[ssh]`` table, ``~/.ssh/config`` (aliases, users, ports, identity files, as OpenSSH
reads them) and OpenSSH's defaults. Keys are tried from the identity files named, then
from the agent. A key's passphrase is read from the environment
(``SPLITBRAIN_SSH_PASSPHRASE``) and only ever handed to paramiko: it is never part of a
spec, a ledger, a log or a command.

Host keys are verified against a known_hosts file. An unknown key is refused unless the
policy is ``accept-new`` (OpenSSH's ``StrictHostKeyChecking=accept-new``), which appends
it; a changed key is always refused. Each refusal is one line naming the host, the key
offered and how to trust it.

One ``Connection`` per host carries every command as a channel of its own (at most
``MAX_CHANNELS`` at once: sshd allows ten sessions per connection by default). A command
line is built by ``command_line`` alone: the argument list quoted once with
``shlex.join`` for the remote POSIX shell, started under ``setsid`` so that a timeout can
kill the command's whole process group on the host.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shlex
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from harness.cluster.remote import RemoteError, Result
from harness.errors import EnvironmentFailure, UsageError

logging.getLogger("paramiko").setLevel(logging.WARNING)  # not a line per SFTP session

PASSPHRASE_ENV = "SPLITBRAIN_SSH_PASSPHRASE"
POLICIES = ("strict", "accept-new")
MAX_CHANNELS = 8
CONNECT_ATTEMPTS = 3
_PID_PREFIX = "splitbrain-pid "
_WRAPPER = f'echo "{_PID_PREFIX}$$" >&2; exec "$@"'
"""Run under ``setsid``: reports the session's pid (its process-group id) on stderr's
first line, then becomes the command."""


@dataclass(frozen=True)
class Target:
    """Everything needed to reach one host again (also what a ledger keeps: no secret)."""

    node: str
    host: str
    port: int
    user: str
    keys: tuple[str, ...]
    known_hosts: str
    policy: str
    sudo: bool
    timeout: float

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "host": self.host, "port": self.port, "user": self.user,
                "keys": list(self.keys), "known_hosts": self.known_hosts,
                "policy": self.policy, "sudo": self.sudo, "timeout": self.timeout}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        return cls(d["node"], d["host"], int(d["port"]), d["user"], tuple(d["keys"]),
                   d["known_hosts"], "strict", bool(d["sudo"]), float(d["timeout"]))

    @property
    def known_name(self) -> str:
        """How known_hosts names this host (OpenSSH's ``[host]:port`` off port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


_TABLE_KEYS = {"user", "port", "key", "known_hosts", "host_key_policy", "sudo", "config",
               "connect_timeout", "workdir"}


def parse_settings(table: dict[str, Any]) -> dict[str, Any]:
    """The ``[ssh]`` table, checked: a one-line UsageError for a bad key or value."""
    if not isinstance(table, dict):
        raise UsageError("[ssh] must be a table")
    if unknown := sorted(set(table) - _TABLE_KEYS):
        raise UsageError(f"[ssh]: unknown key(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(_TABLE_KEYS))})")
    out = dict(table)
    policy = out.get("host_key_policy", "strict")
    if policy not in POLICIES:
        raise UsageError(f"[ssh] host_key_policy must be one of {', '.join(POLICIES)}, "
                         f"got {policy!r}")
    for key in ("port", "connect_timeout"):
        value = out.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise UsageError(f"[ssh] {key} must be a positive number, got {value!r}")
    if "sudo" in out and not isinstance(out["sudo"], bool):
        raise UsageError(f"[ssh] sudo must be true or false, got {out['sudo']!r}")
    for key in ("user", "key", "known_hosts", "config", "workdir"):
        if key in out and not isinstance(out[key], str):
            raise UsageError(f"[ssh] {key} must be a string, got {out[key]!r}")
    if "workdir" in out and not out["workdir"].startswith("/"):
        raise UsageError(f"[ssh] workdir must be an absolute path, got {out['workdir']!r}")
    return out


def split_node(node: str) -> tuple[str | None, str, int | None]:
    """``[USER@]HOST[:PORT]`` -> (user, host, port); ``[v6addr]:port`` is understood."""
    user, _, rest = node.rpartition("@")
    port: int | None = None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = _port(node, tail[1:])
    elif rest.count(":") == 1:
        host, _, p = rest.partition(":")
        port = _port(node, p)
    else:
        host = rest
    if not host:
        raise UsageError(f"bad node {node!r}: expected [USER@]HOST[:PORT]")
    return user or None, host, port


def _port(node: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"bad port in node {node!r}: expected 1..65535")
    return int(text)


def resolve_target(node: str, settings: dict[str, Any]) -> Target:
    """The node's settings: its own ``USER@``/``:PORT``, then the ``[ssh]`` table, then
    ``~/.ssh/config`` for the alias, then OpenSSH's defaults."""
    user, alias, port = split_node(node)
    config_path = Path(os.path.expanduser(settings.get("config", "~/.ssh/config")))
    config = paramiko.SSHConfig()
    if config_path.is_file():
        try:
            config = paramiko.SSHConfig.from_path(str(config_path))
        except (OSError, paramiko.ConfigParseError) as e:
            raise UsageError(f"cannot read ssh config {config_path}: {e}") from None
    found = config.lookup(alias)
    keys = ([settings["key"]] if "key" in settings
            else [k for k in found.get("identityfile", []) if k])
    keys = [os.path.expanduser(k) for k in keys]
    if missing := [k for k in keys if "key" in settings and not os.path.isfile(k)]:
        raise UsageError(f"[ssh] key {missing[0]} does not exist")
    known = settings.get("known_hosts") or (found.get("userknownhostsfile") or
                                             "~/.ssh/known_hosts").split()[0]
    user = user or settings.get("user") or found.get("user") or _local_user()
    return Target(
        node=node,
        host=found.get("hostname", alias),
        port=int(port or settings.get("port") or found.get("port", 22)),
        user=user,
        keys=tuple(k for k in keys if os.path.isfile(k)),
        known_hosts=os.path.expanduser(known),
        policy=settings.get("host_key_policy", "strict"),
        sudo=settings.get("sudo", user != "root"),
        timeout=float(settings.get("connect_timeout", 10)),
    )


def _local_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's way of showing a key: ``SHA256:`` and unpadded base64."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


_KNOWN_HOSTS_LOCK = threading.Lock()


class _HostKeyRefused(paramiko.SSHException):
    pass


class _Policy(paramiko.MissingHostKeyPolicy):
    """What to do with a host that known_hosts does not list (a changed key never gets
    here: paramiko raises BadHostKeyException for it, under every policy)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        t = self.target
        if t.policy != "accept-new":
            raise _HostKeyRefused(
                f"host {t.node} is not in {t.known_hosts} (it offers {fingerprint(key)}); "
                f"if that is its key, trust it with `ssh-keyscan -p {t.port} {t.host} >> "
                f"{t.known_hosts}` or set host_key_policy = \"accept-new\" in [ssh]")
        with _KNOWN_HOSTS_LOCK:
            path = Path(t.known_hosts)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{t.known_name} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(t.known_name, key.get_name(), key)


def command_line(argv: Sequence[str], *, sudo: bool) -> str:
    """The one place an argument list becomes a remote shell command: quoted once, run
    in a session of its own (its pid reported first on stderr), through ``sudo -n`` for
    a user who is not root."""
    wrapped = ["setsid", "-w", "sh", "-c", _WRAPPER, "sh", *argv]
    return shlex.join(["sudo", "-n", "--", *wrapped] if sudo else wrapped)


def connect(target: Target) -> Connection:
    """Connects, retrying an unreachable host with backoff. Host key and authentication
    refusals are UsageErrors (the user must fix something); a host that never answers
    is an EnvironmentFailure."""
    reason = ""
    for attempt in range(CONNECT_ATTEMPTS):
        if attempt:
            time.sleep(0.5 * 2 ** attempt)
        client = paramiko.SSHClient()
        if os.path.isfile(target.known_hosts):
            try:
                client.get_host_keys().load(target.known_hosts)
            except (OSError, paramiko.SSHException) as e:
                raise UsageError(f"cannot read {target.known_hosts}: {e}") from None
        client.set_missing_host_key_policy(_Policy(target))
        try:
            client.connect(
                target.host, target.port, username=target.user,
                key_filename=list(target.keys) or None,
                passphrase=os.environ.get(PASSPHRASE_ENV), timeout=target.timeout,
                banner_timeout=target.timeout, auth_timeout=target.timeout,
                allow_agent=True, look_for_keys=not target.keys)
            return Connection(target, client)
        except _HostKeyRefused as e:
            client.close()
            raise UsageError(str(e)) from None
        except paramiko.BadHostKeyException as e:
            client.close()
            raise UsageError(
                f"host {target.node}'s key has CHANGED: it offers {fingerprint(e.key)}, "
                f"{target.known_hosts} has {fingerprint(e.expected_key)}; refusing. If the "
                f"change is expected, remove the old key with `ssh-keygen -R "
                f"'{target.known_name}' -f {target.known_hosts}`") from None
        except paramiko.PasswordRequiredException:
            client.close()
            raise UsageError(
                f"host {target.node}: the key is encrypted; add it to ssh-agent (ssh-add) "
                f"or set {PASSPHRASE_ENV}") from None
        except paramiko.AuthenticationException as e:
            client.close()
            tried = ", ".join(target.keys) or "the default keys"
            raise UsageError(f"host {target.node} refused user {target.user} ({e}; tried "
                             f"{tried} and the agent's keys)") from None
        except (OSError, paramiko.SSHException, EOFError) as e:
            client.close()
            reason = str(e).strip() or type(e).__name__
    raise EnvironmentFailure(f"cannot reach host {target.node} at {target.host} port "
                             f"{target.port} ({reason}; {CONNECT_ATTEMPTS} attempts)")


@dataclass
class Connection:
    """One SSH connection to a host; every command is a channel of it."""

    target: Target
    client: paramiko.SSHClient
    _channels: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_CHANNELS))
    _sftp: paramiko.SFTPClient | None = None
    _sftp_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def peer_address(self) -> str:
        """The address this connection reached: the host as the network sees it."""
        transport = self.client.get_transport()
        assert transport is not None
        return str(transport.getpeername()[0])

    @property
    def active(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()

    def sftp(self) -> paramiko.SFTPClient:
        with self._sftp_lock:
            if self._sftp is None:
                self._sftp = self.client.open_sftp()
            return self._sftp

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = 60,
            input: str | None = None) -> Result:
        """Runs ``argv`` on the host; on timeout kills its process group there."""
        what = f"{self.target.node}: {' '.join(argv)}"
        with self._channels:
            out, err, code, pid = self._execute(command_line(argv, sudo=self.target.sudo),
                                                input, timeout)
        if code is None:
            if pid is not None:
                with self._channels:
                    self._execute(command_line(["kill", "-KILL", "--", f"-{pid}"],
                                               sudo=self.target.sudo), None, 30)
            raise RemoteError(f"{what} timed out after {timeout} s")
        if self.target.sudo and code != 0 and pid is None and "sudo:" in err:
            # sudo refused before the command started (it never reported its pid)
            reason = [line for line in err.splitlines() if line.startswith("sudo:")][-1]
            raise EnvironmentFailure(f"host {self.target.node}: user {self.target.user} may "
                                     f"not run `{' '.join(argv)}` through sudo -n ({reason})")
        result = Result(code, out, err)
        if check and code != 0:
            detail = err.strip().splitlines()[-1:] or [f"exit {code}"]
            raise RemoteError(f"{what}: {detail[0]}")
        return result

    def _execute(self, line: str, input: str | None, timeout: float | None
                 ) -> tuple[str, str, int | None, int | None]:
        """(stdout, stderr without the pid line, exit status or None on timeout, pid).

        stdout and stderr are drained by threads of their own, so a command writing a lot
        to either never blocks on a full window while we wait on the other."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise RemoteError(f"{self.target.node}: the SSH connection is closed")
        try:
            channel = transport.open_session(timeout=30)
            channel.exec_command(line)
        except (paramiko.SSHException, OSError) as e:
            raise RemoteError(f"{self.target.node}: cannot open a channel: {e}") from None
        chunks: dict[str, list[bytes]] = {"out": [], "err": []}

        def drain(name: str, recv: Any) -> None:
            while data := recv(65536):
                chunks[name].append(data)

        readers = [threading.Thread(target=drain, args=("out", channel.recv), daemon=True),
                   threading.Thread(target=drain, args=("err", channel.recv_stderr),
                                    daemon=True)]
        for reader in readers:
            reader.start()
        try:
            if input is not None:
                channel.sendall(input.encode())
            channel.shutdown_write()
        except (OSError, paramiko.SSHException):
            pass  # the command exited without reading its input: its status tells
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = not any(r.is_alive() for r in readers)
        if done:
            done = channel.status_event.wait(
                None if deadline is None else max(0.1, deadline - time.monotonic()))
        err = b"".join(chunks["err"]).decode(errors="replace")
        pid, err = _take_pid(err)
        out = b"".join(chunks["out"]).decode(errors="replace")
        code = channel.recv_exit_status() if done else None
        channel.close()
        return out, err, code, pid


def _take_pid(err: str) -> tuple[int | None, str]:
    """The pid line the wrapper wrote, and stderr without it. Lines before it (sshd's
    "Could not chdir to home directory", say) stay in stderr."""
    lines = err.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(_PID_PREFIX) and line[len(_PID_PREFIX):].strip().isdigit():
            return int(line[len(_PID_PREFIX):]), "".join(lines[:i] + lines[i + 1:])
    return None, err


def controller_identity() -> str:
    """This machine's kernel boot and network namespace: a node with the same is the
    controller itself."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{boot} {os.readlink('/proc/self/ns/net')}"


IDENTITY_ARGV = ["sh", "-c", 'echo "$(cat /proc/sys/kernel/random/boot_id) '
                 '$(readlink /proc/self/ns/net)"']
