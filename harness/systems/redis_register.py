"""Redis's clients for the register and set workloads.

The register is the string key ``register`` holding JSON text. A write is ``SET``; a
cas ``[old, new]`` is a Lua script (``EVAL``), which Redis runs atomically: it sets
``new`` only if the key holds ``old`` (or, for a null ``old``, does not exist) and answers
0 when it did not, a definite ``fail``. The set is the Redis set ``set``: ``SADD`` adds,
``SMEMBERS`` reads. As for the counter, writes go to the primary (n1) and reads to the
worker's own node, so with ``replicas=async`` reads are served by replicas that lag.

Errors follow the shared rule (``harness.client``) with the counter's allowlist (an
error reply is definite): no connection or an error reply is ``fail``, a timeout or a
lost connection after a write may have been sent is ``info``, and every read error is
``fail``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from harness.client import Request
from harness.history import Op
from harness.systems.redis_counter import RedisOptions, _Link, definite

if TYPE_CHECKING:
    from harness.context import Test
    from harness.pairing import ClientFactory

REGISTER_KEY, SET_KEY = "register", "set"
CAS_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if (ARGV[1] == '' and v == false) or (ARGV[1] ~= '' and v == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RedisRegisterClient:
    """``read``, ``write`` and ``cas`` on the register, ``add`` and ``read`` on the set:
    one class, since both are a write link to the primary and a read link."""

    def __init__(self, kind: str, writes: _Link, reads: _Link) -> None:
        self.kind, self.writes, self.reads = kind, writes, reads

    async def invoke(self, test: Test, op: Op) -> Op:
        if op.f == "read":
            return await self._read(op)
        if self.kind == "register" and op.f == "write":
            return await self._write(op, "SET", REGISTER_KEY, json.dumps(op.value))
        if self.kind == "register" and op.f == "cas":
            old, new = op.value
            return await self._write(op, "EVAL", CAS_SCRIPT, 1, REGISTER_KEY,
                                     "" if old is None else json.dumps(old), json.dumps(new))
        if self.kind == "set" and op.f == "add":
            return await self._write(op, "SADD", SET_KEY, json.dumps(op.value))
        return op.fail(f"the redis {self.kind} has no operation {op.f!r}")

    async def _write(self, op: Op, *command: Any) -> Op:
        request = Request(op, definite)
        try:
            await self.writes.connect()
            request.sending()
            reply = await self.writes.command(*command)
        except Exception as e:
            await self.writes.drop()
            return request.completion(e)
        if op.f == "cas" and reply == 0:
            return op.fail("cas: the value differed")
        return op.ok(op.value)

    async def _read(self, op: Op) -> Op:
        request = Request(op, effects=False)
        try:
            await self.reads.connect()
            if self.kind == "set":
                members = await self.reads.command("SMEMBERS", SET_KEY)
                return op.ok(sorted(json.loads(m) for m in members))
            value = await self.reads.command("GET", REGISTER_KEY)
        except Exception as e:
            await self.reads.drop()
            return request.completion(e)
        return op.ok(None if value is None else json.loads(value))

    async def close(self) -> None:
        await self.writes.drop()
        if self.reads is not self.writes:
            await self.reads.drop()


def clients(system: Any) -> dict[str, ClientFactory]:
    """The register and set clients of a redis system (its ``options`` are redis's)."""
    options: RedisOptions = system.options

    def factory(kind: str) -> ClientFactory:
        async def open_client(test: Test, node: str) -> RedisRegisterClient:
            reads = _Link(*test.remote.endpoint(node, options.port), options.timeout)
            primary = test.nodes[0]
            writes = reads if node == primary else _Link(
                *test.remote.endpoint(primary, options.port), options.timeout)
            return RedisRegisterClient(kind, writes, reads)
        return open_client

    return {"register": factory("register"), "set": factory("set")}
