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

Client errors are classified as Jepsen's are: no connection, or a definite error reply
(``READONLY``, ``LOADING``, ...), is ``fail``; a timeout or a connection lost after the
command was sent is ``info``. The connection never retries a command on its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio.connection

from harness.cluster.remote import require_programs
from harness.errors import UsageError
from harness.history import Op
from harness.systems.daemon_db import DaemonDB, ServerPaths
from harness.systems.options import choices, number

if TYPE_CHECKING:
    from harness.context import Test

KEY = "likes"
CHOICES = {"client": ("incr", "get-set"), "persistence": ("none", "everysec", "always"),
           "replicas": ("none", "async")}


@dataclass(frozen=True)
class RedisOptions:
    """The ``-o KEY=VALUE`` options of the redis system (``-`` and ``_`` alike)."""

    client: str = "incr"
    persistence: str = "none"
    replicas: str = "none"
    port: int = 6379
    timeout: float = 1.0   # seconds per request
    window: float = 0.005  # get-set: seconds between the read and the write-back

    @classmethod
    def parse(cls, options: dict[str, str]) -> RedisOptions:
        """Validates the options; other keys are left to the parts that own them."""
        given = {key.replace("-", "_"): value for key, value in options.items()}
        values: dict[str, Any] = choices("redis", given, CHOICES)
        for name, kind in (("port", int), ("timeout", float), ("window", float)):
            if name in given:
                values[name] = number("redis", name, given[name], kind)
        parsed = cls(**values)
        if not 1 <= parsed.port <= 65535:
            raise UsageError(f"redis option port must be in 1..65535, got {parsed.port}")
        if parsed.timeout <= 0 or parsed.window < 0:
            raise UsageError("redis option timeout must be positive and window >= 0")
        return parsed


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

    def prepare(self, test: Test, node: str, paths: ServerPaths) -> None:
        require_programs(test.remote, node, ["redis-server"], "apt-get install redis-server")

    def ready(self, test: Test, node: str) -> bool:
        client = redis.Redis(*test.remote.endpoint(node, self.options.port),
                             socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


class _Link:
    """One connection to one node, opened when needed and dropped after any error, so an
    error belongs to one command; it never resends a command."""

    def __init__(self, address: str, port: int, timeout: float) -> None:
        self.conn = redis.asyncio.connection.Connection(
            host=address, port=port, socket_timeout=timeout,
            socket_connect_timeout=timeout / 2, retry_on_timeout=False, retry_on_error=[],
            lib_name=None, lib_version=None)

    async def connect(self) -> None:
        if not self.conn.is_connected:
            await self.conn.connect()

    async def command(self, *args: Any) -> Any:
        await self.conn.send_command(*args)
        return await self.conn.read_response()

    async def drop(self) -> None:
        await self.conn.disconnect()


class RedisCounterClient:
    """A worker's client: adds go to the primary's link, reads to its own node's."""

    def __init__(self, options: RedisOptions, writes: _Link, reads: _Link) -> None:
        self.options, self.writes, self.reads = options, writes, reads

    async def invoke(self, test: Test, op: Op) -> Op:
        if op.f == "add":
            return await self._add(op)
        if op.f == "read":
            return await self._read(op)
        return op.fail(f"the redis counter has no operation {op.f!r}")

    async def _add(self, op: Op) -> Op:
        try:
            await self.writes.connect()
        except (redis.RedisError, OSError) as e:
            await self.writes.drop()
            return op.fail(f"no connection: {e}")
        sent = False
        try:
            if self.options.client == "incr":
                sent = True
                await self.writes.command("INCRBY", KEY, op.value)
            else:
                count = int(await self.writes.command("GET", KEY) or 0)
                await asyncio.sleep(self.options.window)
                sent = True
                await self.writes.command("SET", KEY, count + op.value)
            return op.ok(op.value)
        except redis.ResponseError as e:  # the server refused it: nothing was applied
            return op.fail(f"error reply: {e}")
        except (TimeoutError, redis.RedisError, OSError) as e:
            await self.writes.drop()
            return op.info(f"{type(e).__name__}: {e}") if sent else op.fail(str(e))

    async def _read(self, op: Op) -> Op:
        try:
            await self.reads.connect()
            value = await self.reads.command("GET", KEY)
            return op.ok(int(value or 0))
        except redis.ResponseError as e:
            return op.fail(f"error reply: {e}")
        except (TimeoutError, redis.RedisError, OSError, ValueError) as e:
            await self.reads.drop()
            return op.fail(f"{type(e).__name__}: {e}")

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

    async def open_client(self, test: Test, node: str) -> RedisCounterClient:
        o = self.options
        reads = _Link(*test.remote.endpoint(node, o.port), o.timeout)
        primary = test.nodes[0]
        writes = reads if node == primary else _Link(*test.remote.endpoint(primary, o.port),
                                                     o.timeout)
        return RedisCounterClient(o, writes, reads)


def make_system(options: dict[str, str]) -> RedisSystem:
    """The registry's factory: ``-o`` options in, a validated system out."""
    return RedisSystem(RedisOptions.parse(options))
