"""counterd on loopback: real server processes, real SIGKILL/SIGSTOP, the real client.

Each test starts ``server.py`` as a subprocess on a free loopback port and drives it with
``CounterdClient``, so the variants' guarantees (and the lack of them) and the client's
ok/fail/info classification are observed end to end, not assumed.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.history import FAIL, INFO, INVOKE, OK, Op
from harness.systems.counterd import VARIANTS, make_system
from harness.systems.counterd.adapter import SERVER_SOURCE, health
from harness.systems.counterd.client import CounterdClient
from harness.systems.counterd.server import replay_log

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """One counterd process on loopback; restartable on the same port and data dir."""

    def __init__(self, tmp_path: Path, variant: str, *extra: str) -> None:
        self.port = free_port()
        self.argv = [sys.executable, str(SERVER_SOURCE), "--variant", variant,
                     "--host", HOST, "--port", str(self.port),
                     "--data-dir", str(tmp_path / f"data-{self.port}"), *extra]
        self.log = tmp_path / f"counterd-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while health(HOST, self.port, timeout=0.5) is None:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"counterd did not start: {self.log.read_text()}"
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def servers(tmp_path):
    """Starts servers on demand; kills every one at the end, also on failure."""
    started: list[Server] = []

    def start(variant: str, *extra: str) -> Server:
        server = Server(tmp_path, variant, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


async def call(url: str, f: str, value=None, *, timeout: float = 2.0) -> Op:
    client = CounterdClient(url, timeout)
    try:
        return await client.invoke(None, Op(INVOKE, f, value, 0))
    finally:
        await client.close()


def run(coro):
    return asyncio.run(coro)


async def hammer(url: str, workers: int, *, adds: int | None = None,
                 until: asyncio.Event | None = None) -> Counter:
    """``workers`` concurrent clients adding 1, each ``adds`` times or until ``until``."""
    outcomes: Counter = Counter()

    async def worker() -> None:
        client = CounterdClient(url, 2.0)
        try:
            n = 0
            while (adds is not None and n < adds) or (until is not None and not until.is_set()):
                op = await client.invoke(None, Op(INVOKE, "add", 1, 0))
                outcomes[op.type] += 1
                n += 1
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return outcomes


def read(url: str) -> int:
    op = run(call(url, "read"))
    assert op.type == OK, op
    return op.value


# --- variants ------------------------------------------------------------------------

def test_naive_loses_updates_without_any_fault(servers):
    server = servers("naive", "--window", "0.005")
    outcomes = run(hammer(server.url, 20, adds=15))
    assert outcomes[OK] == 300
    assert read(server.url) < outcomes[OK]


def test_atomic_keeps_every_concurrent_add(servers):
    server = servers("atomic")
    outcomes = run(hammer(server.url, 20, adds=25))
    assert outcomes == Counter({OK: 500})
    assert read(server.url) == 500


def test_atomic_forgets_everything_after_kill(servers):
    server = servers("atomic")
    assert run(hammer(server.url, 5, adds=10))[OK] == 50
    assert read(server.url) == 50
    server.kill()
    server.start()
    assert read(server.url) == 0


def test_durable_keeps_acknowledged_adds_across_sigkill_in_flight(servers):
    server = servers("durable")

    async def load_then_kill() -> Counter:
        stop = asyncio.Event()
        load = asyncio.ensure_future(hammer(server.url, 20, until=stop))
        await asyncio.sleep(0.7)
        server.signal(signal.SIGKILL)  # while ~20 adds are in flight
        await asyncio.sleep(0.2)
        stop.set()
        return await load

    outcomes = run(load_then_kill())
    server.proc.wait()
    server.start()
    final = read(server.url)
    assert outcomes[OK] > 50
    assert outcomes[INFO] > 0, "the kill should have caught adds in flight"
    # Every acknowledged add survived; at most the indefinite ones also took effect.
    assert outcomes[OK] <= final <= outcomes[OK] + outcomes[INFO]
    server.kill()
    server.start()
    assert read(server.url) == final  # replay is stable


def test_replay_drops_and_truncates_a_torn_last_line(tmp_path):
    log = tmp_path / "counter.log"
    log.write_bytes(b"3\n4\n-2\n5")
    assert replay_log(str(log)) == 5
    assert log.read_bytes() == b"3\n4\n-2\n"
    assert replay_log(str(tmp_path / "missing.log")) == 0


def test_async_replica_forwards_serves_stale_reads_and_converges(servers):
    primary = servers("async-replica", "--node", "n1")
    where = f"{HOST}:{primary.port}"
    lagging = servers("async-replica", "--node", "n2", "--primary", where,
                      "--sync-interval", "3600")
    eager = servers("async-replica", "--node", "n3", "--primary", where,
                    "--sync-interval", "0.1")
    deadline = time.monotonic() + 5
    while health(HOST, lagging.port, timeout=0.5)["synced_ago"] is None:
        assert time.monotonic() < deadline, "the replica never copied the primary"
        time.sleep(0.02)

    assert run(hammer(lagging.url, 3, adds=4)) == Counter({OK: 12})
    assert read(primary.url) == 12  # forwarded to the primary
    assert read(lagging.url) == 0  # stale: its only copy predates the adds
    deadline = time.monotonic() + 3
    while read(eager.url) != 12:
        assert time.monotonic() < deadline, "the eager replica did not converge"
        time.sleep(0.05)

    lagging.kill()
    lagging.start()  # copies the primary at start
    deadline = time.monotonic() + 3
    while read(lagging.url) != 12:
        assert time.monotonic() < deadline, "the restarted replica did not converge"
        time.sleep(0.05)

    primary.kill()
    primary.start()  # durable: the replayed count, and replicas still follow it
    assert read(primary.url) == 12


def test_replica_classifies_what_happened_to_a_forwarded_add(servers):
    primary = servers("async-replica")
    replica = servers("async-replica", "--primary", f"{HOST}:{primary.port}",
                      "--forward-timeout", "0.5")
    primary.signal(signal.SIGSTOP)  # connects, never answers: maybe applied
    op = run(call(replica.url, "add", 1))
    assert (op.type, op.error[:8]) == (INFO, "http-504")
    primary.signal(signal.SIGCONT)
    primary.kill()  # refuses: definitely not applied
    op = run(call(replica.url, "add", 1))
    assert (op.type, op.error[:8]) == (FAIL, "http-503")
    assert read(replica.url) in (0, 1)  # the paused add may have landed before the kill


def test_replica_forward_outlives_the_client_so_a_stuck_primary_is_a_timeout(servers):
    primary = servers("async-replica")
    replica = servers("async-replica", "--primary", f"{HOST}:{primary.port}",
                      "--forward-timeout", "5")
    primary.signal(signal.SIGSTOP)
    op = run(call(replica.url, "add", 1, timeout=0.5))
    assert (op.type, op.error) == (INFO, "timeout")


# --- client classification -----------------------------------------------------------

def test_refused_is_fail_for_add_and_read():
    url = f"http://{HOST}:{free_port()}"  # nothing listens there
    op = run(call(url, "add", 1))
    assert (op.type, op.error) == (FAIL, "connection-refused")
    assert run(call(url, "read")).type == FAIL


def test_silent_listener_is_info_for_add_and_fail_for_read():
    with socket.socket() as listener:  # accepts at the kernel level, never replies
        listener.bind((HOST, 0))
        listener.listen(64)
        url = f"http://{HOST}:{listener.getsockname()[1]}"
        started = time.monotonic()
        op = run(call(url, "add", 1, timeout=0.5))
        assert (op.type, op.error) == (INFO, "timeout")
        assert time.monotonic() - started < 2
        op = run(call(url, "read", timeout=0.5))
        assert (op.type, op.error) == (FAIL, "timeout")


def test_paused_server_is_info(servers):
    server = servers("atomic")
    server.signal(signal.SIGSTOP)
    op = run(call(server.url, "add", 1, timeout=0.5))
    assert (op.type, op.error) == (INFO, "timeout")
    server.signal(signal.SIGCONT)
    assert read(server.url) == 1  # the add it held did happen: info was right


def test_connection_closed_after_sending_is_info():
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(8)
        url = f"http://{HOST}:{listener.getsockname()[1]}"

        async def close_after_request() -> Op:
            loop = asyncio.get_running_loop()
            pending = asyncio.ensure_future(call(url, "add", 1))
            conn, _ = await loop.run_in_executor(None, listener.accept)
            await loop.run_in_executor(None, conn.recv, 65536)
            conn.close()
            return await pending

        op = run(close_after_request())
        assert (op.type, op.error) == (INFO, "ServerDisconnectedError: Server disconnected"), op


def test_connect_timeout_is_fail():
    """A full accept queue makes the kernel drop SYNs: the request is never sent."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        try:
            for _ in range(2):  # fill the accept queue (backlog 0 still admits one)
                filler = socket.socket()
                filler.settimeout(0.3)
                fillers.append(filler)
                try:
                    filler.connect(address)
                except OSError:
                    break
            op = run(call(f"http://{HOST}:{address[1]}", "add", 1, timeout=0.6))
        finally:
            for filler in fillers:
                filler.close()
    assert (op.type, op.error) == (FAIL, "connect-timeout")


def test_bad_request_and_unknown_operation_are_fail(servers):
    server = servers("atomic")
    assert run(call(server.url, "add", "one")).type == FAIL
    assert run(call(server.url, "cas", [0, 1])).type == FAIL
    assert read(server.url) == 0


# --- options ---------------------------------------------------------------------------

def test_options_are_validated_with_one_line_messages():
    assert make_system({"variant": "naive", "window": "0.01"}).options.window == 0.01
    assert make_system({}).options.variant in VARIANTS
    for bad in ({"variant": "paxos"}, {"port": "http"}, {"port": "0"}, {"window": "-1"},
                {"timeout": "nan"}, {"sync-interval": "0"}):
        with pytest.raises(UsageError) as e:
            make_system(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="naive, atomic, durable, async-replica"):
        make_system({"variant": "paxos"})


def test_forward_timeout_follows_a_longer_client_timeout():
    assert make_system({"timeout": "4"}).options.forward_timeout == 8.0
    assert make_system({"timeout": "4", "forward-timeout": "9"}).options.forward_timeout == 9.0


def test_server_is_quiet_by_default(servers):
    server = servers("atomic")
    run(hammer(server.url, 2, adds=5))
    assert len(server.log.read_text().splitlines()) == 1  # just the startup line


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_serves_hundreds_of_requests_per_second(servers, variant):
    server = servers(variant, "--window", "0.001")
    started = time.monotonic()
    outcomes = run(hammer(server.url, 10, adds=40))
    rate = 400 / (time.monotonic() - started)
    assert outcomes[OK] == 400
    assert rate > 200, f"{variant}: {rate:.0f} adds/s"

