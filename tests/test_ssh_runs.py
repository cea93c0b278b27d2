"""End-to-end runs through the command line on real sshd hosts (``tests/sshd_hosts.py``),
as a user would point splitbrain at machines: a test file with an ``[ssh]`` table and
``--node`` aliases from an ssh config. Each run's verdict is checked, and so is what it
leaves on the hosts (nothing) and in its run directory (never the key's passphrase)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sshd_hosts import SshdHosts, keygen

REPO = Path(__file__).parents[1]
PASSPHRASE = "correct horse battery staple"
pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"),
              pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"),
                                 reason="no /usr/sbin/sshd (apt-get install openssh-server)")]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    made = SshdHosts(tmp_path_factory.mktemp("sshd"), 3)
    locked = made.dir / "id_locked"
    with open(made.authorized, "a") as f:
        f.write(keygen(locked, passphrase=PASSPHRASE) + "\n")
    yield made
    made.close()


def splitbrain(hosts: SshdHosts, tmp_path: Path, *args: str, key: str | None = None
               ) -> tuple[subprocess.CompletedProcess[str], Path | None]:
    """Runs the CLI with a test file naming the hosts' ssh config and known_hosts."""
    settings = hosts.settings(**({"key": key} if key else {}))
    toml = tmp_path / "test.toml"
    toml.write_text('backend = "ssh"\n[ssh]\n'
                    + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SSH_AUTH_SOCK", None)
    if key:
        env["SPLITBRAIN_SSH_PASSPHRASE"] = PASSPHRASE
    nodes = [a for n in hosts.names for a in ("--node", n)]
    proc = subprocess.run(
        [sys.executable, "-c", "from harness.cli import main; main()", "run", str(toml),
         *nodes, "--store", str(tmp_path / "store"), "--concurrency", "10", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    runs = sorted((tmp_path / "store").glob("*/2*"))
    return proc, runs[-1] if runs else None


def work_dirs() -> set[Path]:
    return set(Path("/var/tmp").glob("splitbrain-*"))


def nothing_left(hosts: SshdHosts, before: set[Path]) -> None:
    """No new work directory (the hosts share this file system), no chain, and no
    process but sshd on any host."""
    assert work_dirs() <= before
    for name in hosts.names:
        rules = subprocess.run(["ip", "netns", "exec", hosts.local.namespace(name),
                                "iptables", "-w", "-S"], capture_output=True, text=True)
        assert "SPLITBRAIN" not in rules.stdout
        pids = subprocess.run(["ip", "netns", "pids", hosts.local.namespace(name)],
                              capture_output=True, text=True).stdout.split()
        comms = {Path(f"/proc/{p}/comm").read_text().strip() for p in pids
                 if Path(f"/proc/{p}/comm").exists()}
        assert comms <= {"sshd"}, comms


def test_naive_counterd_loses_updates_and_no_passphrase_is_kept(hosts, tmp_path):
    before = work_dirs()
    proc, run_dir = splitbrain(hosts, tmp_path, "-o", "variant=naive", "--nemesis", "none",
                               "--time-limit", "4", key=str(hosts.dir / "id_locked"))
    assert proc.returncode == 1, proc.stderr
    assert run_dir is not None
    results = json.loads((run_dir / "results.json").read_text())
    assert "lost-update" in {a["type"] for a in results["anomalies"]}
    spec = json.loads((run_dir / "test.json").read_text())
    assert spec["backend"] == "ssh" and spec["nodes"] == hosts.names
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert PASSPHRASE.encode() not in path.read_bytes(), path
    nothing_left(hosts, before)


def test_durable_counterd_survives_kills(hosts, tmp_path):
    before = work_dirs()
    proc, run_dir = splitbrain(hosts, tmp_path, "-o", "variant=durable", "--nemesis", "kill",
                               "--time-limit", "6")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert run_dir is not None and (run_dir / "nodes").is_dir()
    nothing_left(hosts, before)


def test_etcd_survives_partitions_and_kills(hosts, tmp_path):
    if subprocess.run(["sh", "-c", "command -v etcd"], capture_output=True).returncode:
        pytest.skip("no etcd on the hosts (apt-get install etcd-server)")
    before = work_dirs()
    proc, run_dir = splitbrain(hosts, tmp_path, "--system", "etcd", "--nemesis",
                               "partition,kill", "--time-limit", "10")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert run_dir is not None
    history = (run_dir / "history.jsonl").read_text()
    assert '"start-partition"' in history
    nothing_left(hosts, before)


def test_an_unknown_host_key_is_one_line_and_254(hosts, tmp_path):
    (tmp_path / "empty").write_text("")
    toml = tmp_path / "test.toml"
    toml.write_text(f'backend = "ssh"\nnodes = ["n1"]\n[ssh]\nconfig = "{hosts.config}"\n'
                    f'known_hosts = "{tmp_path / "empty"}"\n')
    proc = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                           "run", str(toml), "--store", str(tmp_path / "store")],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 254, proc.stderr
    assert proc.stderr.count("\n") == 1 and "host n1 is not in" in proc.stderr
    assert "SHA256:" in proc.stderr
