"""Network control, partition, loss, latency, kill and pause nemeses, and their packaging:
with real namespaces, real iptables and real servers (a python http.server per node)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.cluster import net
from harness.cluster.backends.local import LocalRemote
from harness.context import Spec
from harness.context import Test as RunContext  # not Test*: pytest would collect it
from harness.daemon import (
    daemon_running,
    kill_daemon,
    signal_daemon,
    start_daemon,
    stop_daemon,
)
from harness.db import NoopDB
from harness.errors import UsageError
from harness.history import Op
from nemeses.base import Nemesis, NoopNemesis
from nemeses.latency import LatencyNemesis
from nemeses.loss import LossNemesis
from nemeses.package import FAULTS, build_nemesis
from nemeses.partition import (
    PartitionNemesis,
    complete_grudge,
    isolate_one,
    majorities_ring,
    random_halves,
)
from nemeses.process import KILL, PAUSE, ProcessNemesis, choose_targets

NODES = ["n1", "n2", "n3", "n4", "n5"]
PORT = 8000

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


class HttpDB:
    """A tiny Killable and Pausable system: python's http.server on every node, run with
    harness.daemon."""

    def paths(self, test: RunContext, node: str) -> tuple[str, str]:
        wd = test.remote.workdir(node)
        return f"{wd}/http.pid", f"{wd}/http.log"

    def setup(self, test: RunContext, node: str) -> None:
        self.start(test, node)

    def teardown(self, test: RunContext, node: str) -> None:
        self.kill(test, node)

    def kill(self, test: RunContext, node: str) -> None:
        kill_daemon(test.remote, node, self.paths(test, node)[0])

    def pause(self, test: RunContext, node: str) -> None:
        signal_daemon(test.remote, node, self.paths(test, node)[0], signal.SIGSTOP)

    def resume(self, test: RunContext, node: str) -> None:
        signal_daemon(test.remote, node, self.paths(test, node)[0], signal.SIGCONT)

    def start(self, test: RunContext, node: str) -> None:
        pidfile, logfile = self.paths(test, node)
        if daemon_running(test.remote, node, pidfile):
            return
        address = test.remote.peer_address(node)
        start_daemon(test.remote, node, [sys.executable, "-m", "http.server", "-b", address,
                                         str(PORT)], pidfile=pidfile, logfile=logfile)
        deadline = time.monotonic() + 10
        while not tcp_open(address, PORT):
            assert time.monotonic() < deadline, f"http.server on {node} did not start"
            time.sleep(0.05)


def tcp_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return True
    except OSError:
        return False


CONNECT = ("import socket, sys\n"
           "try:\n"
           "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5).close()\n"
           "    print('open')\n"
           "except OSError as e:\n"
           "    print(type(e).__name__)\n")


def reach(test: RunContext, src: str, dst: str) -> str:
    """'open' if ``src`` can open a TCP connection to ``dst``'s server, else the error
    ('TimeoutError' when packets vanish, 'ConnectionRefusedError' when nothing listens)."""
    out = test.remote.run(src, [sys.executable, "-c", CONNECT, test.remote.peer_address(dst),
                                str(PORT)])
    return out.stdout.strip()


def reachability(test: RunContext) -> dict[tuple[str, str], bool]:
    """Which ordered pairs of nodes can talk, checked in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    pairs = [(a, b) for a in test.nodes for b in test.nodes if a != b]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: reach(test, *p) == "open", pairs))
    return dict(zip(pairs, results))


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    remote = LocalRemote()
    remote.setup(NODES)
    test = RunContext(Spec(nodes=list(NODES), system="httpd"), remote, Path("/tmp"))
    db = HttpDB()
    try:
        for node in NODES:
            db.setup(test, node)
        yield test, db
    finally:
        remote.teardown()


@pytest.fixture
def test_(cluster):
    test, db = cluster
    yield test
    net.heal(test.remote, test.nodes)
    for node in test.nodes:
        db.resume(test, node)
        db.start(test, node)


# -- network control -----------------------------------------------------------------

@needs_root
def test_drop_blocks_only_the_grudge_and_never_the_controller(test_):
    remote = test_.remote
    net.drop(remote, test_.nodes, {"n3": ["n1"]})
    assert net.dropped(remote, "n3") == [remote.peer_address("n1")]
    assert reach(test_, "n1", "n3") == "TimeoutError"  # silently dropped, not refused
    assert reach(test_, "n2", "n3") == "open"
    assert reach(test_, "n3", "n1") == "TimeoutError"  # n1's replies are dropped too
    assert reach(test_, "n1", "n2") == "open"
    assert tcp_open(remote.peer_address("n3"), PORT)  # the controller still gets through

    net.heal(remote, test_.nodes)
    assert reach(test_, "n1", "n3") == "open"
    assert net.dropped(remote, "n3") == []
    # Exact heal: splitbrain's chain and jump are gone, nothing else was touched.
    rules = remote.run("n3", ["iptables", "-w", "-S"]).stdout
    assert net.CHAIN not in rules
    net.heal(remote, test_.nodes)  # idempotent


@needs_root
def test_heal_keeps_rules_that_are_not_splitbrains(test_):
    remote = test_.remote
    theirs = ["INPUT", "-p", "tcp", "--dport", "9", "-j", "REJECT"]
    remote.run("n2", ["iptables", "-w", "-A", *theirs])
    try:
        net.drop(remote, test_.nodes, {"n2": ["n1", "n4"]})
        net.heal(remote, test_.nodes)
        assert remote.run("n2", ["iptables", "-w", "-C", *theirs], check=False).returncode == 0
    finally:
        remote.run("n2", ["iptables", "-w", "-D", *theirs])


@needs_root
def test_drop_refuses_unknown_nodes(test_):
    with pytest.raises(ValueError, match="n9"):
        net.drop(test_.remote, test_.nodes, {"n1": ["n9"]})


# -- partition nemesis ---------------------------------------------------------------

@needs_root
def test_partition_nemesis_cuts_halves_and_heals(test_):
    nemesis = PartitionNemesis(random.Random(7))
    nemesis.setup(test_)
    done = nemesis.invoke(test_, Op("invoke", "start-partition", None, "nemesis"))
    assert (done.type, done.f, done.process) == ("info", "start-partition", "nemesis")
    grudge = done.value
    assert set(grudge) == set(NODES)
    talk = reachability(test_)
    for (a, b), ok in talk.items():
        assert ok == (a not in grudge[b]), (a, b)
    assert all(tcp_open(test_.remote.peer_address(n), PORT) for n in NODES)

    healed = nemesis.invoke(test_, Op("invoke", "stop-partition", None, "nemesis"))
    assert healed.type == "info"
    assert all(reachability(test_).values())


@needs_root
def test_partition_teardown_heals_mid_fault(test_):
    nemesis = PartitionNemesis(random.Random(1), "isolate-one")
    nemesis.invoke(test_, Op("invoke", "start-partition", None, "nemesis"))
    assert not all(reachability(test_).values())
    nemesis.teardown(test_)
    assert all(reachability(test_).values())


@given(st.integers(1, 9), st.integers(0, 2**32))
def test_random_halves_is_a_symmetric_cut_into_two_halves(n, seed):
    nodes = [f"n{i}" for i in range(n)]
    grudge = random_halves(nodes, random.Random(seed))
    assert set(grudge) == set(nodes)
    for a, enemies in grudge.items():
        assert a not in enemies
        for b in enemies:
            assert a in grudge[b]
    sizes = sorted({len(e) for e in grudge.values()})
    assert sizes == sorted({n // 2, n - n // 2}) or n == 1
    assert grudge == random_halves(nodes, random.Random(seed))


@given(st.integers(2, 9), st.integers(0, 2**32))
def test_isolate_one_cuts_exactly_one_node_off(n, seed):
    nodes = [f"n{i}" for i in range(n)]
    grudge = isolate_one(nodes, random.Random(seed))
    loners = [a for a, enemies in grudge.items() if len(enemies) == n - 1]
    assert len(loners) == 1 or n == 2
    assert all(len(enemies) == 1 for a, enemies in grudge.items() if a not in loners)


@given(st.integers(1, 11), st.integers(0, 2**32))
def test_majorities_ring_gives_every_node_a_different_majority(n, seed):
    nodes = [f"n{i}" for i in range(n)]
    grudge = majorities_ring(nodes, random.Random(seed))
    heard = {a: frozenset(nodes) - set(enemies) for a, enemies in grudge.items()}
    assert set(grudge) == set(nodes)
    for a, sees in heard.items():
        assert a in sees and len(sees) > n / 2
        assert all(a in heard[b] for b in sees)  # symmetric
    if n >= 5:
        assert len(set(heard.values())) == n


def test_complete_grudge():
    assert complete_grudge([["a"], ["b", "c"]]) == {"a": ["b", "c"], "b": ["a"], "c": ["a"]}


# -- loss nemesis --------------------------------------------------------------------

ECHO_PORT = 9000
ECHO_SERVER = ("import socket, sys\n"
               "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "s.bind((sys.argv[1], int(sys.argv[2])))\n"
               "while True:\n"
               "    data, peer = s.recvfrom(64)\n"
               "    s.sendto(data, peer)\n")
ECHO_CLIENT = ("import socket, sys\n"
               "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "s.settimeout(0.05)\n"
               "ok = 0\n"
               "for i in range(int(sys.argv[3])):\n"
               "    s.sendto(str(i).encode(), (sys.argv[1], int(sys.argv[2])))\n"
               "    try:\n"
               "        while s.recv(64) != str(i).encode():\n"
               "            pass\n"
               "        ok += 1\n"
               "    except OSError:\n"
               "        pass\n"
               "print(ok)\n")


@pytest.fixture
def echo(test_):
    """A UDP echo server on n2: round trips show loss with no TCP retransmission or
    listen backlog in the way."""
    pidfile = f"{test_.remote.workdir('n2')}/echo.pid"
    start_daemon(test_.remote, "n2", [sys.executable, "-c", ECHO_SERVER,
                                      test_.remote.peer_address("n2"), str(ECHO_PORT)],
                 pidfile=pidfile, logfile=f"{test_.remote.workdir('n2')}/echo.log")
    try:
        deadline = time.monotonic() + 5
        while round_trips(test_, None, 5) == 0:
            assert time.monotonic() < deadline, "the echo server did not start"
        yield
    finally:
        stop_daemon(test_.remote, "n2", pidfile)


def output_on(test: RunContext, src: str | None, script: str, *args: str) -> str:
    """What ``script`` prints when run on node ``src``, or on the controller (None)."""
    argv = [sys.executable, "-c", script, *args]
    if src is None:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return test.remote.run(src, argv).stdout


def round_trips(test: RunContext, src: str | None, n: int = 200) -> int:
    """How many of ``n`` UDP round trips from ``src`` (None: the controller) to the echo
    server on n2 come back."""
    return int(output_on(test, src, ECHO_CLIENT, test.remote.peer_address("n2"), str(ECHO_PORT),
                         str(n)))


@needs_root
def test_loss_drops_a_share_between_nodes_never_from_the_controller_and_heals(test_, echo):
    nemesis = LossNemesis()
    done = nemesis.invoke(test_, Op("invoke", "start-loss", 0.5, "nemesis"))
    assert (done.type, done.value) == ("info", 0.5)
    # The request must pass n2's filter and the answer n1's: 1 in 4 come back (about 50
    # of 200; the bounds are more than 5 standard deviations away).
    assert 15 <= round_trips(test_, "n1") <= 90
    assert round_trips(test_, None) == 200
    nemesis.invoke(test_, Op("invoke", "stop-loss", None, "nemesis"))
    assert round_trips(test_, "n1") == 200


@needs_root
def test_loss_and_partition_heal_apart(test_, echo):
    loss, partition = LossNemesis(0.3), PartitionNemesis(random.Random(0))
    loss.invoke(test_, Op("invoke", "start-loss", None, "nemesis"))
    partition.invoke(test_, Op("invoke", "start-partition", {"n2": ["n1"]}, "nemesis"))
    loss.invoke(test_, Op("invoke", "stop-loss", None, "nemesis"))
    assert round_trips(test_, "n1", 20) == 0  # the partition is still there
    assert round_trips(test_, "n3") == 200
    partition.teardown(test_)
    assert round_trips(test_, "n1") == 200


ECHO_TIMER = ("import socket, statistics, sys, time\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "s.settimeout(2)\n"
              "times = []\n"
              "for i in range(10):\n"
              "    started = time.monotonic()\n"
              "    s.sendto(str(i).encode(), (sys.argv[1], int(sys.argv[2])))\n"
              "    while s.recv(64) != str(i).encode():\n"
              "        pass\n"
              "    times.append(time.monotonic() - started)\n"
              "print(statistics.median(times))\n")


def round_trip_time(test: RunContext, src: str | None) -> float:
    """The median of ten UDP round trips from ``src`` (None: the controller) to n2."""
    return float(output_on(test, src, ECHO_TIMER, test.remote.peer_address("n2"), str(ECHO_PORT)))


@needs_root
def test_latency_delays_packets_between_nodes_only_and_heals(test_, echo):
    nemesis = LatencyNemesis()
    done = nemesis.invoke(test_, Op("invoke", "start-latency", {"delay": 0.1, "jitter": 0},
                                    "nemesis"))
    assert (done.type, done.value) == ("info", {"delay": 0.1, "jitter": 0})
    # The request waits 100 ms on n2 and the answer 100 ms on n1.
    assert 0.19 <= round_trip_time(test_, "n1") <= 0.4
    assert round_trip_time(test_, None) < 0.05  # the controller's traffic is not delayed
    assert reach(test_, "n3", "n4") == "open"  # TCP works, only later
    nemesis.teardown(test_)
    assert round_trip_time(test_, "n1") < 0.05
    assert not any(daemon_running(test_.remote, n, f"{test_.remote.workdir(n)}/delayer.pid")
                   for n in NODES)


# -- kill nemesis --------------------------------------------------------------------

@needs_root
def test_kill_nemesis_kills_real_processes_and_start_restarts_them(test_):
    nemesis = ProcessNemesis(KILL, HttpDB(), "httpd", random.Random(3), NODES)
    done = nemesis.invoke(test_, Op("invoke", "kill", ["n2", "n4"], "nemesis"))
    assert (done.type, done.value) == ("info", ["n2", "n4"])
    assert reach(test_, "n1", "n2") == "ConnectionRefusedError"
    assert reach(test_, "n1", "n4") == "ConnectionRefusedError"
    assert reach(test_, "n1", "n3") == "open"

    drawn = nemesis.invoke(test_, Op("invoke", "kill", None, "nemesis"))
    assert drawn.value and set(drawn.value) <= set(NODES)

    restarted = nemesis.invoke(test_, Op("invoke", "start", None, "nemesis"))
    assert restarted.value == NODES
    assert all(tcp_open(test_.remote.peer_address(n), PORT) for n in NODES)


@needs_root
def test_kill_nemesis_teardown_restarts_everything(test_):
    nemesis = ProcessNemesis(KILL, HttpDB(), "httpd", random.Random(3), NODES)
    nemesis.invoke(test_, Op("invoke", "kill", NODES, "nemesis"))
    assert not any(tcp_open(test_.remote.peer_address(n), PORT, 0.2) for n in NODES)
    nemesis.teardown(test_)
    assert all(tcp_open(test_.remote.peer_address(n), PORT) for n in NODES)


def _answers(address: str, timeout: float = 0.5) -> bool:
    """Whether the http.server answers a request (a paused one accepts the connection,
    since the kernel completes the handshake, but never replies)."""
    try:
        with socket.create_connection((address, PORT), timeout=timeout) as s:
            s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


@needs_root
def test_pause_nemesis_stops_real_processes_and_resume_lets_them_go_on(test_):
    db = HttpDB()
    nemesis = ProcessNemesis(PAUSE, db, "httpd", random.Random(3), NODES)
    assert nemesis.fs == {"pause", "resume"}
    pid_before = Path(db.paths(test_, "n2")[0]).read_text()
    done = nemesis.invoke(test_, Op("invoke", "pause", ["n2"], "nemesis"))
    assert (done.type, done.value) == ("info", ["n2"])
    assert not _answers(test_.remote.peer_address("n2"))
    assert _answers(test_.remote.peer_address("n3"))
    nemesis.invoke(test_, Op("invoke", "pause", ["n4"], "nemesis"))
    nemesis.teardown(test_)  # heals every node, as a run's teardown does
    assert _answers(test_.remote.peer_address("n2"), timeout=5)
    assert _answers(test_.remote.peer_address("n4"), timeout=5)
    assert Path(db.paths(test_, "n2")[0]).read_text() == pid_before  # the same process


def test_a_system_without_pause_is_a_usage_error():
    with pytest.raises(UsageError, match="system noop cannot be paused: it has no pause"):
        ProcessNemesis(PAUSE, NoopDB(), "noop", random.Random(0), NODES)


def test_a_system_without_kill_is_a_usage_error():
    with pytest.raises(UsageError, match="system noop cannot be killed: it has no kill/start"):
        ProcessNemesis(KILL, NoopDB(), "noop", random.Random(0), NODES)


@given(st.integers(1, 9), st.integers(0, 2**32))
def test_kill_targets_are_distinct_nodes(n, seed):
    nodes = [f"n{i}" for i in range(n)]
    targets = choose_targets(nodes, random.Random(seed))
    assert 1 <= len(targets) <= n
    assert len(set(targets)) == len(targets) and set(targets) <= set(nodes)


# -- packaging -----------------------------------------------------------------------

def offline_test(system: str = "httpd") -> RunContext:
    from harness.cluster.remote import NoopRemote

    return RunContext(Spec(nodes=list(NODES), system=system), NoopRemote(), Path("/tmp"))


@pytest.mark.parametrize("names", [[], ["none"]])
def test_no_faults_means_noop_and_empty_schedule(names):
    package = build_nemesis(names, offline_test(), NoopDB(), random.Random(0))
    assert isinstance(package.nemesis, NoopNemesis)
    assert list(package.schedule) == [] and package.final == []


def test_unknown_fault_lists_the_known_ones():
    with pytest.raises(UsageError) as e:
        build_nemesis(["partition", "meteor"], offline_test(), HttpDB(), random.Random(0))
    assert "meteor" in str(e.value)
    assert all(name in str(e.value) for name in FAULTS)


def test_unsupported_fault_is_refused_at_build_time():
    with pytest.raises(UsageError, match="cannot be killed"):
        build_nemesis(["kill"], offline_test("noop"), NoopDB(), random.Random(0))


def test_schedule_alternates_each_fault_and_is_deterministic():
    def first(seed: int, n: int = 16) -> list[tuple[float, str, object, object]]:
        package = build_nemesis(["partition", "kill"], offline_test(), HttpDB(),
                                random.Random(seed), interval=2.0)
        return [(d, op.f, op.process, op.type) for d, op in islice(package.schedule, n)]

    ops = first(42)
    fs = [f for _, f, _, _ in ops]
    # Each fault's thread alternates its own start and stop; the threads interleave.
    assert [f for f in fs if "partition" in f][:4] == ["start-partition", "stop-partition"] * 2
    assert [f for f in fs if f in ("kill", "start")][:4] == ["kill", "start"] * 2
    assert all(p == "nemesis" and t == "invoke" for _, _, p, t in ops)
    assert all(0 <= d <= 2.5 for d, *_ in ops)
    assert len({d for d, *_ in ops}) > 1  # jittered
    assert ops == first(42)
    assert ops != first(43)


def test_package_composes_dispatches_and_heals():
    package = build_nemesis(["kill", "partition"], offline_test(), HttpDB(), random.Random(0))
    nemesis = package.nemesis
    assert isinstance(nemesis, Nemesis)
    assert nemesis.fs == {"kill", "start", "start-partition", "stop-partition"}
    assert [(op.type, op.f, op.process) for op in package.final] == [
        ("invoke", "stop-partition", "nemesis"), ("invoke", "start", "nemesis")]
    with pytest.raises(ValueError, match="pause"):
        nemesis.invoke(offline_test(), Op("invoke", "pause", None, "nemesis"))


@needs_root
def test_package_teardown_heals_partition_and_kill_after_interruption(test_):
    package = build_nemesis(["partition", "kill"], test_, HttpDB(), random.Random(5))
    package.nemesis.setup(test_)
    package.nemesis.invoke(test_, Op("invoke", "start-partition", None, "nemesis"))
    package.nemesis.invoke(test_, Op("invoke", "kill", ["n1"], "nemesis"))
    assert not all(reachability(test_).values())
    package.nemesis.teardown(test_)  # what the runner does on Ctrl-C mid-fault
    assert all(reachability(test_).values())


class SlowToKillDB(HttpDB):
    """Kills take a while, as when a node is slow to answer: the window for a race."""

    def kill(self, test: RunContext, node: str) -> None:
        time.sleep(0.5)
        super().kill(test, node)


@needs_root
def test_teardown_waits_for_a_kill_in_flight(test_):
    import threading

    nemesis = ProcessNemesis(KILL, SlowToKillDB(), "httpd", random.Random(0), NODES)
    in_flight = threading.Thread(
        target=nemesis.invoke, args=(test_, Op("invoke", "kill", ["n3"], "nemesis")))
    in_flight.start()
    time.sleep(0.1)  # the kill is under way in the interpreter's thread: now Ctrl-C
    nemesis.teardown(test_)
    in_flight.join()
    assert tcp_open(test_.remote.peer_address("n3"), PORT)  # the kill did not land after the heal


def test_kill_aims_only_at_the_nodes_the_system_runs_on():
    package = build_nemesis(["kill"], offline_test(), HttpDB(), random.Random(1), nodes=["n1"])
    kill = package.nemesis.by_f["kill"]
    assert kill.nodes == ["n1"]
    assert all(kill.targets(offline_test()) == ["n1"] for _ in range(20))


class LeaderHttpDB(HttpDB):
    """HttpDB whose n2 claims to lead: the target of the primary-aimed sequence."""

    def primaries(self, test: RunContext) -> list[str]:
        return ["n2"]


@needs_root
def test_isolate_kill_primary_cuts_off_the_primary_then_kills_that_same_node(test_):
    package = build_nemesis(["isolate-kill-primary"], test_, LeaderHttpDB(), random.Random(3))
    package.nemesis.setup(test_)
    try:
        steps = [op for _, op in islice(package.schedule, 4)]
        assert [op.f for op in steps] == ["start-partition", "kill", "stop-partition", "start"]
        cut = package.nemesis.invoke(test_, steps[0])
        assert cut.value == complete_grudge([["n2"], ["n1", "n3", "n4", "n5"]])
        reach_now = reachability(test_)
        assert not any(ok for (a, b), ok in reach_now.items() if "n2" in (a, b))
        assert all(ok for (a, b), ok in reach_now.items() if "n2" not in (a, b))
        killed = package.nemesis.invoke(test_, steps[1])
        assert killed.value == ["n2"]
        assert not tcp_open(test_.remote.peer_address("n2"), PORT)
        assert tcp_open(test_.remote.peer_address("n1"), PORT)
        for op in package.final:  # what the runner does after the clients stop
            package.nemesis.invoke(test_, op)
        assert [op.extra["ends"] for op in package.final] == ["start-partition", "kill"]
        assert all(reachability(test_).values())
        assert tcp_open(test_.remote.peer_address("n2"), PORT)
    finally:
        package.nemesis.teardown(test_)
