"""etcd as a "likes" counter: a real Raft cluster, one member per node.

Every node runs an ``etcd`` member of one cluster (peers on port 2380, clients on 2379,
bound to the node's address), so partitions cut real Raft traffic and a minority really
loses its leader. The count is one key, reached through etcd's JSON gateway (``/v3/kv``).
The options choose the design:

* ``client=cas`` (default): an add reads the count and its ``mod_revision``, then writes
  count + delta in a transaction that applies only if the key was not modified since,
  retrying when it was: linearizable. ``client=get-put`` writes back without the
  comparison: the read-modify-write race that loses updates.
* ``reads=linearizable`` (default) goes through the leader's quorum;
  ``reads=serializable`` answers from the member's own copy, which a partition leaves
  behind: stale reads.

Errors are classified as Jepsen's etcd client does: no connection, a failed comparison
or a refused request is ``fail``; a timeout or an error after a write was sent is
``info``, since etcd may still commit it. Reads never change anything: every read error
is a ``fail``.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from harness.cluster.remote import require_programs
from harness.history import Op
from harness.systems.daemon_db import DaemonDB, ServerPaths
from harness.systems.options import choices, seconds

if TYPE_CHECKING:
    from harness.context import Test

KEY = base64.b64encode(b"likes").decode()
CLIENT_PORT, PEER_PORT = 2379, 2380
CAS_ATTEMPTS = 20
"""Comparisons lost to other adds before an add gives up (a ``fail``: nothing applied)."""
CHOICES = {"client": ("cas", "get-put"), "reads": ("linearizable", "serializable")}


@dataclass(frozen=True)
class EtcdOptions:
    client: str = "cas"
    reads: str = "linearizable"
    timeout: float = 2.0  # seconds per request

    @classmethod
    def parse(cls, options: dict[str, str]) -> EtcdOptions:
        """Validates the options; other keys are left to the parts that own them."""
        values: dict[str, Any] = choices("etcd", options, CHOICES)
        if "timeout" in options:
            values["timeout"] = seconds("etcd", "timeout", options["timeout"])
        return cls(**values)


class EtcdDB(DaemonDB):
    """An etcd member on every node, all in one cluster."""

    server = "etcd"
    startup_timeout = 30.0  # members wait for a quorum of their peers

    def ports(self, test: Test) -> list[int]:
        return [CLIENT_PORT, PEER_PORT]

    def __init__(self, cluster_token: str) -> None:
        self.cluster_token = cluster_token

    def argv(self, test: Test, node: str, paths: ServerPaths) -> list[str]:
        address = test.remote.peer_address(node)
        peers = ",".join(f"{n}=http://{test.remote.peer_address(n)}:{PEER_PORT}"
                         for n in test.nodes)
        return ["etcd", "--name", node, "--data-dir", paths.data_dir,
                "--listen-client-urls", f"http://{address}:{CLIENT_PORT}",
                "--advertise-client-urls", f"http://{address}:{CLIENT_PORT}",
                "--listen-peer-urls", f"http://{address}:{PEER_PORT}",
                "--initial-advertise-peer-urls", f"http://{address}:{PEER_PORT}",
                "--initial-cluster", peers, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.cluster_token,
                # Elections in about a second, so that a run sees several.
                "--heartbeat-interval", "100", "--election-timeout", "1000"]

    def prepare(self, test: Test, node: str, paths: ServerPaths) -> None:
        require_programs(test.remote, node, ["etcd"], "apt-get install etcd-server")

    def ready(self, test: Test, node: str) -> bool:
        """The member answers (bootstrapping members wait for each other's quorum in
        parallel, so this is not yet a health check of the cluster)."""
        host, port = test.remote.endpoint(node, CLIENT_PORT)
        url = f"http://{host}:{port}/version"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=0.5) as r:
                return r.status == 200
        except OSError:
            return False


class EtcdCounterClient:
    """A worker's client of one member, through etcd's JSON gateway."""

    def __init__(self, options: EtcdOptions, base_url: str) -> None:
        self.options = options
        self.session = aiohttp.ClientSession(
            base_url, connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=options.timeout,
                                          sock_connect=options.timeout / 2))

    async def invoke(self, test: Test, op: Op) -> Op:
        if op.f == "read":
            return await self._read(op)
        if op.f == "add":
            return await self._add(op)
        return op.fail(f"the etcd counter has no operation {op.f!r}")

    async def close(self) -> None:
        await self.session.close()

    async def _read(self, op: Op) -> Op:
        serializable = self.options.reads == "serializable"
        try:
            count, _ = await self._get(serializable)
        except _Failed as e:
            return op.fail(str(e))
        return op.ok(count)

    async def _add(self, op: Op) -> Op:
        for _ in range(CAS_ATTEMPTS):
            try:
                count, revision = await self._get(serializable=False)
            except _Failed as e:
                return op.fail(str(e))  # nothing was written in this op yet
            put = {"requestPut": {"key": KEY, "value": _encode(count + op.value)}}
            body: dict[str, Any] = {"success": [put]}
            if self.options.client == "cas":
                body["compare"] = [{"key": KEY, "target": "MOD", "result": "EQUAL",
                                    "mod_revision": str(revision)}]
            try:
                reply = await self._post("/v3/kv/txn", body)
            except _Failed as e:
                return op.fail(str(e))
            except _Unknown as e:
                return op.info(str(e))
            if reply.get("succeeded"):
                return op.ok(op.value)
        return op.fail(f"lost the comparison {CAS_ATTEMPTS} times to other adds")

    async def _get(self, serializable: bool) -> tuple[int, int]:
        """The count and its mod_revision (0, 0 before the first add)."""
        try:
            reply = await self._post("/v3/kv/range",
                                     {"key": KEY, "serializable": serializable})
        except _Unknown as e:
            raise _Failed(str(e)) from None
        kvs = reply.get("kvs") or []
        if not kvs:
            return 0, 0
        return int(base64.b64decode(kvs[0]["value"])), int(kvs[0]["mod_revision"])

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The gateway's JSON answer; ``_Failed`` when the request surely did nothing,
        ``_Unknown`` when it may have been applied."""
        try:
            async with self.session.post(path, json=body) as response:
                text = await response.text()
        except aiohttp.ClientConnectorError as e:
            raise _Failed(f"connect-failed: {e.os_error}") from None
        except aiohttp.ConnectionTimeoutError:
            raise _Failed("connect-timeout") from None
        except TimeoutError:
            raise _Unknown("timeout") from None
        except aiohttp.ClientError as e:
            raise _Unknown(f"connection-lost: {type(e).__name__}") from None
        try:
            reply = json.loads(text)
        except ValueError:
            reply = {"error": text[:200]}
        if response.status != 200 or "error" in reply:
            message = f"http-{response.status}: {reply.get('error', reply)}"
            # etcd refuses some requests before proposing them; anything else may commit.
            if response.status == 400 or "not capable" in message:
                raise _Failed(message)
            raise _Unknown(message)
        return reply


class _Failed(Exception):
    """The request had no effect."""


class _Unknown(Exception):
    """The request may or may not have taken effect."""


def _encode(n: int) -> str:
    return base64.b64encode(str(n).encode()).decode()


class EtcdSystem:
    name = "etcd"
    recovery_time = 5.0
    """After a heal: a leader elected, restarted members caught up."""

    def __init__(self, options: EtcdOptions) -> None:
        self.options = options

    def db(self, test: Test) -> EtcdDB:
        return EtcdDB(f"splitbrain-{test.run_dir.name}")

    def serving_nodes(self, test: Test) -> list[str]:
        return list(test.nodes)

    async def open_client(self, test: Test, node: str) -> EtcdCounterClient:
        host, port = test.remote.endpoint(node, CLIENT_PORT)
        return EtcdCounterClient(self.options, f"http://{host}:{port}")


def make_system(options: dict[str, str]) -> EtcdSystem:
    """The registry's factory: ``-o`` options in, a validated system out."""
    return EtcdSystem(EtcdOptions.parse(options))
