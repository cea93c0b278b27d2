"""Redis as a "likes" counter: a real server, with the designs people actually ship.

``redis-server`` runs on the nodes as a daemon (bound to the node's address, its data in
the node's workdir) and the counter is one key. The options choose the design:

* ``client=incr`` adds with ``INCRBY``, atomic on the server; ``client=get-set`` reads
  the count, waits ``window`` seconds, and writes back count + delta: the two-request
  race that loses updates with no fault at all.
* ``persistence=none`` keeps the count in memory only (a crash loses it);
  ``everysec`` and ``always`` append every write to an AOF file (``appendfsync``), which
  the server writes before it answers, so it survives ``kill -9`` of the process.
* ``replicas=async``: n1 is the primary and every other node a ``replicaof`` it; a worker
  bound to a replica sends its adds to the primary and reads its own node, which the
  primary updates asynchronously: stale reads, and a primary that restarts empty wipes
  its replicas too.

Client errors follow the shared rule (``harness.client``): no connection, or a definite
error reply (``READONLY``, ``LOADING``, ...), is ``fail``; a timeout or a connection lost
after the command may have been sent is ``info``. The connection never retries a command
on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import redis
import redis.asyncio.connection
from pydantic import model_validator

from harness.client import Request
from harness.cluster.remote import require_programs
from harness.history import Op
from harness.schema import no_effect
from harness.systems.daemon_db import DaemonDB, ServerPaths
from harness.systems.options import Install, Options, Pause, Port, Seconds, declares

if TYPE_CHECKING:
    from harness.context import Test

KEY = "likes"


class RedisOptions(Options):
    """The ``-o KEY=VALUE`` options of the redis system (``-`` and ``_`` alike)."""

    owner: ClassVar[str] = "redis"

    client: Literal["incr", "get-set"] = "incr"
    persistence: Literal["none", "everysec", "always"] = "none"
    replicas: Literal["none", "async"] = "none"
    port: Port = 6379
    install: Install = "none"
    timeout: Seconds = 1.0  # seconds per request
    window: Pause = 0.005   # get-set: seconds between the read and the write-back

    @model_validator(mode="after")
    def _fits_the_client(self) -> RedisOptions:
        if "window" in self.model_fields_set and self.client != "get-set":
            raise no_effect("window", f"with client={self.client}: only get-set waits "
                            "between its read and its write")
        return self


class RedisDB(DaemonDB):
    """redis-server on n1, or on every node with ``replicas=async``; Primaries too."""

    server = "redis"

    def __init__(self, options: RedisOptions) -> None:
        self.options = options

    def ports(self, test: Test) -> list[int]:
        return [self.options.port]

    def nodes(self, test: Test) -> list[str]:
        return list(test.nodes) if self.options.replicas == "async" else test.nodes[:1]

    def primaries(self, test: Test) -> list[str]:
        return test.nodes[:1]

    def argv(self, test: Test, node: str, paths: ServerPaths) -> list[str]:
        o = self.options
        argv = ["redis-server", "--bind", test.remote.peer_address(node), "--port", str(o.port),
                "--dir", paths.data_dir, "--save", "", "--protected-mode", "no",
                "--daemonize", "no", "--appendonly", "no" if o.persistence == "none" else "yes"]
        if o.persistence != "none":
            argv += ["--appendfsync", o.persistence]
        primary = test.nodes[0]
        if o.replicas == "async" and node != primary:
            argv += ["--replicaof", test.remote.peer_address(primary), str(o.port)]
        return argv

    def check_programs(self, test: Test, node: str) -> None:
        require_programs(test.remote, node, ["redis-server"], "redis-server",
                         self.options.install)

    def ready(self, test: Test, node: str) -> bool:
        client = redis.Redis(*test.remote.endpoint(node, self.options.port),
                             socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


def definite(error: BaseException) -> str | None:
    """Redis's allowlist: an error reply (``-ERR``, ``-WRONGTYPE``, ``-READONLY``,
    ``-LOADING``, ...). Redis executes a command whole or not at all, and answers with an
    error only for one it did not execute."""
    if isinstance(error, redis.ResponseError | redis.BusyLoadingError):
        return f"error reply: {error}"
    return None


@contextlib.contextmanager
def _timeouts() -> Iterator[None]:
    """redis-py's timeouts as the builtin TimeoutError, which the shared rule knows."""
    try:
        yield
    except redis.TimeoutError as e:
        raise TimeoutError(str(e)) from e


class _Link:
    """One connection to one node, opened when needed and dropped after any error, so an
    error belongs to one command; it never resends a command."""

    def __init__(self, address: str, port: int, timeout: float) -> None:
        self.conn = redis.asyncio.connection.Connection(
            host=address, port=port, socket_timeout=timeout,
            socket_connect_timeout=timeout / 2, retry_on_timeout=False, retry_on_error=[])

    async def connect(self) -> None:
        if not self.conn.is_connected:
            with _timeouts():
                await self.conn.connect()

    async def command(self, *args: Any) -> Any:
        with _timeouts():
            await self.conn.send_command(*args)
            return await self.conn.read_response()

    async def drop(self) -> None:
        await self.conn.disconnect(nowait=True)  # a dead peer cannot hold up the close


class RedisCounterClient:
    """A worker's client: adds go to the primary's link, reads to its own node's.

    Classified by the shared rule (``harness.client``): an add is ``fail`` when its link
    could not connect, when the read of a get-set failed (nothing was written yet), or on
    an error reply; once its write may have been sent, anything else is ``info``.
    """

    def __init__(self, options: RedisOptions, writes: _Link, reads: _Link) -> None:
        self.options, self.writes, self.reads = options, writes, reads

    async def invoke(self, test: Test, op: Op) -> Op:
        if op.f == "add":
            return await self._add(op)
        if op.f == "read":
            return await self._read(op)
        return op.fail(f"the redis counter has no operation {op.f!r}")

    async def _add(self, op: Op) -> Op:
        request = Request(op, definite)
        try:
            await self.writes.connect()
            if self.options.client == "incr":
                request.sending()
                await self.writes.command("INCRBY", KEY, op.value)
            else:
                count = int(await self.writes.command("GET", KEY) or 0)
                await asyncio.sleep(self.options.window)
                request.sending()
                await self.writes.command("SET", KEY, count + op.value)
        except Exception as e:
            await self.writes.drop()
            return request.completion(e)
        return op.ok(op.value)

    async def _read(self, op: Op) -> Op:
        request = Request(op, effects=False)
        try:
            await self.reads.connect()
            return op.ok(int(await self.reads.command("GET", KEY) or 0))
        except Exception as e:
            await self.reads.drop()
            return request.completion(e)

    async def close(self) -> None:
        await self.writes.drop()
        if self.reads is not self.writes:
            await self.reads.drop()


class RedisSystem:
    name = "redis"

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._db = RedisDB(options)
        # Replicas reconnect and resynchronize with the primary after a heal.
        self.recovery_time = 4.0 if options.replicas == "async" else 1.0

    def db(self, test: Test) -> RedisDB:
        return self._db

    def serving_nodes(self, test: Test) -> list[str]:
        return self._db.nodes(test)

    @property
    def clients(self) -> dict[str, Any]:
        """A client per workload (``harness.pairing``): the counter's below, the
        register and set clients of ``redis_register``."""
        from harness.systems import redis_register  # it imports this module

        return {"counter": self.open_client, **redis_register.clients(self)}

    async def open_client(self, test: Test, node: str) -> RedisCounterClient:
        o = self.options
        reads = _Link(*test.remote.endpoint(node, o.port), o.timeout)
        primary = test.nodes[0]
        writes = reads if node == primary else _Link(*test.remote.endpoint(primary, o.port),
                                                     o.timeout)
        return RedisCounterClient(o, writes, reads)


@declares(RedisOptions)
def make_system(options: dict[str, Any]) -> RedisSystem:
    """The registry's factory: ``-o`` options in, a validated system out."""
    return RedisSystem(RedisOptions.parse(options))
