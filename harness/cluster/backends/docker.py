"""The Docker backend: every node is a container on a Docker network of the run's own.

Layout of one run (run id ``3f2a1c``, subnet ``10.213.4.0/24``)::

    controller ── bridge of network sb-3f2a1c (gateway 10.213.4.1)
                    ├── container sb-3f2a1c-n1  10.213.4.2  (hostname and alias n1)
                    └── container sb-3f2a1c-n2  10.213.4.3  ...

Containers run the node image (``harness.cluster.image``) with tini as PID 1, so daemons
that a nemesis kills are reaped, and with NET_ADMIN, so the iptables faults work inside
each container's own network namespace. Node names resolve among nodes through Docker's
DNS. The controller reaches each node at its address on the network, which partitions
never touch, so a node's endpoint is its peer address.

Commands go through the Docker SDK's exec, under coreutils ``timeout`` so that a timeout
kills the command inside the container (the SDK has no timeout of its own); files move
as tar streams (``put_archive``, ``get_archive``). Every network and container carries
the labels ``splitbrain.run`` (the run id) and ``splitbrain.controller`` (the
controller's pid and start time) and is recorded in the run's ledger before it is
created. Removers refuse an object whose label names another run, and the sweeper of
``splitbrain cleanup`` removes only labelled objects whose controller is gone: nothing
splitbrain did not make is ever touched.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from harness.cluster.backends.local import NODE_NAME
from harness.cluster.cleanup import register_remover, register_sweeper, remove_run
from harness.cluster.image import build_command, build_image, default_image
from harness.cluster.ledger import STATE_DIR, Ledger, locked, new_ledger, process_start_time
from harness.cluster.remote import RemoteError, Result, on_each_node
from harness.cluster.subnets import choose_subnet
from harness.errors import UsageError

if TYPE_CHECKING:
    import ipaddress

    from harness.context import Spec

RUN_LABEL = "splitbrain.run"
CONTROLLER_LABEL = "splitbrain.controller"
WORK_ROOT = "/var/lib/splitbrain"


def engine_address() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host.removeprefix("unix://")


def connect() -> docker.DockerClient:
    """A client of the engine, which answered a ping; UsageError in one line if none."""
    try:
        client = docker.from_env(timeout=120, max_pool_size=32)
        client.ping()
    except docker.errors.DockerException as e:
        reason = str(e).split("(")[0].strip() or type(e).__name__
        raise UsageError(f"no Docker engine answers at {engine_address()} ({reason}); "
                         "start it with `dockerd &`") from None
    return client


def check_cleanup() -> None:
    connect()


def from_spec(spec: Spec) -> DockerRemote:
    return DockerRemote(spec.image or None, build=spec.build_image)


def _controller_mark() -> str:
    pid = os.getpid()
    return f"{pid}:{process_start_time(pid)}"


def _controller_gone(mark: str | None) -> bool:
    pid, _, start = (mark or ":").partition(":")
    if not pid.isdigit():
        return True
    return str(process_start_time(int(pid))) != start


class DockerRemote:
    """Nodes as containers of one image. ``image``: the user's own (``--image``), or
    None for splitbrain's node image; ``build``: build that image if it is missing."""

    def __init__(self, image: str | None = None, *, build: bool = False,
                 state_dir: Path | str = STATE_DIR) -> None:
        self.image = image or default_image()
        self.own_image = image is None
        self.build = build
        self.state_dir = Path(state_dir)
        self.ledger: Ledger | None = None
        self.nodes: list[str] = []
        self._addresses: dict[str, str] = {}
        self._client: docker.DockerClient | None = None

    # -- names -------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        if self.ledger is None:
            raise RemoteError("the docker cluster is not set up")
        return self.ledger.run_id

    def container(self, node: str) -> str:
        if node not in self._addresses:
            raise RemoteError(f"unknown node {node!r} (nodes: {', '.join(self.nodes)})")
        return f"sb-{self.run_id}-{node}"

    @property
    def network(self) -> str:
        return f"sb-{self.run_id}"

    @property
    def api(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client.api

    # -- lifecycle ---------------------------------------------------------------------

    def check_environment(self) -> None:
        """The engine answers and the image is there (or is built, when asked)."""
        self._client = connect()
        try:
            self._client.images.get(self.image)
        except docker.errors.ImageNotFound:
            if self.build and self.own_image:
                build_image(self._client, self.image)
            elif self.own_image:
                raise UsageError(f"the node image {self.image} is missing: build it with "
                                 f"`{build_command()}` (or run with --build-image)") from None
            else:
                raise UsageError(f"docker image {self.image!r} is not on this engine") from None
        except docker.errors.APIError as e:
            raise UsageError(f"the Docker engine refused us: {e.explanation}") from None

    def setup(self, nodes: Sequence[str]) -> None:
        if not nodes or len(set(nodes)) != len(nodes):
            raise UsageError(f"node names must be distinct and non-empty: {list(nodes)}")
        if bad := [n for n in nodes if not NODE_NAME.fullmatch(n)]:
            raise UsageError(f"bad node name {bad[0]!r}: use letters, digits, '_', '.', '-'")
        if self.ledger is not None:
            raise RemoteError(f"cluster {self.run_id} is already set up")
        api = self.api
        with locked(self.state_dir):
            subnet = choose_subnet(self.state_dir, len(nodes),
                                   taken_elsewhere=self._docker_subnets())
            self.ledger = new_ledger(self.state_dir, backend="docker", subnet=str(subnet),
                                     nodes=list(nodes), image=self.image)
        self.nodes = list(nodes)
        hosts = subnet.hosts()
        gateway = str(next(hosts))
        self._addresses = {node: str(next(hosts)) for node in nodes}
        try:
            self._create(api, subnet, gateway)
        except BaseException:
            self.teardown()
            raise

    def _docker_subnets(self) -> list[ipaddress.IPv4Network]:
        import ipaddress

        taken = []
        for net in self.api.networks():
            for config in (net.get("IPAM") or {}).get("Config") or []:
                try:
                    taken.append(ipaddress.IPv4Network(config.get("Subnet", ""), strict=False))
                except ValueError:
                    continue
        return taken

    def _create(self, api: Any, subnet: ipaddress.IPv4Network, gateway: str) -> None:
        ledger = self.ledger
        assert ledger is not None
        labels = {RUN_LABEL: self.run_id, CONTROLLER_LABEL: _controller_mark()}
        ledger.record("docker-network", name=self.network, run_id=self.run_id)
        api.create_network(
            self.network, driver="bridge", labels=labels,
            ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=gateway)]),
            options={"com.docker.network.bridge.name": f"sb-{self.run_id}-br"})
        for node in self.nodes:
            name = self.container(node)
            ledger.record("docker-container", name=name, run_id=self.run_id)
            api.create_container(
                self.image, name=name, hostname=node, labels=labels, detach=True,
                working_dir=self.workdir(node),
                host_config=api.create_host_config(cap_add=["NET_ADMIN"],
                                                   network_mode=self.network),
                networking_config=api.create_networking_config({
                    self.network: api.create_endpoint_config(
                        ipv4_address=self._addresses[node], aliases=[node])}))
        on_each_node(self.nodes, lambda node: api.start(self.container(node)))

    def teardown(self) -> None:
        """Removes every container and the network (from the ledger). Idempotent."""
        if self.ledger is None:
            return
        lines = remove_run(self.ledger)
        if self.ledger.path.exists():
            raise RemoteError("teardown incomplete: " + "; ".join(lines))
        self.ledger = None
        self._addresses = {}

    # -- the Remote protocol -----------------------------------------------------------

    def peer_address(self, node: str) -> str:
        self.container(node)
        return self._addresses[node]

    def endpoint(self, node: str, port: int) -> tuple[str, int]:
        """The controller is on the network's bridge: it connects to the peer address."""
        return (self.peer_address(node), port)

    def workdir(self, node: str) -> str:
        return f"{WORK_ROOT}/{self.run_id}/{node}"

    def run(self, node: str, argv: Sequence[str], *, check: bool = True,
            timeout: float | None = 60, input: str | None = None) -> Result:
        """Execs ``argv`` in the node's container; on timeout, coreutils ``timeout``
        inside the container kills it (TERM, then KILL a second later)."""
        container = self.container(node)
        command = list(argv)
        if input is not None:  # exec's stdin needs a hijacked socket: pass it as an argument
            command = ["sh", "-c", 'printf %s "$0" | "$@"', input, *command]
        if timeout is not None:
            command = ["timeout", "-k", "1", f"{timeout:g}", *command]
        api = self.api
        outcome: dict[str, Any] = {}

        def execute() -> None:
            try:
                exec_id = api.exec_create(container, command, stdout=True, stderr=True)["Id"]
                outcome["out"] = api.exec_start(exec_id, demux=True)
                outcome["code"] = api.exec_inspect(exec_id)["ExitCode"]
            except Exception as e:  # handed to the caller's thread below
                outcome["error"] = e

        started = time.monotonic()
        worker = threading.Thread(target=execute, daemon=True)
        worker.start()
        worker.join(None if timeout is None else timeout + 15)
        elapsed = time.monotonic() - started
        if worker.is_alive() or (timeout is not None and elapsed >= timeout
                                 and outcome.get("code") in (124, 137)):
            raise RemoteError(f"{node}: {' '.join(argv)} timed out after {timeout} s")
        if "error" in outcome:
            raise RemoteError(f"{node}: {' '.join(argv)}: {outcome['error']}")
        stdout, stderr = (b.decode(errors="replace") if b else "" for b in outcome["out"])
        result = Result(int(outcome["code"]), stdout, stderr)
        if check and result.returncode != 0:
            detail = stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise RemoteError(f"{node}: {' '.join(argv)}: {detail[0]}")
        return result

    def upload(self, node: str, local_path: str, remote_path: str) -> None:
        """A tar stream of the file or tree, unpacked into ``remote_path``'s directory."""
        if not os.path.exists(local_path):
            raise RemoteError(f"cannot upload {local_path}: no such file or directory")
        directory = posixpath.dirname(remote_path) or "/"
        self.run(node, ["mkdir", "-p", directory])
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(local_path, arcname=posixpath.basename(remote_path))
        if not self.api.put_archive(self.container(node), directory, buffer.getvalue()):
            raise RemoteError(f"{node}: could not unpack {local_path} into {directory}")

    def download(self, node: str, remote_path: str, local_path: str) -> None:
        try:
            stream, _ = self.api.get_archive(self.container(node), remote_path)
            data = b"".join(stream)
        except docker.errors.NotFound:
            raise RemoteError(f"{node}: no {remote_path}") from None
        name = posixpath.basename(remote_path.rstrip("/"))
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(tmp, filter="data")
            destination = Path(local_path)
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = Path(tmp, name)
            if source.is_dir():
                shutil.copytree(source, destination, dirs_exist_ok=True)
            else:
                shutil.copyfile(source, destination)

    # -- NodeFaults: what only containers can do ---------------------------------------

    def kill_node(self, node: str) -> None:
        self.api.kill(self.container(node))
        self.api.wait(self.container(node), timeout=30)

    def start_node(self, node: str) -> None:
        self.api.start(self.container(node))

    def pause_node(self, node: str) -> None:
        self.api.pause(self.container(node))

    def resume_node(self, node: str) -> None:
        if self.api.inspect_container(self.container(node))["State"]["Paused"]:
            self.api.unpause(self.container(node))


# -- removers (for teardown and `splitbrain cleanup`) -----------------------------------

def _labelled_ours(labels: dict[str, str] | None, r: dict[str, Any], what: str) -> None:
    if (labels or {}).get(RUN_LABEL) != r.get("run_id"):
        raise RuntimeError(f"refusing to remove {what} {r['name']}: it is not labelled as "
                           f"run {r.get('run_id')}'s")


def _remove_container(r: dict[str, Any]) -> list[str]:
    api = connect().api
    try:
        info = api.inspect_container(r["name"])
    except docker.errors.NotFound:
        return []
    _labelled_ours(info["Config"].get("Labels"), r, "container")
    try:
        api.remove_container(r["name"], force=True, v=True)
    except docker.errors.NotFound:
        return []
    return [f"removed container {r['name']}"]


def _remove_network(r: dict[str, Any]) -> list[str]:
    api = connect().api
    try:
        info = api.inspect_network(r["name"])
    except docker.errors.NotFound:
        return []
    _labelled_ours(info.get("Labels"), r, "network")
    try:
        api.remove_network(r["name"])
    except docker.errors.NotFound:
        return []
    return [f"removed network {r['name']}"]


def _sweep(kept: set[str]) -> list[str]:
    """Labelled containers and networks of runs whose ledger is gone and whose controller
    is dead (a ledger lost with its disk, say). Silent when no engine answers."""
    try:
        api = connect().api
    except UsageError:
        return []
    lines = []
    for info in api.containers(all=True, filters={"label": RUN_LABEL}):
        labels = info.get("Labels") or {}
        if labels.get(RUN_LABEL) not in kept and _controller_gone(labels.get(CONTROLLER_LABEL)):
            api.remove_container(info["Id"], force=True, v=True)
            lines.append(f"removed container {info['Names'][0].lstrip('/')} (by its label)")
    for info in api.networks(filters={"label": RUN_LABEL}):
        labels = info.get("Labels") or {}
        if labels.get(RUN_LABEL) not in kept and _controller_gone(labels.get(CONTROLLER_LABEL)):
            api.remove_network(info["Id"])
            lines.append(f"removed network {info['Name']} (by its label)")
    return lines


register_remover("docker-container", _remove_container)
register_remover("docker-network", _remove_network)
register_sweeper(_sweep)
