"""A user's own system: memcached (``apt-get install memcached``), served by one node.

Memcached does not replicate, so one server on n1 serves every client. Each client follows
splitbrain's ok/fail/info rule (``harness.client``): ``request.sending()`` marks the moment
a request with effects may reach the server; memcached's ``NOT_STORED``/``EXISTS``/
``NOT_FOUND`` replies say it did not apply the request (a definite ``fail``); any other
error after that moment is ``info``. Run it from the repository root::

    splitbrain run --system examples.memcached:make_system --workload register --nemesis none
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from harness.client import Request
from harness.history import Op
from harness.systems.daemon_db import DaemonDB, ServerPaths

PORT = 11211
DEFINITE = (b"NOT_STORED", b"EXISTS", b"NOT_FOUND")  # memcached did not apply the request


class MemcachedDB(DaemonDB):
    server = "memcached"

    def nodes(self, test: Any) -> list[str]:
        return test.nodes[:1]

    def argv(self, test: Any, node: str, paths: ServerPaths) -> list[str]:
        return ["memcached", "-u", "root", "-l", "0.0.0.0", "-p", str(PORT), "-U", "0"]

    def ready(self, test: Any, node: str) -> bool:
        try:
            socket.create_connection(test.remote.endpoint(node, PORT), timeout=1).close()
            return True
        except OSError:
            return False


class MemcachedClient:
    """The counter is ``likes`` (``incr``; a counter lost in a crash reads 0 and starts
    again with ``add``); the register is ``register`` (``gets``, ``set``, and ``cas`` with
    the token ``gets`` returned, or ``add`` when the register is still empty); the list
    of the ``append`` workload is ``list``."""

    def __init__(self, key: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.key, self.reader, self.writer = key, reader, writer

    async def invoke(self, test: Any, op: Op) -> Op:
        if op.f not in ("read", "write", "cas", "add", "append"):
            return op.fail(f"memcached has no operation {op.f!r}")
        request = Request(op, effects=op.f != "read")
        try:
            return await getattr(self, op.f)(op, request)
        except Exception as e:
            return request.completion(e)

    async def read(self, op: Op, request: Request) -> Op:
        value = (await self.gets())[0]
        if self.key == "likes":
            return op.ok(int(value or 0))
        if self.key == "list":
            return op.ok([int(v) for v in (value or "").split()])
        return op.ok(None if value is None else int(value))

    async def write(self, op: Op, request: Request) -> Op:
        return await self.store(op, request, f"set {self.key} 0 0", op.value)

    async def cas(self, op: Op, request: Request) -> Op:
        old, new = op.value
        value, token = await self.gets()
        if value != (None if old is None else str(old)):
            return op.fail("cas: the value differed")  # nothing was sent to change it
        return await self.store(op, request, f"cas {self.key} 0 0" if token else
                                f"add {self.key} 0 0", new, token)

    async def add(self, op: Op, request: Request) -> Op:
        request.sending()
        reply = (await self.call(f"incr {self.key} {op.value}"))[0]
        if reply == b"NOT_FOUND":
            return await self.store(op, request, f"add {self.key} 0 0", op.value)
        if not reply.isdigit():
            raise RuntimeError(f"unexpected reply {reply[:80]!r}")
        return op.ok(op.value)

    async def append(self, op: Op, request: Request) -> Op:
        """The ``append`` workload (examples/workload.py): the list is numbers and spaces;
        ``append`` to a list not there yet is ``NOT_STORED``, so the first one ``add``s."""
        data = f"{op.value} "
        request.sending()
        reply = (await self.call(f"append {self.key} 0 0 {len(data)}", data))[0]
        if reply == b"NOT_STORED":
            return await self.store(op, request, f"add {self.key} 0 0", data)
        if reply != b"STORED":
            raise RuntimeError(f"unexpected reply {reply[:80]!r}")  # info: it may have applied
        return op.ok(op.value)

    async def store(self, op: Op, request: Request, command: str, value: Any,
                    token: str | None = None) -> Op:
        data = str(value)
        request.sending()
        reply = (await self.call(f"{command} {len(data)} {token or ''}".rstrip(), data))[0]
        if reply in DEFINITE:
            return op.fail(reply.decode().lower())
        if reply != b"STORED":
            raise RuntimeError(f"unexpected reply {reply[:80]!r}")  # info: it may have applied
        return op.ok(op.value)

    async def gets(self) -> tuple[str | None, str | None]:
        """The value and its cas token, or (None, None) when the key does not exist."""
        reply = await self.call(f"gets {self.key}")
        return (reply[1].decode(), reply[0].split()[4].decode()) if len(reply) > 2 else \
            (None, None)

    async def call(self, line: str, data: str | None = None) -> list[bytes]:
        self.writer.write(f"{line}\r\n".encode() + (b"" if data is None else
                                                     f"{data}\r\n".encode()))
        reply = [await self.reader.readline()]
        while reply[0].startswith(b"VALUE") and reply[-1] != b"END\r\n":
            if not reply[-1]:
                raise ConnectionError("the connection closed mid-reply")
            reply.append(await self.reader.readline())
        if not reply[0]:
            raise ConnectionError("the connection closed")
        return [line.rstrip(b"\r\n") for line in reply]

    async def close(self) -> None:
        self.writer.close()


class Memcached:
    name = "memcached"
    recovery_time = 0.5

    def __init__(self, options: dict[str, Any]) -> None:
        self.clients = {"counter": self.opener("likes"), "register": self.opener("register"),
                        "append": self.opener("list")}

    def db(self, test: Any) -> MemcachedDB:
        return MemcachedDB()

    def serving_nodes(self, test: Any) -> list[str]:
        return test.nodes[:1]

    def opener(self, key: str) -> Any:
        async def open_client(test: Any, node: str) -> MemcachedClient:
            return MemcachedClient(key, *await asyncio.open_connection(
                *test.remote.endpoint(node, PORT)))
        return open_client

    async def open_client(self, test: Any, node: str) -> MemcachedClient:
        return await self.clients["counter"](test, node)


def make_system(options: dict[str, Any]) -> Memcached:
    return Memcached(options)
