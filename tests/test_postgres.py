"""The postgres system: a real PostgreSQL server in a real namespace, through the CLI.

The classic lost update, and the isolation level that prevents it: a read-modify-write
transaction loses increments at READ COMMITTED, PostgreSQL's default, and none at
SERIALIZABLE, where racing transactions abort instead. A single UPDATE survives kill -9.
"""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

from harness.cluster.remote import NoopRemote
from harness.context import Spec
from harness.context import Test as RunContext  # not Test*: pytest would collect it
from harness.errors import UsageError
from harness.history import read_jsonl
from harness.systems.postgres_counter import PostgresDB, PostgresOptions
from tests.test_e2e import anomaly_types, assert_nothing_left, machine_state, run

needs_postgres = pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                                    reason="PostgreSQL is not installed (.ci/setup installs it)")


def test_options_parse_and_refuse_with_one_line():
    o = PostgresOptions.parse({"client": "read-modify-write", "isolation": "serializable",
                               "synchronous-commit": "off", "variant": "other"})
    assert (o.client, o.isolation, o.synchronous_commit) == ("read-modify-write",
                                                             "serializable", "off")
    with pytest.raises(UsageError, match="isolation must be one of read-committed, "):
        PostgresOptions.parse({"isolation": "snapshot"})


def test_the_port_is_an_option_the_server_is_started_with():
    o = PostgresOptions.parse({"port": "15432"})
    test = RunContext(Spec(nodes=["n1"], system="postgres"), NoopRemote(), Path("/tmp"))
    db = PostgresDB(o)
    assert db.ports(test) == [15432]
    assert "port=15432" in db.argv(test, "n1", db.paths(test, "n1"))
    with pytest.raises(UsageError, match="port must be at least 1, got 0"):
        PostgresOptions.parse({"port": "0"})


@pytest.mark.slow
@pytest.mark.root
@needs_postgres
def test_read_modify_write_at_read_committed_loses_updates(tmp_path):
    before = machine_state()
    r, run_dir = run(tmp_path, "--system", "postgres", "-o", "client=read-modify-write",
                     "--nemesis", "none", "--time-limit", "4")
    assert r.returncode == 1, r.stdout + r.stderr
    assert {"lost-update", "nonlinearizable"} <= anomaly_types(run_dir)
    assert (run_dir / "nodes" / "n1" / "postgres.log").exists()
    assert_nothing_left(before)


@pytest.mark.slow
@pytest.mark.root
@needs_postgres
def test_read_modify_write_at_serializable_aborts_instead(tmp_path):
    r, run_dir = run(tmp_path, "--system", "postgres", "-o", "client=read-modify-write",
                     "-o", "isolation=serializable", "--nemesis", "none", "--time-limit", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    aborted = [op for op in read_jsonl(run_dir / "history.jsonl")
               if op.type == "fail" and "aborted" in str(op.error)]
    assert aborted, "racing transactions should have been aborted"


@pytest.mark.slow
@pytest.mark.root
@needs_postgres
def test_committed_updates_survive_kills(tmp_path):
    """On a port of the user's choice: server, probes and clients all follow it."""
    r, run_dir = run(tmp_path, "--system", "postgres", "--nemesis", "kill",
                     "-o", "port=15432", "--time-limit", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(op.f == "kill" for op in read_jsonl(run_dir / "history.jsonl")
               if op.process == "nemesis")
