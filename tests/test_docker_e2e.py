"""End to end on ``--backend docker``: the issue's checks, kept short.

Each test runs the real command line in a subprocess and looks at its exit code, its
store, and what Docker holds afterwards: no container or network of splitbrain's may
outlive a run, interrupted or not. Skipped, with the reason, when no engine answers or
the node image is not built (``splitbrain image build``; CI builds it).
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

from harness.cluster.backends.docker import DockerRemote
from harness.errors import UsageError

pytestmark = [pytest.mark.slow, pytest.mark.root]

CLI = [sys.executable, "-c", "from harness.cli import main; main()"]


def _why_not() -> str | None:
    try:
        DockerRemote().check_environment()
    except UsageError as e:
        return str(e)
    return None


needs_docker = pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "")


def ours() -> list[str]:
    """Containers and networks labelled as splitbrain's."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=splitbrain.run"],
                         capture_output=True, text=True).stdout.split()
    out += subprocess.run(["docker", "network", "ls", "-q", "--filter",
                           "label=splitbrain.run"], capture_output=True, text=True).stdout.split()
    return out


def run(tmp_path: Path, *args: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess,
                                                                     Path]:
    store = tmp_path / "store"
    r = subprocess.run([*CLI, "run", "--backend", "docker", "--store", str(store), *args],
                       capture_output=True, text=True, timeout=timeout)
    return r, (store / "latest").resolve()


def anomaly_types(run_dir: Path) -> set[str]:
    return {a["type"] for a in json.loads((run_dir / "results.json").read_text())["anomalies"]}


@needs_docker
def test_naive_counterd_loses_updates_in_containers(tmp_path):
    before = ours()
    r, run_dir = run(tmp_path, "-o", "variant=naive", "--nemesis", "none", "--nodes", "3",
                     "--concurrency", "20", "--time-limit", "5")
    assert r.returncode == 1, r.stderr
    assert "lost-update" in anomaly_types(run_dir)
    assert (run_dir / "nodes" / "n1" / "counterd.log").exists()  # logs came out
    test = json.loads((run_dir / "test.json").read_text())
    assert test["backend"] == "docker"
    assert "--backend docker" in (run_dir / "report.html").read_text()
    assert ours() == before


@needs_docker
def test_redis_without_persistence_loses_updates_to_container_kill(tmp_path):
    r, run_dir = run(tmp_path, "--system", "redis", "-o", "persistence=none", "--nodes", "1",
                     "--nemesis", "container-kill", "--time-limit", "12")
    assert r.returncode == 1, r.stderr
    assert "lost-update" in anomaly_types(run_dir)
    kinds = {json.loads(line)["f"] for line in (run_dir / "history.jsonl").open()
             if '"nemesis"' in line}
    assert {"kill-container", "start-container"} <= kinds


@needs_docker
def test_sigint_mid_run_leaves_nothing(tmp_path):
    before = ours()
    proc = subprocess.Popen([*CLI, "run", "--backend", "docker", "--store",
                             str(tmp_path / "store"), "--nodes", "3", "--nemesis",
                             "partition", "--time-limit", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    history = None
    deadline = time.monotonic() + 60
    while history is None or history.stat().st_size == 0:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
        found = list((tmp_path / "store").glob("*/*/history.jsonl"))
        history = found[0] if found else None
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert ours() == before


def test_no_engine_is_one_line_and_254(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    r = subprocess.run([*CLI, "run", "--backend", "docker", "--store", str(tmp_path / "s"),
                        "--time-limit", "1"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 254
    assert r.stderr.strip().count("\n") == 0
    assert "no Docker engine answers at" in r.stderr


@needs_docker
def test_a_missing_image_is_one_line_and_254(tmp_path):
    r = subprocess.run([*CLI, "run", "--backend", "docker", "--image", "no-such:image",
                        "--store", str(tmp_path / "s")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 254
    assert r.stderr.strip().count("\n") == 0 and "no-such:image" in r.stderr
