"""The client conformance kit: every bundled client, through every way a request fails.

Each real server (counterd, redis-server, PostgreSQL, etcd) runs in a private network
namespace behind a TCP proxy (``tests/conformance``) that refuses the connect,
black-holes it, drops the reply after the server applied the request, holds the reply
past the client's timeout, or resets the connection mid-reply. For every client design
and every fault, a worker adds 1 (acknowledged), a second worker adds 1 through the
fault, and the server's true count is read directly. The test asserts the completion the
shared rule demands (``harness.client``: ``fail`` only when nothing can have been
applied, ``info`` otherwise), that the fault did what it says (the count moved exactly
when the completion says it may have), and that the bundled checkers, given that
history and the true final count, say VALID. A read fails under every fault.
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio

from checkers.counter import CounterChecker
from checkers.linearizable import Linearizable
from checkers.models import Counter
from harness.client import Client
from harness.history import FAIL, INFO, INVOKE, OK, Op
from harness.systems.counterd.adapter import CounterdOptions, CounterdSystem
from harness.systems.etcd_counter import EtcdOptions, EtcdSystem
from harness.systems.postgres_counter import PostgresOptions, PostgresSystem
from harness.systems.redis_counter import KEY as REDIS_KEY
from harness.systems.redis_counter import RedisOptions, RedisSystem
from tests.conformance.proxy import FAULTS, HOST, FaultProxy, Trigger
from tests.conformance.sandbox import Sandbox
from tests.conformance.servers import SERVERS, Server

pytestmark = pytest.mark.root

TIMEOUT = 1.0  # the faulted client's own timeout: short, so that held replies cost little
PATIENT = 10.0  # the other clients' timeout: a loaded machine must not fail a test
STAND_IN = SimpleNamespace(nodes=["n1"],
                           remote=SimpleNamespace(endpoint=lambda node, port: (HOST, port)))
"""The two things ``open_client`` asks of a test: its nodes and a port's endpoint."""

EXPECTED_ADD = {"refuse": FAIL, "black-hole": FAIL, "drop-reply": INFO, "hold-reply": INFO,
                "reset-mid-reply": INFO}
INSTALLED = {
    "counterd": True,
    "redis": shutil.which("redis-server") is not None,
    "etcd": shutil.which("etcd") is not None,
    "postgres": bool(glob.glob("/usr/lib/postgresql/*/bin/postgres")),
}


@dataclass(frozen=True)
class Design:
    """One client design of one system, opened against a port (the proxy's)."""

    name: str
    server: str
    open: Callable[[int, float], Awaitable[Client]]
    read_request: bytes
    """Bytes only the read's request carries: a read's faults fire on its reply."""

    def __str__(self) -> str:
        return self.name


async def _counterd(port: int, timeout: float) -> Client:
    system = CounterdSystem(CounterdOptions(variant="durable", port=port, timeout=timeout))
    return await system.open_client(STAND_IN, "n1")  # type: ignore[arg-type]


def _redis(design: str) -> Callable[[int, float], Awaitable[Client]]:
    async def open_client(port: int, timeout: float) -> Client:
        window = {"window": 0.0} if design == "get-set" else {}
        system = RedisSystem(RedisOptions.parse({"client": design, "port": port,
                                                 "timeout": timeout, **window}))
        return await system.open_client(STAND_IN, "n1")  # type: ignore[arg-type]
    return open_client


def _etcd(design: str) -> Callable[[int, float], Awaitable[Client]]:
    async def open_client(port: int, timeout: float) -> Client:
        system = EtcdSystem(EtcdOptions.parse({"client": design, "client-port": port,
                                               "timeout": timeout}))
        return await system.open_client(STAND_IN, "n1")  # type: ignore[arg-type]
    return open_client


def _postgres(design: str) -> Callable[[int, float], Awaitable[Client]]:
    async def open_client(port: int, timeout: float) -> Client:
        system = PostgresSystem(PostgresOptions.parse({"client": design, "port": port,
                                                       "timeout": timeout}))
        return await system.open_client(STAND_IN, "n1")  # type: ignore[arg-type]
    return open_client


DESIGNS = [
    Design("counterd", "counterd", _counterd, b"GET /count"),
    Design("redis-incr", "redis", _redis("incr"), b"GET"),
    Design("redis-get-set", "redis", _redis("get-set"), b"GET"),
    Design("etcd-cas", "etcd", _etcd("cas"), b"/v3/kv/range"),
    Design("etcd-get-put", "etcd", _etcd("get-put"), b"/v3/kv/range"),
    Design("postgres-update", "postgres", _postgres("update"), b"SELECT n"),
    Design("postgres-read-modify-write", "postgres", _postgres("read-modify-write"),
           b"SELECT n"),
]
BY_NAME = {d.name: d for d in DESIGNS}
READ_DESIGNS = [d for d in DESIGNS if d.name in
                ("counterd", "redis-incr", "etcd-cas", "postgres-update")]  # one per client


def designs(chosen: list[Design]) -> list[Any]:
    return [pytest.param(d, id=d.name, marks=pytest.mark.skipif(
        not INSTALLED[d.server], reason=f"{d.server} is not installed (.ci/setup)"))
        for d in chosen]


@pytest.fixture(scope="module")
def sandbox():
    if os.geteuid() != 0:
        pytest.skip("a private network namespace needs root")
    box = Sandbox()
    yield box
    box.close()


@pytest.fixture(scope="module")
def servers(sandbox):
    """Starts each server the first time a test needs it; stops every one at the end."""
    started: dict[str, Server] = {}

    def get(name: str) -> Server:
        if name not in started:
            started[name] = SERVERS[name]()
            sandbox.run(started[name].start())
        return started[name]

    yield get
    for server in started.values():
        sandbox.run(server.close())


class Recorder:
    """A history as the interpreter records it: invocation, then completion."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t0 = time.monotonic_ns()

    def record(self, op: Op) -> Op:
        op.index, op.time = len(self.ops), time.monotonic_ns() - self.t0
        self.ops.append(op)
        return op

    async def invoke(self, client: Client, process: int, f: str, value: Any = None) -> Op:
        invocation = self.record(Op(INVOKE, f, value, process))
        return self.record(await client.invoke(None, invocation))  # type: ignore[arg-type]

    def final_read(self, process: int, value: int) -> None:
        self.record(Op(INVOKE, "read", None, process, extra={"final": True, "node": "n1"}))
        self.record(Op(OK, "read", value, process, extra={"final": True, "node": "n1"}))


def verdicts(history: list[Op], initial: int) -> dict[str, Any]:
    """What the counter workload's two checkers say of ``history``."""
    return {"counter": CounterChecker(initial).check(None, history)["valid"],
            "linearizable": Linearizable(Counter(initial)).check(None, history)["valid"]}


@dataclass
class Outcome:
    op: Op
    history: Recorder
    initial: int
    final: int
    fired: bool


async def through_fault(design: Design, server: Server, fault: str, f: str,
                        trigger: Trigger | None = None) -> Outcome:
    """One acknowledged add, then ``f`` through ``fault``, then the true count.

    The default trigger fires on the first reply the server sends once it has applied
    the second add (a read's: on the reply to the read's request)."""
    proxy = await FaultProxy(server.port).start()
    history = Recorder()
    try:
        initial = await server.read()
        warm = await design.open(proxy.port, PATIENT)
        try:
            assert (await history.invoke(warm, 0, "add", 1)).type == OK
        finally:
            await warm.close()

        async def applied(sent: bytes) -> bool:
            return await server.read() > initial + 1

        async def read_sent(sent: bytes) -> bool:
            return design.read_request in sent

        await proxy.arm(fault, trigger or (applied if f == "add" else read_sent))
        client = await design.open(proxy.port, TIMEOUT)
        try:
            op = await history.invoke(client, 1, f, 1 if f == "add" else None)
        finally:
            await client.close()
    finally:
        await proxy.close()
    final = await server.read()
    history.final_read(2, final)
    return Outcome(op, history, initial, final, proxy.fired)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("design", designs(DESIGNS))
def test_an_add_is_fail_only_when_it_cannot_have_happened(sandbox, servers, design, fault):
    out = sandbox.run(through_fault(design, servers(design.server), fault, "add"))
    assert out.fired, f"the proxy never got to {fault}"
    assert out.op.type == EXPECTED_ADD[fault], out.op
    # The fault did what it says: refused or black-holed adds never reached the server;
    # the others were applied, and only the reply went wrong.
    assert out.final == out.initial + (2 if out.op.type == INFO else 1)
    assert verdicts(out.history.ops, out.initial) == {"counter": True, "linearizable": True}
    if fault == "refuse":
        assert out.op.error == "connection-refused"
    elif fault == "black-hole":
        assert out.op.error == "connect-timeout"


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("design", designs(READ_DESIGNS))
def test_a_read_fails_whatever_goes_wrong(sandbox, servers, design, fault):
    out = sandbox.run(through_fault(design, servers(design.server), fault, "read"))
    assert out.fired
    assert out.op.type == FAIL, out.op
    assert out.final == out.initial + 1
    assert verdicts(out.history.ops, out.initial) == {"counter": True, "linearizable": True}


@pytest.mark.parametrize("design", designs([BY_NAME["postgres-update"],
                                            BY_NAME["postgres-read-modify-write"]]))
def test_postgres_lost_reply_after_commit_is_info_and_valid(sandbox, servers, design):
    """Issue 6's scenario: the server commits, the connection closes before the reply.

    asyncpg raises ``ConnectionDoesNotExistError``, a ``PostgresError``; recorded as
    ``fail`` (as it once was), the checkers call the correct server broken."""
    out = sandbox.run(through_fault(design, servers("postgres"), "drop-reply", "add"))
    assert out.fired and out.final == out.initial + 2
    assert (out.op.type, out.op.error) == (INFO, "ConnectionDoesNotExistError: "
                                           "connection was closed in the middle of operation")
    assert verdicts(out.history.ops, out.initial) == {"counter": True, "linearizable": True}

    as_fail = [op if op is not out.op else out.op.complete(FAIL, error=out.op.error)
               for op in out.history.ops]
    assert verdicts(as_fail, out.initial) == {"counter": False, "linearizable": False}
    anomalies = CounterChecker(out.initial).check(None, as_fail)["anomalies"]
    assert "duplicate-update" in {a["type"] for a in anomalies}


@pytest.mark.skipif(not INSTALLED["postgres"], reason="postgres is not installed (.ci/setup)")
def test_postgres_lost_reply_before_commit_is_fail(sandbox, servers):
    """A transaction whose connection dies before COMMIT was sent commits nothing."""
    design = BY_NAME["postgres-read-modify-write"]

    async def update_sent(sent: bytes) -> bool:
        return b"UPDATE likes SET n = $1" in sent

    out = sandbox.run(through_fault(design, servers("postgres"), "drop-reply", "add",
                                    update_sent))
    assert out.fired and out.op.type == FAIL, out.op
    assert out.final == out.initial + 1
    assert verdicts(out.history.ops, out.initial) == {"counter": True, "linearizable": True}


@pytest.mark.skipif(not INSTALLED["redis"], reason="redis-server is not installed (.ci/setup)")
def test_a_redis_error_reply_is_on_the_allowlist(sandbox, servers):
    """INCRBY on a value that is not a number: the real server refuses it, and says so."""
    server = servers("redis")

    async def add_to_text() -> Op:
        direct = redis.asyncio.Redis(host=HOST, port=server.port)
        count = await direct.get(REDIS_KEY)
        await direct.set(REDIS_KEY, "many")
        client = await BY_NAME["redis-incr"].open(server.port, PATIENT)
        try:
            return await client.invoke(None, Op(INVOKE, "add", 1, 0))  # type: ignore[arg-type]
        finally:
            await client.close()
            assert await direct.get(REDIS_KEY) == b"many"  # not applied
            await direct.set(REDIS_KEY, count or 0)
            await direct.aclose()

    op = sandbox.run(add_to_text())
    assert (op.type, op.error) == (FAIL, "error reply: value is not an integer or out of range")
