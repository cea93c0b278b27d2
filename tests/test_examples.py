"""End to end: the examples run as their READMEs say, from the repository's root.

Real namespaces, a real memcached (Debian's package), real iptables; short runs. The
subprocess runs with the repository's root as its current directory, which is how a
user finds ``examples.*`` from a checkout (``harness.registry`` searches the current
directory for a user's module).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.history import read_jsonl
from harness.report_history import summarize

pytestmark = [pytest.mark.slow, pytest.mark.root,
              pytest.mark.skipif(shutil.which("memcached") is None,
                                 reason="memcached is not installed (.ci/setup installs it)")]

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from harness.cli import main; main()"]
MEMCACHED = "examples.memcached:make_system"


def run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path, dict]:
    store = tmp_path / "store"
    r = subprocess.run([*CLI, "run", "--store", str(store), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
    run_dir = (store / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text()) if run_dir.exists() else {}
    return r, run_dir, results


def test_memcached_register_is_linearizable_with_no_faults(tmp_path):
    r, _, results = run(tmp_path, "--system", MEMCACHED, "--workload", "register",
                        "--nemesis", "none", "--concurrency", "5", "--time-limit", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert results["linearizable"]["valid"] is True
    assert results["stats"]["valid"] is True  # every kind of op succeeded: cas too


def test_memcached_loses_the_counter_when_killed(tmp_path):
    """Memcached keeps nothing across a crash: the [nemesis] table's short interval lands
    a kill inside a 4 s run, and the increments acknowledged before it are lost."""
    test_file = tmp_path / "kill.toml"
    test_file.write_text(f'system = "{MEMCACHED}"\nworkload = "counter"\nnodes = 1\n'
                         'time_limit = 4\nconcurrency = 5\n\n'
                         '[nemesis]\nfaults = "kill"\ninterval = 1.0\n')
    r, run_dir, results = run(tmp_path, str(test_file))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lost-update" in {a["type"] for a in results["anomalies"]}
    bands = summarize(read_jsonl(run_dir / "history.jsonl")).bands
    assert bands and all(b.label == "kill n1" and b.end > b.start for b in bands)


def test_a_users_workload_with_its_own_checker(tmp_path):
    r, _, results = run(tmp_path, "--system", MEMCACHED, "--workload",
                        "examples.workload:make_workload", "--nemesis", "none",
                        "--concurrency", "5", "--time-limit", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert results["append"]["valid"] is True
    assert "acknowledged appends" in results["append"]["summary"]
    assert results["stats"]["valid"] is True


def test_a_users_nemesis_cuts_one_way_and_the_report_draws_its_bands(tmp_path):
    test_file = tmp_path / "one-way.toml"
    test_file.write_text('system = "counterd"\nnodes = 3\ntime_limit = 4\nconcurrency = 4\n\n'
                         '[nemesis]\nfaults = "examples.nemesis:make_fault"\ninterval = 1.0\n')
    r, run_dir, _ = run(tmp_path, str(test_file))
    assert r.returncode in (0, 1), r.stdout + r.stderr  # a verdict, either way
    history = read_jsonl(run_dir / "history.jsonl")
    cuts = [op.value for op in history if op.f == "start-one-way" and op.type == "info"]
    assert cuts
    for grudge in cuts:  # one node deaf to the two others, which still hear it
        ((deaf, peers),) = grudge.items()
        assert sorted(peers) == sorted({"n1", "n2", "n3"} - {deaf})
    bands = summarize(history).bands
    assert len(bands) == len(cuts) and all(b.label == "one-way" for b in bands)
