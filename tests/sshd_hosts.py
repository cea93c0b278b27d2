"""Real SSH hosts for tests: Debian's sshd in network namespaces made by the local backend.

Each host is a namespace on a bridge of its own with one address, running
``/usr/sbin/sshd`` with a host key generated for this test run and a test sshd_config
(root login by key only; every user's keys are one file of the test's, read by root,
since a user could not read it in the test's private directory). The test writes the
known_hosts file, a user key and an ssh config whose aliases (``n1``, ``n2``...) name
the hosts, so the ssh backend resolves node names the way it would on a user's
machine. The hosts share the controller's kernel, file system and process table but
not its network stack: partitions and loss act on each host's own iptables, as on real
machines. ``close`` kills every sshd and everything started through it, and removes
the namespaces.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from harness.cluster.backends.local import LocalRemote

SSHD = "/usr/sbin/sshd"
SETTINGS_ENV = "SPLITBRAIN_TEST_SSH_SETTINGS"
"""Where a test process's child (a controller to SIGKILL) finds the hosts' settings."""

SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {host_key}
PidFile {pid_file}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile none
AuthorizedKeysCommand /bin/cat {authorized_keys}
AuthorizedKeysCommandUser root
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 20
MaxStartups 50
Subsystem sftp internal-sftp
LogLevel ERROR
"""


def keygen(path: Path, passphrase: str = "") -> str:
    """A new ed25519 key pair at ``path``; returns the public key's line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "test",
                    "-f", str(path)], check=True, capture_output=True)
    return Path(f"{path}.pub").read_text().strip()


class SshdHosts:
    """``count`` hosts n1..nN, reachable by alias through ``self.config``."""

    def __init__(self, directory: Path, count: int = 3) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names = [f"n{i}" for i in range(1, count + 1)]
        self.local = LocalRemote(state_dir=self.dir / "netns-state")
        self.sshd: dict[str, subprocess.Popen[bytes]] = {}
        self.user_key = self.dir / "id_user"
        self.authorized = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "ssh_config"
        self.host_keys: dict[str, Path] = {}
        self.exported = False
        self.local.setup(self.names)
        try:
            self.authorized.write_text(keygen(self.user_key) + "\n")
            Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation dir
            known, config = [], []
            for name in self.names:
                self.host_keys[name] = self.dir / f"host_key_{name}"
                public = keygen(self.host_keys[name])
                known.append(f"{self.address(name)} {' '.join(public.split()[:2])}")
                config.append(f"Host {name}\n  HostName {self.address(name)}\n  User root\n"
                              f"  IdentityFile {self.user_key}\n")
                self.start(name)
            self.known_hosts.write_text("\n".join(known) + "\n")
            self.config.write_text("\n".join(config))
            for name in self.names:
                self.wait_listening(name)
        except BaseException:
            self.close()
            raise

    def address(self, name: str) -> str:
        return self.local.peer_address(name)

    def settings(self, **extra: object) -> dict[str, object]:
        """An ``[ssh]`` table for these hosts."""
        return {"config": str(self.config), "known_hosts": str(self.known_hosts), **extra}

    def export(self) -> None:
        """Makes the settings visible to child processes (see SETTINGS_ENV)."""
        os.environ[SETTINGS_ENV] = json.dumps(self.settings())
        self.exported = True

    def start(self, name: str) -> None:
        cfg = self.dir / f"sshd_config_{name}"
        cfg.write_text(SSHD_CONFIG.format(
            address=self.address(name), host_key=self.host_keys[name],
            pid_file=self.dir / f"sshd_{name}.pid", authorized_keys=self.authorized))
        self.sshd[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.local.namespace(name), SSHD, "-D", "-e",
             "-f", str(cfg)], stderr=open(self.dir / f"sshd_{name}.log", "ab"))

    def stop(self, name: str) -> None:
        proc = self.sshd.pop(name, None)
        if proc is not None:
            proc.kill()
            proc.wait()

    def wait_listening(self, name: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((self.address(name), 22), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    log = (self.dir / f"sshd_{name}.log").read_text()
                    raise RuntimeError(f"sshd on {name} does not listen: {log}") from None
                time.sleep(0.05)

    def close(self) -> None:
        for name in list(self.sshd):
            self.stop(name)
        self.local.teardown()  # kills whatever sshd started in the namespaces
        if self.exported:
            os.environ.pop(SETTINGS_ENV, None)


def settings_from_env() -> dict[str, object]:
    return json.loads(os.environ[SETTINGS_ENV])
