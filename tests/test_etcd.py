"""The etcd system: a real three-member Raft cluster in real namespaces, through the CLI.

etcd's claim, checked under partitions: with compare-and-swap adds and linearizable
reads the counter is linearizable. Its documented trade-offs, shown: serializable
reads are stale on the side of a partition without the leader, and a client that
writes back what it read without comparing loses updates. The cluster names its leader
(``primaries``), so faults can aim at it: asked of real members, through a kill and a
pause, and in a whole run of ``isolate-kill-primary``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from harness.cluster.backends.local import LocalRemote
from harness.cluster.remote import NoopRemote, on_each_node
from harness.context import Spec
from harness.context import Test as RunContext  # not Test*: pytest would collect it
from harness.db import Primaries
from harness.errors import UsageError
from harness.history import read_jsonl
from harness.systems.etcd_counter import EtcdDB, EtcdOptions, _leads, make_system
from tests.test_e2e import anomaly_types, assert_nothing_left, machine_state, run

needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None,
                                reason="etcd is not installed (.ci/setup installs it)")


def test_options_parse_and_refuse_with_one_line():
    o = EtcdOptions.parse({"reads": "serializable", "timeout": "1.5", "variant": "other"})
    assert (o.client, o.reads, o.timeout) == ("cas", "serializable", 1.5)
    with pytest.raises(UsageError, match="reads must be one of linearizable, serializable"):
        EtcdOptions.parse({"reads": "stale"})
    with pytest.raises(UsageError, match="timeout must be positive"):
        EtcdOptions.parse({"timeout": "0"})


def test_client_and_peer_ports_are_options_the_server_is_started_with():
    o = EtcdOptions.parse({"client-port": "12379", "peer_port": "12380"})
    test = RunContext(Spec(nodes=["n1", "n2"], system="etcd"), NoopRemote(), Path("/tmp"))
    db = EtcdDB(o, "token")
    assert db.ports(test) == [12379, 12380]
    argv = db.argv(test, "n1", db.paths(test, "n1"))
    urls = {argv[i]: argv[i + 1] for i, a in enumerate(argv) if a.startswith("--listen")}
    assert urls == {"--listen-client-urls": "http://127.0.0.1:12379",
                    "--listen-peer-urls": "http://127.0.0.1:12380"}
    assert "n2=http://127.0.0.1:12380" in argv[argv.index("--initial-cluster") + 1]
    with pytest.raises(UsageError, match="peer-port must differ from client-port, got 2380"):
        EtcdOptions.parse({"client-port": "2380"})
    with pytest.raises(UsageError, match="client-port must be at most 65535, got 65536"):
        EtcdOptions.parse({"client-port": "65536"})


@pytest.mark.slow
@pytest.mark.root
@needs_etcd
def test_cas_adds_and_linearizable_reads_stay_linearizable_under_partitions(tmp_path):
    before = machine_state()
    r, run_dir = run(tmp_path, "--system", "etcd", "--nodes", "3", "--nemesis", "partition",
                     "--time-limit", "12", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    history = read_jsonl(run_dir / "history.jsonl")
    assert any(op.f == "start-partition" and op.type == "info" for op in history)
    final = {op.extra["node"]: op.value for op in history
             if op.extra.get("final") and op.type == "ok"}
    assert len(final) == 3 and len(set(final.values())) == 1, final
    assert_nothing_left(before)


@pytest.mark.slow
@pytest.mark.root
@needs_etcd
def test_serializable_reads_are_stale_across_a_partition(tmp_path):
    r, run_dir = run(tmp_path, "--system", "etcd", "--nodes", "3", "-o", "reads=serializable",
                     "--nemesis", "partition", "--concurrency", "30", "--time-limit", "12",
                     timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "stale-read" in anomaly_types(run_dir)
    assert "lost-update" not in anomaly_types(run_dir)  # a member behind is not a loss


@pytest.mark.slow
@pytest.mark.root
@needs_etcd
def test_get_put_without_comparison_loses_updates(tmp_path):
    """On ports of the user's choice: servers, probes and clients all follow them."""
    r, run_dir = run(tmp_path, "--system", "etcd", "--nodes", "3", "-o", "client=get-put",
                     "-o", "client-port=12379", "-o", "peer-port=12380",
                     "--nemesis", "none", "--time-limit", "4", timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lost-update" in anomaly_types(run_dir)


def test_a_member_is_a_primary_only_when_its_own_status_names_it_leader():
    me = {"cluster_id": "7", "member_id": "42", "raft_term": "3"}
    assert _leads({"header": me, "leader": "42"})
    assert not _leads({"header": me, "leader": "41"})  # it follows 41: 41 must say so
    assert not _leads({"header": {**me, "member_id": "0"}, "leader": "0"})  # no leader
    assert not _leads({"leader": "42"}) and not _leads({"header": "x", "leader": "42"})


def wait_for_primaries(db: EtcdDB, test: RunContext, changed_from: list[str] | None,
                       timeout: float = 30.0) -> list[str]:
    """The first non-empty answer (other than ``changed_from``) within ``timeout``: an
    election takes one to two election timeouts (1 s here), longer on a loaded machine."""
    deadline = time.monotonic() + timeout
    while True:
        leaders = db.primaries(test)
        if leaders and leaders != changed_from:
            return leaders
        assert time.monotonic() < deadline, f"no new leader within {timeout:g} s: {leaders}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.root
@needs_etcd
def test_primaries_names_the_leader_and_follows_a_reelection(tmp_path):
    """Three real members in namespaces: one leader, a node of the test; kill it and the
    other two elect one of themselves; pause that one too and nobody answers as leader
    (the last member has no quorum, the paused one cannot answer): an empty list, soon."""
    nodes = ["n1", "n2", "n3"]
    remote = LocalRemote()
    remote.setup(nodes)
    test = RunContext(Spec(system="etcd", nodes=nodes), remote, tmp_path)
    db = make_system({}).db(test)
    assert isinstance(db, Primaries)
    try:
        on_each_node(nodes, lambda n: db.setup(test, n))  # members wait for each other
        first = wait_for_primaries(db, test, None)
        assert len(first) == 1 and first[0] in nodes, first
        assert db.primaries(test) == first  # a stable cluster keeps its leader

        db.kill(test, first[0])
        second = wait_for_primaries(db, test, first)
        assert len(second) == 1 and second[0] in nodes and second != first, second

        db.pause(test, second[0])
        try:
            started = time.monotonic()
            assert db.primaries(test) == []
            assert time.monotonic() - started < 10  # a bounded wait, not a hang
        finally:
            db.resume(test, second[0])
    finally:
        try:
            on_each_node(nodes, lambda n: db.teardown(test, n))
        finally:
            remote.teardown()


@pytest.mark.slow
@pytest.mark.root
@needs_etcd
def test_isolate_kill_primary_cuts_off_and_kills_the_leader(tmp_path):
    """A whole run: each cycle cuts one node off, the one etcd had elected (its own log
    says it became leader), kills that same node, heals and restarts it; etcd's cas adds
    and linearizable reads stay linearizable through it."""
    spec = tmp_path / "test.toml"
    spec.write_text('system = "etcd"\nnodes = 3\ntime_limit = 15\nconcurrency = 3\n\n'
                    '[nemesis]\nfaults = "isolate-kill-primary"\ninterval = 2.5\n')
    r, run_dir = run(tmp_path, str(spec), timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    done = [op for op in read_jsonl(run_dir / "history.jsonl")
            if op.process == "nemesis" and op.type == "info"]
    fs = [op.f for op in done]
    assert fs[:2] == ["start-partition", "kill"], fs
    led = 0
    for cut, kill in ((a, b) for a, b in zip(done, done[1:])
                      if (a.f, b.f) == ("start-partition", "kill")):
        isolated = sorted(n for n, drops in cut.value.items() if len(drops) == 2)
        assert len(isolated) == 1 and kill.value == isolated, (cut.value, kill.value)
        if not cut.extra["primaries"]:
            continue  # no member claimed to lead (an election): a stand-in was cut
        led += 1
        assert cut.extra["primaries"] == isolated, (cut.extra, isolated)
        log = (run_dir / "nodes" / isolated[0] / "etcd.log").read_text(errors="replace")
        assert "became leader" in log, isolated
    assert led, "no cycle found a leader to cut"
    # This run's members are gone (other runs on the machine may have their own).
    token = f"splitbrain-{run_dir.name}"
    assert token not in machine_state()["procs"]
