"""etcd's clients for the register and kv workloads: reads, writes and compare-and-set.

A register is one etcd key (``register``); the kv workload's key ``k`` is ``kv/k``.
Values are JSON text. A cas ``[old, new]`` is one transaction that compares the key's
value with ``old`` (for a null ``old``: its create revision with 0, i.e. the key does
not exist) and puts ``new`` only if it holds; a transaction that reports
``succeeded: false`` applied nothing, so that cas is a ``fail``. Reads honour
``reads=linearizable|serializable`` as the counter's do: a serializable read answers from
the member's own copy, which a partition leaves behind.

Errors follow the shared rule (``harness.client``) with the counter's allowlist
(:func:`harness.systems.etcd_counter.definite`): every read error is ``fail``; a write or
cas that may have been sent is ``info`` unless etcd refused it before proposing it.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from harness.client import Request
from harness.history import Op
from harness.systems.etcd_counter import EtcdOptions, definite
from harness.systems.http_link import HttpLink

if TYPE_CHECKING:
    from harness.context import Test
    from harness.pairing import ClientFactory

REGISTER_KEY = "register"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdRegisterClient:
    """A worker's client of one member; ``keyed`` for the kv workload's ``[key, v]``."""

    def __init__(self, options: EtcdOptions, base_url: str, keyed: bool) -> None:
        self.options, self.keyed = options, keyed
        self.link = HttpLink(base_url, options.timeout)

    async def invoke(self, test: Test, op: Op) -> Op:
        if self.keyed:
            key, arg = op.value
            name = f"kv/{key}"
        else:
            key, arg, name = None, op.value, REGISTER_KEY
        if op.f == "read":
            request = Request(op, effects=False)
            try:
                value = await self._get(request, _b64(name))
            except Exception as e:
                return request.completion(e)
            return op.ok([key, value] if self.keyed else value)
        if op.f == "write":
            put = {"requestPut": {"key": _b64(name), "value": _b64(json.dumps(arg))}}
            return await self._txn(op, {"success": [put]})
        if op.f == "cas":
            old, new = arg
            put = {"requestPut": {"key": _b64(name), "value": _b64(json.dumps(new))}}
            compare: dict[str, Any] = (
                {"key": _b64(name), "target": "CREATE", "result": "EQUAL",
                 "create_revision": "0"} if old is None else
                {"key": _b64(name), "target": "VALUE", "result": "EQUAL",
                 "value": _b64(json.dumps(old))})
            return await self._txn(op, {"compare": [compare], "success": [put]})
        return op.fail(f"the etcd register has no operation {op.f!r}")

    async def _get(self, request: Request, key: str) -> Any:
        reply = await self.link.request(
            request, "POST", "/v3/kv/range",
            {"key": key, "serializable": self.options.reads == "serializable"})
        kvs = reply.get("kvs") or []
        return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None

    async def _txn(self, op: Op, body: dict[str, Any]) -> Op:
        request = Request(op, definite)
        try:
            reply = await self.link.request(request, "POST", "/v3/kv/txn", body)
        except Exception as e:
            return request.completion(e)
        if not isinstance(reply, dict) or "error" in reply:
            return op.info(f"unexpected reply: {str(reply)[:200]}")
        if reply.get("succeeded") or "compare" not in body:
            return op.ok(op.value)
        return op.fail("cas: the value differed")

    async def close(self) -> None:
        await self.link.close()


def clients(system: Any) -> dict[str, ClientFactory]:
    """The register and kv clients of an etcd system (its ``options`` are etcd's)."""

    def factory(keyed: bool) -> ClientFactory:
        async def open_client(test: Test, node: str) -> EtcdRegisterClient:
            host, port = test.remote.endpoint(node, system.options.client_port)
            return EtcdRegisterClient(system.options, f"http://{host}:{port}", keyed)
        return open_client

    return {"register": factory(False), "kv": factory(True)}
