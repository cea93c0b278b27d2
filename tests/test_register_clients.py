"""The register, kv and set clients against the real servers, in a private namespace.

Each server (redis-server, etcd, PostgreSQL) runs as in the client conformance kit
(``tests/conformance``), reached directly. The tests pin each primitive's semantics
(a cas that compares and fails, a null ``old``, sets read back whole), then let several
clients race through a workload's own generator and hand the history to the workload's
own checker, which must say valid: these servers, reached this way, are correct. Through
the kit's proxy, a write whose connection is refused is ``fail`` and one whose reply is
lost after the server applied it is ``info``.
"""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
import redis.asyncio

from harness.generator_core import GenContext, worker_rng
from harness.history import FAIL, INFO, INVOKE, OK, Op
from harness.pairing import clients_of
from harness.systems.etcd_counter import EtcdOptions, EtcdSystem
from harness.systems.postgres_counter import USER as PG_USER
from harness.systems.postgres_counter import PostgresOptions, PostgresSystem
from harness.systems.postgres_register import SCHEMA
from harness.systems.redis_counter import RedisOptions, RedisSystem
from tests.conformance.proxy import FaultProxy
from tests.conformance.sandbox import Sandbox
from tests.conformance.servers import HOST, SERVERS, _http_json
from tests.test_client_conformance import INSTALLED
from workloads import kv, register
from workloads import set as set_workload

pytestmark = pytest.mark.root
TIMEOUT = 10.0  # generous: a loaded machine must not fail these tests


def stand_in(port: int) -> Any:
    """The two things a client factory asks of a test: its nodes and an endpoint."""
    return SimpleNamespace(nodes=["n1"], remote=SimpleNamespace(
        endpoint=lambda node, _port: (HOST, port)))


def system_of(name: str, port: int, timeout: float = TIMEOUT) -> Any:
    if name == "etcd":
        return EtcdSystem(EtcdOptions(timeout=timeout))
    if name == "redis":
        return RedisSystem(RedisOptions(port=port, timeout=timeout))
    return PostgresSystem(PostgresOptions(timeout=timeout))


@pytest.fixture(scope="module")
def sandbox():
    if os.geteuid() != 0:
        pytest.skip("a private network namespace needs root")
    box = Sandbox()
    yield box
    box.close()


@pytest.fixture(scope="module")
def servers(sandbox):
    started: dict[str, Any] = {}

    def get(name: str) -> Any:
        if not INSTALLED[name]:
            pytest.skip(f"{name} is not installed (.ci/setup)")
        if name not in started:
            server = SERVERS[name]()
            sandbox.run(server.start())
            if name == "postgres":
                sandbox.run(_schema(server.port))
            started[name] = server
        return started[name]

    yield get
    for server in started.values():
        sandbox.run(server.close())


async def _schema(port: int) -> None:
    conn = await asyncpg.connect(host=HOST, port=port, user=PG_USER, database=PG_USER)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


async def _reset(name: str, port: int) -> None:
    """Back to the initial state: a null register, an empty set, no kv keys."""
    if name == "etcd":
        await asyncio.to_thread(_http_json, port, "POST", "/v3/kv/deleterange",
                                {"key": "AA==", "range_end": "AA=="})  # every key
    elif name == "redis":
        direct = redis.asyncio.Redis(host=HOST, port=port)
        await direct.flushall()
        await direct.aclose()
    else:
        conn = await asyncpg.connect(host=HOST, port=port, user=PG_USER, database=PG_USER)
        await conn.execute("UPDATE register SET value = NULL; DELETE FROM elements;")
        await conn.close()


async def _open(name: str, workload: str, port: int, timeout: float = TIMEOUT) -> Any:
    return await clients_of(system_of(name, port, timeout))[workload](stand_in(port), "n1")


async def _ops(name: str, workload: str, port: int, ops: list[tuple[str, Any]]) -> list[Op]:
    client = await _open(name, workload, port)
    try:
        return [await client.invoke(None, Op(INVOKE, f, v, 0)) for f, v in ops]
    finally:
        await client.close()


@pytest.mark.parametrize("name", ["etcd", "redis", "postgres"])
def test_register_primitives(sandbox, servers, name):
    port = servers(name).port
    done = sandbox.run(_ops(name, "register", port, [
        ("read", None), ("cas", [5, 6]), ("cas", [None, 1]), ("read", None),
        ("write", 2), ("cas", [1, 3]), ("cas", [2, 3]), ("read", None)]))
    assert [(op.type, op.value) for op in done] == [
        (OK, None), (FAIL, None), (OK, [None, 1]), (OK, 1),
        (OK, 2), (FAIL, None), (OK, [2, 3]), (OK, 3)]
    assert done[1].error == "cas: the value differed"


def test_kv_keys_are_independent(sandbox, servers):
    port = servers("etcd").port
    done = sandbox.run(_ops("etcd", "kv", port, [
        ("write", ["a", 1]), ("cas", ["b", [None, 2]]), ("read", ["a", None]),
        ("read", ["b", None]), ("read", ["c", None]), ("cas", ["a", [2, 3]])]))
    assert [(op.type, op.value) for op in done] == [
        (OK, ["a", 1]), (OK, ["b", [None, 2]]), (OK, ["a", 1]), (OK, ["b", 2]),
        (OK, ["c", None]), (FAIL, None)]


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_set_primitives(sandbox, servers, name):
    port = servers(name).port
    done = sandbox.run(_ops(name, "set", port, [("read", None), ("add", 7), ("add", 3),
                                                ("read", None)]))
    assert [(op.type, op.value) for op in done] == [
        (OK, []), (OK, 7), (OK, 3), (OK, [3, 7])]


async def _race(name: str, workload: Any, port: int, workers: int, ops: int) -> list[Op]:
    """``workers`` clients drawing ``ops`` ops each from the workload's generator."""
    history: list[Op] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def record(op: Op) -> None:
        op.index, op.time = len(history), int((loop.time() - t0) * 1e9)
        history.append(op)

    async def worker(w: int) -> None:
        ctx = GenContext(worker_rng(1, w), w, "n1", 0.0)
        client = await _open(name, workload.name, port)
        process = w
        try:
            for _ in range(ops):
                ctx.process = process
                spec = workload.generator.op(ctx)
                assert spec is not None and spec[0] in workload.operations
                invoke = Op(INVOKE, spec[0], spec[1], process)
                record(invoke)
                done = await client.invoke(None, invoke)
                done.process = process
                record(done)
                if done.type == INFO:
                    process += workers
        finally:
            await client.close()

    await asyncio.gather(*(worker(w) for w in range(workers)))
    if workload.final is not None:
        client = await _open(name, workload.name, port)
        try:
            invoke = Op(INVOKE, *workload.final, 10**6)
            record(invoke)
            record(await client.invoke(None, invoke))
        finally:
            await client.close()
    return history


@pytest.mark.parametrize("name, make", [
    ("etcd", register.make_workload), ("etcd", kv.make_workload),
    ("redis", register.make_workload), ("redis", set_workload.make_workload),
    ("postgres", register.make_workload), ("postgres", set_workload.make_workload),
], ids=["etcd-register", "etcd-kv", "redis-register", "redis-set", "postgres-register",
        "postgres-set"])
def test_a_correct_server_under_racing_clients_is_valid(sandbox, servers, name, make):
    workload = make({})
    sandbox.run(_reset(name, servers(name).port))
    history = sandbox.run(_race(name, workload, servers(name).port, workers=4, ops=60))
    completions = [op for op in history if op.type != INVOKE]
    assert sum(op.type == OK for op in completions) > len(completions) // 2
    result = workload.checker.check(None, history)
    assert result["valid"] is True, result


@pytest.mark.parametrize("name", ["etcd", "redis", "postgres"])
def test_a_write_is_fail_when_refused_and_info_when_its_reply_is_lost(sandbox, servers,
                                                                      name):
    server = servers(name)

    async def through(fault: str, value: int) -> tuple[Op, Any]:
        proxy = await FaultProxy(server.port).start()
        try:
            async def applied(sent: bytes) -> bool:
                direct = await _open(name, "register", server.port)
                try:
                    read = await direct.invoke(None, Op(INVOKE, "read", None, 9))
                finally:
                    await direct.close()
                return read.value == value

            await proxy.arm(fault, applied)
            client = await _open(name, "register", proxy.port, timeout=1.0)
            try:
                op = await client.invoke(None, Op(INVOKE, "write", value, 0))
            finally:
                await client.close()
        finally:
            await proxy.close()
        after = await _open(name, "register", server.port)
        try:
            return op, (await after.invoke(None, Op(INVOKE, "read", None, 9))).value
        finally:
            await after.close()

    refused, now = sandbox.run(through("refuse", 101))
    assert refused.type == FAIL and now != 101
    lost, now = sandbox.run(through("drop-reply", 102))
    assert lost.type == INFO and now == 102
