"""The postgres system: a real PostgreSQL server in a real namespace, through the CLI.

The classic lost update, and the isolation level that prevents it: a read-modify-write
transaction loses increments at READ COMMITTED, PostgreSQL's default, and none at
SERIALIZABLE, where racing transactions abort instead. A single UPDATE survives kill -9,
and a killed server leaves nothing of itself outside its data directory.
"""

from __future__ import annotations

import glob
import posixpath
import random
from pathlib import Path

import pytest

from harness.cluster.backends.local import LocalRemote
from harness.cluster.remote import NoopRemote
from harness.context import Spec
from harness.context import Test as RunContext  # not Test*: pytest would collect it
from harness.daemon import daemon_processes
from harness.errors import UsageError
from harness.history import INVOKE, Op, read_jsonl
from harness.systems.postgres_counter import PostgresDB, PostgresOptions, make_system
from nemeses.process import KILL, ProcessNemesis
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


def shm_segments() -> set[str]:
    """PostgreSQL's POSIX shared memory segments on this machine: any server's."""
    return set(glob.glob("/dev/shm/PostgreSQL.*"))


def sysv_creators() -> dict[int, int]:
    """Every System V shared memory segment on this machine: its id and creator's pid."""
    rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(row.split()[1]): int(row.split()[4]) for row in rows}


def mapped_files(pids: list[int]) -> set[str]:
    """The files the processes ``pids`` have mapped into memory."""
    files = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:  # it exited meanwhile
            continue
        files |= {line.split(None, 5)[5].strip() for line in maps.splitlines()
                  if len(line.split(None, 5)) == 6}
    return files


def psql(db: PostgresDB, test: RunContext, sql: str) -> str:
    return test.remote.run("n1", [
        "runuser", "-u", "postgres", "--", posixpath.join(db.bin_dir, "psql"), "-X", "-q",
        "-At", "-v", "ON_ERROR_STOP=1", "-h", test.remote.peer_address("n1"),
        "-p", str(db.options.port), "-U", "postgres", "-c", sql]).stdout


PARALLEL_COUNT = (
    "CREATE TABLE IF NOT EXISTS big AS SELECT g FROM generate_series(1, 100000) g;"
    " SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
    " SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2;"
    " EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM big")
"""A parallel query: its workers share dynamic shared memory segments with the leader."""


@pytest.mark.slow
@pytest.mark.root
@needs_postgres
def test_killed_servers_leave_no_shared_memory_behind(tmp_path):
    """The server keeps its dynamic shared memory in its data directory
    (``pg_dynshmem/``), never in /dev/shm, where a SIGKILLed postmaster's segments would
    outlive the run; and the teardown removes the System V segment a killed postmaster
    leaves. A parallel query, a kill and restart through the nemesis, another query, a
    last kill with no restart (as when a run is interrupted with the server down), the
    teardown: then nothing of it is left. Other servers on the machine may own segments,
    so sets are compared: a /dev/shm segment that appeared and that no living process
    maps is a leak, and so is any System V segment one of this server's processes made."""
    before = shm_segments()
    remote = LocalRemote()
    remote.setup(["n1"])
    test = RunContext(Spec(system="postgres", nodes=["n1"]), remote, tmp_path)
    db = make_system({}).db(test)
    nemesis = ProcessNemesis(KILL, db, "postgres", random.Random(0), ["n1"])
    pidfile = db.paths(test, "n1").pidfile
    dsm_dir = posixpath.join(db.paths(test, "n1").data_dir, "pg_dynshmem")
    ours: set[int] = set()
    try:
        db.setup(test, "n1")
        for restart in (True, False):
            assert psql(db, test, "SHOW dynamic_shared_memory_type").strip() == "mmap"
            plan = psql(db, test, PARALLEL_COUNT)
            assert "Workers Launched: 0" not in plan and "Workers Launched:" in plan, plan
            pids = daemon_processes(remote, "n1", pidfile)
            ours |= set(pids)
            mapped = mapped_files(pids)
            assert not {f for f in mapped if f.startswith("/dev/shm/")}, mapped
            assert any(f.startswith(dsm_dir + "/") for f in mapped), mapped  # its segments
            assert nemesis.invoke(test, Op(INVOKE, "kill", ["n1"], "nemesis")).value == ["n1"]
            assert daemon_processes(remote, "n1", pidfile) == []
            if restart:
                nemesis.invoke(test, Op(INVOKE, "start", None, "nemesis"))
    finally:
        try:
            db.teardown(test, "n1")  # no nemesis.teardown: it would restart the server
        finally:
            remote.teardown()
    appeared = shm_segments() - before
    in_use = mapped_files([int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()])
    assert not appeared - in_use, f"left in /dev/shm: {sorted(appeared - in_use)}"
    left = {shmid for shmid, creator in sysv_creators().items() if creator in ours}
    assert not left, f"System V segments left: {sorted(left)}"
