"""End to end: `splitbrain run` on real namespaces, real processes, real iptables.

Each test runs the real command line in a subprocess and then looks at what it left:
its exit code, its store, and the machine (namespaces, links, iptables, processes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.history import read_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.root]

CLI = [sys.executable, "-c", "from harness.cli import main; main()"]


def machine_state() -> dict[str, str]:
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    return {
        "netns": out("ip", "netns", "list"),
        "links": out("ip", "-o", "link"),
        "iptables": out("iptables", "-S"),
        "procs": out("ps", "-eo", "args"),
    }


def assert_nothing_left(before: dict[str, str]) -> None:
    after = machine_state()
    for key in ("netns", "links", "iptables"):
        assert sorted(after[key].splitlines()) == sorted(before[key].splitlines()), key
    assert after["procs"].count("counterd") == before["procs"].count("counterd")


def run(tmp_path: Path, *args: str,
        timeout: float = 120) -> tuple[subprocess.CompletedProcess, Path]:
    store = tmp_path / "store"
    r = subprocess.run([*CLI, "run", "--store", str(store), *args],
                       capture_output=True, text=True, timeout=timeout)
    return r, (store / "latest").resolve()


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def anomaly_types(run_dir: Path) -> set[str]:
    return {a["type"] for a in results(run_dir)["anomalies"]}


def test_naive_counter_loses_updates_with_no_fault(tmp_path):
    before = machine_state()
    r, run_dir = run(tmp_path, "--system", "counterd", "-o", "variant=naive",
                     "--nemesis", "none", "--concurrency", "20", "--time-limit", "5")
    assert r.returncode == 1, r.stdout + r.stderr
    assert {"lost-update", "nonlinearizable"} <= anomaly_types(run_dir)
    assert "lost" in r.stdout
    for name in ("test.json", "history.jsonl", "results.json", "splitbrain.log",
                 "report.html"):
        assert (run_dir / name).exists(), name
    assert f"report {run_dir / 'report.html'}" in r.stdout.replace("\n", "")
    assert any((run_dir / "nodes" / "n1").iterdir())
    assert_nothing_left(before)


def test_atomic_counter_without_faults_is_valid(tmp_path):
    r, run_dir = run(tmp_path, "-o", "variant=atomic", "--nemesis", "none",
                     "--concurrency", "20", "--time-limit", "5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert results(run_dir)["valid"] is True


def test_atomic_counter_loses_acknowledged_increments_when_killed(tmp_path):
    r, run_dir = run(tmp_path, "-o", "variant=atomic", "--nemesis", "kill",
                     "--time-limit", "12")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lost-update" in anomaly_types(run_dir)
    kills = [op for op in read_jsonl(run_dir / "history.jsonl")
             if op.process == "nemesis" and op.f == "kill"]
    assert kills, "the kill nemesis never ran"


def test_durable_counter_survives_kills(tmp_path):
    r, run_dir = run(tmp_path, "-o", "variant=durable", "--nemesis", "kill",
                     "--time-limit", "12")
    assert r.returncode == 0, r.stdout + r.stderr


def test_pausing_an_atomic_counter_loses_nothing(tmp_path):
    r, run_dir = run(tmp_path, "-o", "variant=atomic", "--nemesis", "pause",
                     "--time-limit", "8")
    assert r.returncode == 0, r.stdout + r.stderr
    history = read_jsonl(run_dir / "history.jsonl")
    pauses = [op for op in history if op.process == "nemesis" and op.f == "pause"
              and op.type == "info"]
    assert pauses and pauses[0].value == ["n1"]
    resumes = [op for op in history if op.process == "nemesis" and op.f == "resume"]
    assert resumes[-1].index > pauses[-1].index  # the final phase resumed it


def test_async_replica_partitions_cause_timeouts_and_heal(tmp_path):
    before = machine_state()
    r, run_dir = run(tmp_path, "-o", "variant=async-replica", "--nemesis", "partition",
                     "--nodes", "5", "--time-limit", "12")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    history = read_jsonl(run_dir / "history.jsonl")
    starts = [op for op in history if op.process == "nemesis" and op.f == "start-partition"]
    assert starts and any(op.type == "info" for op in starts)
    infos = [op for op in history if op.type == "info" and op.process != "nemesis"]
    assert infos, "a partition should make forwarded increments time out"
    assert any(op.extra.get("node") != "n1" for op in infos), "timeouts off the primary"
    final = {op.extra["node"]: op.value for op in history
             if op.extra.get("final") and op.type == "ok"}
    assert len(final) == 5 and len(set(final.values())) == 1, final
    assert_nothing_left(before)


def _start_run(tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "run", "--store", str(tmp_path / "store"),
                             "-o", "variant=async-replica", "--time-limit", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_ops(tmp_path: Path, n: int = 50, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = tmp_path / "store" / "latest"
        h = latest / "history.jsonl"
        if h.exists() and h.read_text().count("\n") >= n:
            return latest.resolve()
        time.sleep(0.2)
    raise AssertionError("the run never recorded operations")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_tears_everything_down(tmp_path, sig):
    before = machine_state()
    p = _start_run(tmp_path)
    run_dir = _wait_for_ops(tmp_path)
    time.sleep(3)  # let a fault or two happen
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2, out + err
    assert results(run_dir)["valid"] == "unknown"
    assert "UNKNOWN" in (run_dir / "report.html").read_text()
    assert_nothing_left(before)


def test_sigkilled_run_leaves_a_readable_history_and_cleanup_removes_the_rest(tmp_path):
    before = machine_state()
    p = _start_run(tmp_path)
    run_dir = _wait_for_ops(tmp_path, n=200)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    assert len(read_jsonl(run_dir / "history.jsonl", tolerate_torn_tail=True)) >= 200
    assert machine_state()["netns"] != before["netns"], "the killed run left no namespaces?"
    r = subprocess.run([*CLI, "cleanup"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "removed" in r.stdout
    assert_nothing_left(before)
