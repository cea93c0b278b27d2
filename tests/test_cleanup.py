"""``cleanup_all`` after a controller is SIGKILLed: with a cluster up, and mid-setup.

The controller is a child Python process with a state directory of its own (so other
runs on this machine, live or dead, do not change what these tests see). After the
kill, the namespaces, links, iptables rules, processes and work directories of its run
must all be gone, found through the ledger alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster.cleanup import cleanup_all
from harness.cluster.ledger import all_ledgers, new_ledger

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

REPO = Path(__file__).parents[1]

CONTROLLER = """
import sys, time
from harness.daemon import start_daemon
from harness.cluster.backends.local import LocalRemote

state_dir, marker = sys.argv[1], sys.argv[2]
sleeper = [sys.executable, "-c", "import time; time.sleep(600)", marker]  # marker: in ps
remote = LocalRemote(state_dir=state_dir)
print("setting up", flush=True)
remote.setup(["n1", "n2", "n3"])
for node in ("n1", "n2"):
    wd = remote.workdir(node)
    start_daemon(remote, node, sleeper,
                 pidfile=f"{wd}/x.pid", logfile=f"{wd}/x.log")
# A process started without start_daemon, still in the namespace: found by `ip netns pids`.
remote.run("n3", ["sh", "-c", '"$@" >/dev/null 2>&1 &', "sh", *sleeper])
print(remote.run_id, flush=True)
time.sleep(600)
"""


def spawn_controller(state_dir: Path, marker: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CONTROLLER, str(state_dir), marker],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def traces(run_id: str, marker: str | None = None) -> list[str]:
    """Everything on the host that still belongs to ``run_id`` (or runs ``marker``)."""
    places = {
        "ip netns list": sh("ip", "netns", "list"),
        "ip link": sh("ip", "-o", "link"),
        "iptables -S": sh("iptables", "-w", "-S"),
        "iptables -S FORWARD": sh("iptables", "-w", "-S", "FORWARD"),
        "/run/netns": " ".join(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else "",
        "mounts": Path("/proc/mounts").read_text(),
    }
    found = [f"{where}: {line}" for where, text in places.items()
             for line in text.splitlines() if run_id in line]
    if marker:
        # Zombies (dead, unreaped by PID 1) have an empty command line: not matched.
        found += [f"process: {line}" for line in sh("ps", "-eo", "pid,stat,args").splitlines()
                  if marker in line]
    return found


@pytest.fixture
def state_dir(tmp_path):
    yield tmp_path
    cleanup_all(tmp_path)  # whatever a failed test left


def test_cleanup_after_sigkill_removes_everything_and_spares_live_runs(state_dir):
    marker = f"sb-cleanup-{os.getpid()}"
    child = spawn_controller(state_dir, marker)
    try:
        assert child.stdout.readline().strip() == "setting up"
        run_id = child.stdout.readline().strip()
        assert run_id, "controller did not come up"
        assert traces(run_id, marker)

        # Its controller lives: cleanup must leave the run alone.
        assert cleanup_all(state_dir) == [
            f"left run {run_id} alone: its controller (pid {child.pid}) is running"]
        assert len(traces(run_id, marker)) > 5
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    lines = cleanup_all(state_dir)
    for node in ("n1", "n2", "n3"):
        assert f"removed namespace sb-{run_id}-{node}" in lines
    assert f"removed bridge sb-{run_id}-br" in lines
    assert any(line.startswith("removed iptables rule") and run_id in line for line in lines)
    assert f"removed directory {state_dir / run_id}" in lines
    assert any(line.startswith("killed") and f"sb-{run_id}-n3" in line for line in lines)
    assert traces(run_id, marker) == []
    assert not (state_dir / run_id).exists()
    assert all_ledgers(state_dir) == []
    assert cleanup_all(state_dir) == ["nothing to clean up"]


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.04, 0.07, 0.12])
def test_cleanup_after_sigkill_mid_setup(state_dir, delay):
    child = spawn_controller(state_dir, f"sb-midsetup-{os.getpid()}")
    assert child.stdout.readline().strip() == "setting up"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # An `ip` command the controller had started may still be finishing: give it the
    # moment a person would take before typing `splitbrain cleanup`.
    time.sleep(0.3)
    run_ids = [ledger.run_id for ledger in all_ledgers(state_dir)]
    lines = cleanup_all(state_dir)
    for run_id in run_ids:
        assert traces(run_id) == [], lines
    assert all_ledgers(state_dir) == [], lines
    assert [p.name for p in state_dir.iterdir() if not p.name == "ledger"] == []
    if (state_dir / "ledger").exists():  # the lock file stays, by design
        assert {p.name for p in (state_dir / "ledger").iterdir()} <= {".lock"}


def test_ledger_of_a_dead_controller_with_nothing_left(state_dir):
    ledger = new_ledger(state_dir)
    ledger.controller_start = -1  # as if the recorded controller had died
    ledger.record("netns", name=f"sb-{ledger.run_id}-n1")  # recorded, never created
    assert cleanup_all(state_dir) == [f"forgot run {ledger.run_id} (nothing of it was left)"]
    assert cleanup_all(state_dir) == ["nothing to clean up"]


def test_nothing_to_clean_up(state_dir):
    assert cleanup_all(state_dir) == ["nothing to clean up"]


def test_cli_cleanup_prints_the_lines():
    # Against the real state directory: other runs' lines may appear, never an error.
    result = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                             "cleanup"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_a_damaged_ledger_cannot_remove_a_foreign_directory(state_dir, tmp_path_factory):
    precious = tmp_path_factory.mktemp("precious")
    ledger = new_ledger(state_dir)
    ledger.controller_start = -1
    ledger.record("dir", path=str(precious), run_id=ledger.run_id)
    lines = cleanup_all(state_dir)
    assert precious.is_dir()
    assert any(line.startswith("could not remove dir") for line in lines)
    ledger.forget()
