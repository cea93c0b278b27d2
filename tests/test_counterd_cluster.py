"""The counterd adapter on a real LocalRemote cluster: namespaces, daemons, iptables.

Everything goes through the public seams the runner uses (``make_system``, the DB and
its capabilities, ``open_client``), against three real network namespaces; the module
checks at the end that no namespace or counterd process of its cluster is left.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.cluster.backends.local import LocalRemote
from harness.cluster.net import drop, heal
from harness.context import Spec
from harness.context import Test as RunContext  # not a pytest class
from harness.daemon import daemon_running, start_daemon, stop_daemon
from harness.db import DB, Killable, LogFiles, Pausable, Primaries
from harness.errors import EnvironmentFailure
from harness.history import FAIL, INFO, INVOKE, OK, Op
from harness.system import System
from harness.systems.counterd import make_system

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

NODES = ["n1", "n2", "n3"]


def netns_names() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def pids_running(pattern: str) -> str:
    return subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def remote():
    """One three-node cluster for the module; afterwards nothing of it may remain."""
    r = LocalRemote()
    r.setup(NODES)
    run_id = r.run_id
    state = Path(r.workdir("n1")).parent
    try:
        yield r
    finally:
        r.teardown()
    assert f"sb-{run_id}-" not in netns_names()
    assert str(state) not in pids_running(str(state))
    assert not state.exists()


def alive(pid: str) -> bool:
    """Exists and is not a zombie (orphans may be reparented to a PID 1 that never reaps)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def make_test(remote: LocalRemote, tmp_path: Path, **options: str) -> RunContext:
    spec = Spec(system="counterd", nodes=list(NODES), options=options)
    return RunContext(spec=spec, remote=remote, run_dir=tmp_path)


def on_every_node(nodes: list[str], action) -> None:
    """As the runner does: every node at once; the first error is raised."""
    with ThreadPoolExecutor(len(nodes)) as pool:
        for future in [pool.submit(action, node) for node in nodes]:
            future.result()


async def invoke(system: System, test: RunContext, node: str, f: str, value=None) -> Op:
    client = await system.open_client(test, node)
    try:
        return await client.invoke(test, Op(INVOKE, f, value, 0))
    finally:
        await client.close()


def call(system: System, test: RunContext, node: str, f: str, value=None) -> Op:
    return asyncio.run(invoke(system, test, node, f, value))


def reads(system: System, test: RunContext) -> dict[str, int | None]:
    async def all_reads() -> list[Op]:
        return await asyncio.gather(*(invoke(system, test, n, "read") for n in NODES))
    ops = asyncio.run(all_reads())
    return {n: op.value if op.type == OK else None for n, op in zip(NODES, ops, strict=True)}


def wait_for_reads(system: System, test: RunContext, expected: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := reads(system, test)) != {n: expected for n in NODES}:
        assert time.monotonic() < deadline, f"reads did not converge to {expected}: {seen}"
        time.sleep(0.05)


def test_async_replica_on_three_namespaces(remote, tmp_path):
    system = make_system({"variant": "async-replica", "timeout": "1"})
    test = make_test(remote, tmp_path, variant="async-replica", timeout="1")
    db = system.db(test)
    assert all(isinstance(db, cap) for cap in (DB, Killable, Pausable, Primaries, LogFiles))
    assert system.serving_nodes(test) == NODES
    assert db.primaries(test) == ["n1"]
    on_every_node(NODES, lambda n: db.setup(test, n))
    pids = {n: Path(db.paths(test, n).pidfile).read_text().strip() for n in NODES}
    try:
        for node in NODES:  # clients on every node, adds forwarded to the primary
            assert call(system, test, node, "add", 2).type == OK
        wait_for_reads(system, test, 6)

        # A partition between replica and primary: the forwarded add outlives the client.
        drop(remote, NODES, {"n1": ["n2"], "n2": ["n1"]})
        try:
            op = call(system, test, "n2", "add", 1)
            assert (op.type, op.error) == (INFO, "timeout")
            assert call(system, test, "n3", "add", 1).type == OK  # the rest still works
        finally:
            heal(remote, NODES)
        wait_for_reads(system, test, 8)  # the held add landed after the heal, or not at all

        db.kill(test, "n1")  # the primary: replicas refuse adds, definitely
        op = call(system, test, "n3", "add", 1)
        assert op.type == FAIL and op.error.startswith("http-503"), op
        assert call(system, test, "n1", "add", 1).error == "connection-refused"
        db.start(test, "n1")  # durable: replays its log
        assert call(system, test, "n1", "read").value == 8
        db.start(test, "n1")  # a no-op while it runs
        pids["n1"] = Path(db.paths(test, "n1").pidfile).read_text().strip()

        db.pause(test, "n3")
        op = call(system, test, "n3", "add", 1)
        assert (op.type, op.error) == (INFO, "timeout")
        db.resume(test, "n3")
        wait_for_reads(system, test, 9)  # the paused replica forwarded it on resume

        db.kill(test, "n2")  # a replica forgets its copy, and catches up on start
        db.start(test, "n2")
        wait_for_reads(system, test, 9)
        pids["n2"] = Path(db.paths(test, "n2").pidfile).read_text().strip()

        logs = db.log_files(test, "n2")
        assert logs and "variant=async-replica role=replica" in Path(logs[0]).read_text()
    finally:
        on_every_node(NODES, lambda n: db.teardown(test, n))
    for node in NODES:
        paths = db.paths(test, node)
        assert not daemon_running(remote, node, paths.pidfile)
        assert not alive(pids[node])
        assert not Path(paths.data_dir).exists()


def test_single_node_variant_serves_from_n1_only(remote, tmp_path):
    system = make_system({"variant": "durable"})
    test = make_test(remote, tmp_path, variant="durable")
    db = system.db(test)
    assert system.serving_nodes(test) == ["n1"]
    on_every_node(NODES, lambda n: db.setup(test, n))
    try:
        assert not Path(db.paths(test, "n2").pidfile).exists()
        assert db.log_files(test, "n2") == []
        for _ in range(5):
            assert call(system, test, "n1", "add", 1).type == OK
        db.kill(test, "n1")
        assert call(system, test, "n1", "read").type == FAIL
        db.kill(test, "n2")  # nodes it does not run on: nothing to do, no error
        db.start(test, "n2")
        db.start(test, "n1")
        assert call(system, test, "n1", "read").value == 5
    finally:
        on_every_node(NODES, lambda n: db.teardown(test, n))
    assert not Path(db.paths(test, "n1").data_dir).exists()


def test_setup_names_the_node_when_counterd_s_port_is_taken(remote, tmp_path):
    test = make_test(remote, tmp_path, variant="atomic")
    db = make_system({"variant": "atomic"}).db(test)
    workdir = remote.workdir("n1")
    squatter = f"{workdir}/squatter.pid"
    squat = ("import socket, time; s = socket.socket(); "
             "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "  # TIME_WAITs remain
             "s.bind(('0.0.0.0', 7070)); s.listen(); print('bound', flush=True); time.sleep(60)")
    squatter_log = Path(workdir) / "squatter.log"
    start_daemon(remote, "n1", [sys.executable, "-c", squat], pidfile=squatter,
                 logfile=str(squatter_log))
    try:
        deadline = time.monotonic() + 5
        while "bound" not in squatter_log.read_text():
            assert time.monotonic() < deadline, squatter_log.read_text()
            time.sleep(0.02)
        # Found before counterd starts (a real host may run its own service there); a
        # server that starts and then exits is tests/test_lifecycle.py's GhostDB.
        expected = r"node n1: port 7070 already in use, so counterd cannot start there"
        with pytest.raises(EnvironmentFailure, match=expected):
            db.setup(test, "n1")
    finally:
        stop_daemon(remote, "n1", squatter)
        db.teardown(test, "n1")
