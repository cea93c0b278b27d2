"""The redis system: a real redis-server in real namespaces, driven through the CLI.

Each design is run for the failure it is known for (or known not to have): a
read-then-write client loses updates with no fault; INCRBY does not; a server without
persistence loses acknowledged increments when killed; one with an fsynced AOF does not.
"""

from __future__ import annotations

import shutil

import pytest

from harness.errors import UsageError
from harness.history import read_jsonl
from harness.systems.redis_counter import RedisOptions
from tests.test_e2e import anomaly_types, assert_nothing_left, machine_state, run

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed (.ci/setup installs it)")


def test_options_parse_and_refuse_with_one_line():
    o = RedisOptions.parse({"client": "get-set", "persistence": "always", "timeout": "0.5",
                            "variant": "left to others"})
    assert (o.client, o.persistence, o.timeout, o.replicas) == ("get-set", "always", 0.5,
                                                                "none")
    with pytest.raises(UsageError, match="client must be one of incr, get-set"):
        RedisOptions.parse({"client": "getset"})
    with pytest.raises(UsageError, match="port must be an integer"):
        RedisOptions.parse({"port": "six"})


@pytest.mark.slow
@pytest.mark.root
@needs_redis
def test_a_read_then_write_client_loses_updates_with_no_fault(tmp_path):
    before = machine_state()
    r, run_dir = run(tmp_path, "--system", "redis", "-o", "client=get-set", "--nemesis",
                     "none", "--concurrency", "10", "--time-limit", "4")
    assert r.returncode == 1, r.stdout + r.stderr
    assert {"lost-update", "nonlinearizable"} <= anomaly_types(run_dir)
    assert (run_dir / "nodes" / "n1" / "redis.log").exists()
    assert_nothing_left(before)


@pytest.mark.slow
@pytest.mark.root
@needs_redis
def test_incrby_loses_nothing_with_no_fault(tmp_path):
    r, _ = run(tmp_path, "--system", "redis", "--nemesis", "none", "--concurrency", "10",
               "--time-limit", "4")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.root
@needs_redis
def test_a_killed_redis_without_persistence_loses_acknowledged_increments(tmp_path):
    r, run_dir = run(tmp_path, "--system", "redis", "-o", "persistence=none",
                     "--nemesis", "kill", "--time-limit", "10")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lost-update" in anomaly_types(run_dir)
    kills = [op for op in read_jsonl(run_dir / "history.jsonl")
             if op.process == "nemesis" and op.f == "kill" and op.type == "info"]
    assert kills and kills[0].value == ["n1"]


@pytest.mark.slow
@pytest.mark.root
@needs_redis
def test_an_aof_fsynced_always_survives_kills(tmp_path):
    r, run_dir = run(tmp_path, "--system", "redis", "-o", "persistence=always",
                     "--nemesis", "kill", "--time-limit", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(op.f == "kill" for op in read_jsonl(run_dir / "history.jsonl")
               if op.process == "nemesis")
