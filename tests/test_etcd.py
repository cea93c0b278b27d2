"""The etcd system: a real three-member Raft cluster in real namespaces, through the CLI.

etcd's claim, checked under partitions: with compare-and-swap adds and linearizable
reads the counter is linearizable. Its documented trade-offs, shown: serializable
reads are stale on the side of a partition without the leader, and a client that
writes back what it read without comparing loses updates.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cluster.remote import NoopRemote
from harness.context import Spec
from harness.context import Test as RunContext  # not Test*: pytest would collect it
from harness.errors import UsageError
from harness.history import read_jsonl
from harness.systems.etcd_counter import EtcdDB, EtcdOptions
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
