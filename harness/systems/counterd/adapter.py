"""The counterd System: options, installing the service on nodes, and opening clients.

``server.py`` is shipped into each node's workdir and started there as a daemon, so the
same adapter works on every Remote backend. Single-node variants run on the first node
only; ``async-replica`` runs on every node with the first as its primary.
"""

from __future__ import annotations

import http.client
import json
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import model_validator

from harness.cluster.remote import require_programs
from harness.daemon import node_python
from harness.schema import no_effect
from harness.systems.counterd.client import CounterdClient
from harness.systems.daemon_db import DaemonDB, ServerPaths
from harness.systems.options import Install, Options, Pause, Port, Seconds, declares

if TYPE_CHECKING:
    from harness.context import Test

SERVER_SOURCE = Path(__file__).with_name("server.py")


class CounterdOptions(Options):
    """The ``-o KEY=VALUE`` options counterd understands (``-`` and ``_`` alike)."""

    owner: ClassVar[str] = "counterd"

    # the default run: replication with known faults
    variant: Literal["naive", "atomic", "durable", "async-replica"] = "async-replica"
    port: Port = 7070
    install: Install = "none"      # apt: a node without python3 gets it
    window: Pause = 0.005           # naive: seconds between read and write-back
    timeout: Seconds = 2.0          # client: seconds per request
    forward_timeout: Seconds = 5.0  # replica: seconds to wait for the primary (> timeout)
    sync_interval: Seconds = 0.15   # replica: seconds between copies of the primary

    @model_validator(mode="after")
    def _fits_the_variant(self) -> CounterdOptions:
        given = self.model_fields_set
        if "window" in given and self.variant != "naive":
            raise no_effect("window", f"with variant={self.variant}: only naive waits "
                            "between its read and its write")
        for key in ("forward_timeout", "sync_interval"):
            if key in given and self.variant != "async-replica":
                raise no_effect(key.replace("_", "-"),
                                f"with variant={self.variant}: only async-replica has "
                                "replicas")
        if "forward_timeout" not in given:
            # A forwarded add must outlive the client's request, so that a partition
            # between replica and primary shows as a client timeout.
            self.forward_timeout = max(self.forward_timeout, 2 * self.timeout)
        return self


class CounterdDB(DaemonDB):
    """Ships ``server.py`` to the nodes and runs it; Killable, Pausable, Primaries and
    LogFiles. Single-node variants run on n1 only; ``async-replica`` on every node."""

    server = "counterd"
    startup_timeout = 10.0

    def __init__(self, options: CounterdOptions) -> None:
        self.options = options

    def ports(self, test: Test) -> list[int]:
        return [self.options.port]

    def nodes(self, test: Test) -> list[str]:
        return list(test.nodes) if self.options.variant == "async-replica" else test.nodes[:1]

    def setup(self, test: Test, node: str) -> None:
        if node in self.nodes(test):
            script = self._script(test, node)
            test.remote.run(node, ["mkdir", "-p", posixpath.dirname(script)])
            test.remote.upload(node, str(SERVER_SOURCE), script)
        super().setup(test, node)

    def primaries(self, test: Test) -> list[str]:
        return test.nodes[:1]

    def check_programs(self, test: Test, node: str) -> None:
        require_programs(test.remote, node, ["python3"], "python3", self.options.install)

    def argv(self, test: Test, node: str, paths: ServerPaths) -> list[str]:
        o = self.options
        argv = [
            node_python(test.remote, node), self._script(test, node), "--variant", o.variant,
            "--host", test.remote.peer_address(node), "--port", str(o.port),
            "--data-dir", paths.data_dir, "--node", node,
            "--window", repr(o.window), "--forward-timeout", repr(o.forward_timeout),
            "--sync-interval", repr(o.sync_interval),
        ]
        primary = test.nodes[0]
        if o.variant == "async-replica" and node != primary:
            argv += ["--primary", f"{test.remote.peer_address(primary)}:{o.port}"]
        return argv

    def ready(self, test: Test, node: str) -> bool:
        """``/health`` answers from the controller, as clients will reach the node."""
        host, port = test.remote.endpoint(node, self.options.port)
        return health(host, port, timeout=0.5) is not None

    def _script(self, test: Test, node: str) -> str:
        return posixpath.join(test.remote.workdir(node), "counterd.py")



def health(address: str, port: int, *, timeout: float) -> dict | None:
    """The node's ``/health`` answer, or None if it does not give one.

    Uses http.client directly so that no ``http_proxy`` setting can reroute the check.
    """
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        body = json.loads(response.read())
        return body if response.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class CounterdSystem:
    """The bundled counter service, in the variant chosen with ``-o variant=NAME``."""

    name = "counterd"

    def __init__(self, options: CounterdOptions) -> None:
        self.options = options
        self._db = CounterdDB(options)
        # A replica's forward may still reach the primary up to forward_timeout after its
        # client gave up, and replicas copy the primary every sync_interval: final reads
        # wait for both, so that a correct async-replica cluster agrees after the heal.
        self.recovery_time = 1.0
        if options.variant == "async-replica":
            self.recovery_time += options.forward_timeout + 2 * options.sync_interval

    def db(self, test: Test) -> CounterdDB:
        return self._db

    def serving_nodes(self, test: Test) -> list[str]:
        return self._db.nodes(test)

    async def open_client(self, test: Test, node: str) -> CounterdClient:
        host, port = test.remote.endpoint(node, self.options.port)
        return CounterdClient(f"http://{host}:{port}", self.options.timeout)


@declares(CounterdOptions)
def make_system(options: dict[str, Any]) -> CounterdSystem:
    """The registry's factory: ``-o`` options in, a validated system out."""
    return CounterdSystem(CounterdOptions.parse(options))
