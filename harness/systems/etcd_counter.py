"""etcd as a "likes" counter: a real Raft cluster, one member per node.

Every node runs an ``etcd`` member of one cluster (peers on ``peer-port``, 2380, clients
on ``client-port``, 2379, both bound to the node's address), so partitions cut real Raft
traffic and a minority really loses its leader. The count is one key, reached through
etcd's JSON gateway (``/v3/kv``). The options choose the design:

* ``client=cas`` (default): an add reads the count and its ``mod_revision``, then writes
  count + delta in a transaction that applies only if the key was not modified since,
  retrying when it was: linearizable. ``client=get-put`` writes back without the
  comparison: the read-modify-write race that loses updates.
* ``reads=linearizable`` (default) goes through the leader's quorum;
  ``reads=serializable`` answers from the member's own copy, which a partition leaves
  behind: stale reads.

Errors follow the shared rule (``harness.client``), as Jepsen's etcd client does: no
connection, a failed comparison or a request refused before it was proposed is ``fail``;
a timeout or any other error once a write may have been sent is ``info``, since etcd may
still commit it. Reads never change anything: every read error is a ``fail``.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.request
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from harness.client import Request
from harness.cluster.remote import on_each_node, require_programs
from harness.history import Op
from harness.systems.daemon_db import DaemonDB, ServerPaths
from harness.systems.http_link import HttpError, HttpLink
from harness.systems.options import Install, Options, Port, Seconds, declares

if TYPE_CHECKING:
    from harness.context import Test

KEY = base64.b64encode(b"likes").decode()
CAS_ATTEMPTS = 20
"""Comparisons lost to other adds before an add gives up (a ``fail``: nothing applied)."""
STATUS_TIMEOUT = 1.0
"""Seconds ``primaries`` waits for a member's status: a fault must not stall on a paused
member, and a live one answers from memory in milliseconds."""
STATUS_ROUNDS = 3
"""Times ``primaries`` asks every member while none claims to lead (an election, or
answers slowed by a loaded machine), half ``STATUS_TIMEOUT`` apart."""


class EtcdOptions(Options):
    """The ``-o KEY=VALUE`` options of the etcd system (``-`` and ``_`` alike)."""

    owner: ClassVar[str] = "etcd"

    client: Literal["cas", "get-put"] = "cas"
    reads: Literal["linearizable", "serializable"] = "linearizable"
    client_port: Port = 2379
    peer_port: Annotated[Port, Field(validate_default=True)] = 2380  # != client-port
    install: Install = "none"  # apt: a node without etcd gets etcd-server
    timeout: Seconds = 2.0  # seconds per request

    @field_validator("peer_port")
    @classmethod
    def _not_the_client_port(cls, value: int, info: ValidationInfo) -> int:
        if value == info.data.get("client_port"):
            raise ValueError("must differ from client-port")
        return value


class EtcdDB(DaemonDB):
    """An etcd member on every node, all in one cluster; Killable, Pausable, Primaries
    and LogFiles."""

    server = "etcd"
    startup_timeout = 30.0  # members wait for a quorum of their peers

    def __init__(self, options: EtcdOptions, cluster_token: str) -> None:
        self.options, self.cluster_token = options, cluster_token

    def ports(self, test: Test) -> list[int]:
        return [self.options.client_port, self.options.peer_port]

    def argv(self, test: Test, node: str, paths: ServerPaths) -> list[str]:
        address = test.remote.peer_address(node)
        client, peer = self.options.client_port, self.options.peer_port
        peers = ",".join(f"{n}=http://{test.remote.peer_address(n)}:{peer}"
                         for n in test.nodes)
        return ["etcd", "--name", node, "--data-dir", paths.data_dir,
                "--listen-client-urls", f"http://{address}:{client}",
                "--advertise-client-urls", f"http://{address}:{client}",
                "--listen-peer-urls", f"http://{address}:{peer}",
                "--initial-advertise-peer-urls", f"http://{address}:{peer}",
                "--initial-cluster", peers, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.cluster_token,
                # Elections in about a second, so that a run sees several.
                "--heartbeat-interval", "100", "--election-timeout", "1000"]

    def check_programs(self, test: Test, node: str) -> None:
        require_programs(test.remote, node, ["etcd"], "etcd-server", self.options.install)

    def ready(self, test: Test, node: str) -> bool:
        """The member answers (bootstrapping members wait for each other's quorum in
        parallel, so this is not yet a health check of the cluster)."""
        return _fetch(self._url(test, node, "/version"), None, 0.5) is not None

    def primaries(self, test: Test) -> list[str]:
        """The members that say they lead, each in its own status (``Primaries``).

        Every member is asked at once, on its client endpoint (``/v3/maintenance/status``,
        answered from the member's memory without a quorum), and one counts as a primary
        only when its status names itself as the leader (``leader`` equals its own
        ``header.member_id``). What a member says of another is not taken: a follower
        keeps naming a leader it has lost until its election timeout. So the answer is
        what is known, never a guess: a member that does not answer within
        ``STATUS_TIMEOUT`` (killed, paused) is left out, two members are both listed while
        an old leader cut off from its quorum has not yet stepped down, and the list is
        empty when no member answers, or during an election that outlasts
        ``STATUS_ROUNDS`` rounds of asking (an election takes about a second). On an empty
        list ``isolate-kill-primary`` cuts off one node drawn from its rng instead
        (``nemeses.schedule.PrimaryNemesis``) and ``kill`` draws its usual targets."""
        leading: list[str] = []

        def ask(node: str) -> None:
            status = _fetch(self._url(test, node, "/v3/maintenance/status"), {},
                            STATUS_TIMEOUT)
            if isinstance(status, dict) and _leads(status):
                leading.append(node)

        for attempt in range(STATUS_ROUNDS):
            if attempt:
                time.sleep(STATUS_TIMEOUT / 2)
            on_each_node(self.nodes(test), ask)
            if leading:
                break
        return sorted(leading)

    def _url(self, test: Test, node: str, path: str) -> str:
        host, port = test.remote.endpoint(node, self.options.client_port)
        return f"http://{host}:{port}{path}"


def _leads(status: dict[str, Any]) -> bool:
    """Whether a member's status names the member itself as the leader (ids are uint64
    in decimal strings; 0 means it knows of no leader)."""
    header = status.get("header")
    me = header.get("member_id") if isinstance(header, dict) else None
    return me is not None and str(me) not in ("", "0") and str(status.get("leader")) == str(me)


def _fetch(url: str, body: dict[str, Any] | None, timeout: float) -> Any:
    """The JSON a member answers at ``url`` (POSTing ``body`` unless None), or None when
    it does not answer with 200 in time. A proxy setting cannot reroute it."""
    data = None if body is None else json.dumps(body).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=timeout) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def definite(error: BaseException) -> str | None:
    """etcd's allowlist: errors the server returns before proposing a request to Raft.
    400 is a request it could not accept as written (the gateway's InvalidArgument,
    such as a request too large), 429 "too many requests" (its apply loop is behind),
    and "not capable" (the cluster version check). A timeout, "leader changed" or any
    other error may come after the proposal, which can still commit."""
    if isinstance(error, HttpError) and (error.status in (400, 429)
                                         or "not capable" in error.message):
        return str(error)
    return None


class EtcdCounterClient:
    """A worker's client of one member, through etcd's JSON gateway.

    Classified by the shared rule (``harness.client``): the reads of an add and every
    read request fail on any error (they change nothing); a transaction that may have
    left the client is ``fail`` only on :func:`definite` errors or when its comparison
    did not hold, and ``info`` otherwise.
    """

    def __init__(self, options: EtcdOptions, base_url: str) -> None:
        self.options = options
        self.link = HttpLink(base_url, options.timeout)

    async def invoke(self, test: Test, op: Op) -> Op:
        if op.f == "read":
            return await self._read(op)
        if op.f == "add":
            return await self._add(op)
        return op.fail(f"the etcd counter has no operation {op.f!r}")

    async def close(self) -> None:
        await self.link.close()

    async def _read(self, op: Op) -> Op:
        request = Request(op, effects=False)
        try:
            count, _ = await self._get(request, self.options.reads == "serializable")
        except Exception as e:
            return request.completion(e)
        return op.ok(count)

    async def _add(self, op: Op) -> Op:
        for _ in range(CAS_ATTEMPTS):
            read = Request(op, effects=False)  # a failed comparison applied nothing before
            try:
                count, revision = await self._get(read, serializable=False)
            except Exception as e:
                return read.completion(e)
            put = {"requestPut": {"key": KEY, "value": _encode(count + op.value)}}
            body: dict[str, Any] = {"success": [put]}
            if self.options.client == "cas":
                body["compare"] = [{"key": KEY, "target": "MOD", "result": "EQUAL",
                                    "mod_revision": str(revision)}]
            write = Request(op, definite)
            try:
                reply = await self.link.request(write, "POST", "/v3/kv/txn", body)
            except Exception as e:
                return write.completion(e)
            if isinstance(reply, dict) and reply.get("succeeded"):
                return op.ok(op.value)
            if not isinstance(reply, dict) or "error" in reply:
                return op.info(f"unexpected reply: {str(reply)[:200]}")
        return op.fail(f"lost the comparison {CAS_ATTEMPTS} times to other adds")

    async def _get(self, request: Request, serializable: bool) -> tuple[int, int]:
        """The count and its mod_revision (0, 0 before the first add)."""
        reply = await self.link.request(request, "POST", "/v3/kv/range",
                                        {"key": KEY, "serializable": serializable})
        kvs = reply.get("kvs") or []
        if not kvs:
            return 0, 0
        return int(base64.b64decode(kvs[0]["value"])), int(kvs[0]["mod_revision"])


def _encode(n: int) -> str:
    return base64.b64encode(str(n).encode()).decode()


class EtcdSystem:
    name = "etcd"
    recovery_time = 5.0
    """After a heal: a leader elected, restarted members caught up."""

    def __init__(self, options: EtcdOptions) -> None:
        self.options = options

    def db(self, test: Test) -> EtcdDB:
        return EtcdDB(self.options, f"splitbrain-{test.run_dir.name}")

    def serving_nodes(self, test: Test) -> list[str]:
        return list(test.nodes)

    @property
    def clients(self) -> dict[str, Any]:
        """A client per workload (``harness.pairing``): the counter's below, the
        register and kv clients of ``etcd_register``."""
        from harness.systems import etcd_register  # it imports this module

        return {"counter": self.open_client, **etcd_register.clients(self)}

    async def open_client(self, test: Test, node: str) -> EtcdCounterClient:
        host, port = test.remote.endpoint(node, self.options.client_port)
        return EtcdCounterClient(self.options, f"http://{host}:{port}")


@declares(EtcdOptions)
def make_system(options: dict[str, Any]) -> EtcdSystem:
    """The registry's factory: ``-o`` options in, a validated system out."""
    return EtcdSystem(EtcdOptions.parse(options))
