"""The local backend: every node is a Linux network namespace on a bridge of its own.

Layout of one run (run id ``3f2a1c``, subnet ``10.213.4.0/24``)::

    root namespace (controller)            node namespaces
    bridge sb-3f2a1c-br 10.213.4.1  ──  veth sb3f2a1cv1 ── eth0 10.213.4.2 in sb-3f2a1c-n1
                                    ──  veth sb3f2a1cv2 ── eth0 10.213.4.3 in sb-3f2a1c-n2 ...

The controller reaches every node through the bridge address, which partitions never
touch. Nodes get no default route: they can reach each other and the controller, nothing
else. The filesystem is shared, so upload and download are copies and each node's
``workdir`` is ``/var/lib/splitbrain/<run-id>/<node>``.

With ``br_netfilter`` loaded, bridged frames traverse iptables' FORWARD chain, and Docker
sets that chain's policy to DROP; an ACCEPT rule for the bridge keeps nodes talking.
Everything is recorded in the run's ledger before it is created (``harness.ledger``), and
``teardown`` is ``harness.cleanup.remove_run`` on that ledger: the same code that cleans
up after a crashed run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from harness.cleanup import remove_run
from harness.errors import NotRootError, UsageError
from harness.ledger import STATE_DIR, Ledger, all_ledgers, locked, new_ledger
from harness.remote import RemoteError, Result

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
"""Node names become parts of namespace names and directory names."""

DEFAULT_POOL = ipaddress.IPv4Network("10.213.0.0/16")
"""Where runs take their /24 from when no subnet is given (clear of Docker's 172.17/16)."""


def _host(*argv: str) -> None:
    """Runs a setup command in the root namespace; a failure is a RemoteError."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RemoteError(f"{' '.join(argv)}: {out.stderr.strip()}")


def _routed_networks() -> list[ipaddress.IPv4Network]:
    """Networks the host already routes (except the default route): a subnet must avoid them."""
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"],
                         capture_output=True, text=True, timeout=10)
    nets = []
    for route in json.loads(out.stdout or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            try:
                nets.append(ipaddress.IPv4Network(dst, strict=False))
            except ValueError:
                continue
    return nets


class LocalRemote:
    """Nodes as network namespaces on one host. Needs root.

    ``subnet``: an IPv4 network for the bridge (first host address) and the nodes (the
    following ones); by default a free /24 out of 10.213.0.0/16, so concurrent runs do not
    collide. ``state_dir`` holds ledgers and work directories.
    """

    def __init__(self, subnet: str | None = None, *,
                 state_dir: Path | str = STATE_DIR) -> None:
        try:
            self.requested_subnet = ipaddress.IPv4Network(subnet) if subnet else None
        except ValueError as e:
            raise UsageError(f"bad subnet {subnet!r}: {e}") from None
        self.state_dir = Path(state_dir)
        self.ledger: Ledger | None = None
        self.subnet: ipaddress.IPv4Network | None = None
        self.nodes: list[str] = []
        self._addresses: dict[str, str] = {}

    # -- names -------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        if self.ledger is None:
            raise RemoteError("the local cluster is not set up")
        return self.ledger.run_id

    def namespace(self, node: str) -> str:
        self._check_node(node)
        return f"sb-{self.run_id}-{node}"

    @property
    def bridge(self) -> str:
        return f"sb-{self.run_id}-br"

    @property
    def bridge_address(self) -> str:
        """The controller's address on the bridge: where nodes see the controller come from."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def _veth(self, index: int) -> str:
        return f"sb{self.run_id}v{index}"

    def _check_node(self, node: str) -> None:
        if node not in self._addresses:
            raise RemoteError(f"unknown node {node!r} (nodes: {', '.join(self.nodes)})")

    # -- lifecycle ---------------------------------------------------------------------

    def setup(self, nodes: Sequence[str]) -> None:
        if os.geteuid() != 0:
            raise NotRootError("the local backend needs root (network namespaces and "
                               "iptables): run splitbrain as root")
        for tool in ("ip", "iptables"):
            if shutil.which(tool) is None:
                raise UsageError(f"the local backend needs {tool!r}; install iproute2 and "
                                 "iptables")
        if len(set(nodes)) != len(nodes) or not nodes:
            raise UsageError(f"node names must be distinct and non-empty: {list(nodes)}")
        if bad := [n for n in nodes if not NODE_NAME.fullmatch(n)]:
            raise UsageError(f"bad node name {bad[0]!r}: use letters, digits, '_', '.', '-'")
        if self.ledger is not None:
            raise RemoteError(f"cluster {self.run_id} is already set up")
        with locked(self.state_dir):
            subnet = self._choose_subnet(len(nodes))
            self.ledger = new_ledger(self.state_dir, subnet=str(subnet), nodes=list(nodes))
        self.subnet = subnet
        self.nodes = list(nodes)
        hosts = subnet.hosts()
        next(hosts)  # the bridge's
        self._addresses = {node: str(next(hosts)) for node in nodes}
        try:
            self._create()
        except BaseException:
            self.teardown()
            raise

    def _choose_subnet(self, n_nodes: int) -> ipaddress.IPv4Network:
        taken = [ipaddress.IPv4Network(led.data["subnet"]) for led in all_ledgers(self.state_dir)
                 if "subnet" in led.data]
        taken += _routed_networks()
        if self.requested_subnet is not None:
            subnet = self.requested_subnet
            if subnet.num_addresses - 2 < n_nodes + 1:
                raise UsageError(f"subnet {subnet} is too small for {n_nodes} nodes")
            if clash := next((t for t in taken if subnet.overlaps(t)), None):
                raise UsageError(f"subnet {subnet} overlaps {clash}, already in use on this host")
            return subnet
        prefix = 24 if n_nodes <= 250 else 16
        for candidate in DEFAULT_POOL.subnets(new_prefix=prefix):
            if not any(candidate.overlaps(t) for t in taken):
                return candidate
        raise UsageError(f"no free subnet left in {DEFAULT_POOL}; run `splitbrain cleanup`")

    def _create(self) -> None:
        ledger = self.ledger
        assert ledger is not None and self.subnet is not None
        prefix = self.subnet.prefixlen
        run_dir = self.state_dir / self.run_id
        ledger.record("dir", path=str(run_dir), run_id=self.run_id)
        for node in self.nodes:
            Path(self.workdir(node)).mkdir(parents=True, exist_ok=True)
        ledger.record("link", name=self.bridge, what="bridge")
        _host("ip", "link", "add", self.bridge, "type", "bridge")
        _host("ip", "addr", "add", f"{self.bridge_address}/{prefix}", "dev", self.bridge)
        _host("ip", "link", "set", self.bridge, "up")
        accept = ["-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        ledger.record("iptables", table="filter", chain="FORWARD", rule=accept)
        _host("iptables", "-w", "-I", "FORWARD", "1", *accept)
        for index, node in enumerate(self.nodes, 1):
            ns, veth = self.namespace(node), self._veth(index)
            ledger.record("netns", name=ns)
            _host("ip", "netns", "add", ns)
            ledger.record("link", name=veth, what="veth")
            _host("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _host("ip", "link", "set", veth, "master", self.bridge, "up")
            _host("ip", "-n", ns, "addr", "add", f"{self._addresses[node]}/{prefix}", "dev", "eth0")
            _host("ip", "-n", ns, "link", "set", "eth0", "up")
            _host("ip", "-n", ns, "link", "set", "lo", "up")

    def teardown(self) -> None:
        """Kills every process in the namespaces and removes all the run created."""
        if self.ledger is None:
            return
        lines = remove_run(self.ledger)
        if self.ledger.path.exists():  # remove_run keeps the ledger when something stays
            raise RemoteError("teardown incomplete: " + "; ".join(lines))
        self.ledger = None
        self._addresses = {}

    # -- the Remote protocol -----------------------------------------------------------

    def address(self, node: str) -> str:
        self._check_node(node)
        return self._addresses[node]

    def run(self, node: str, argv: Sequence[str], *, check: bool = True,
            timeout: float | None = 60, input: str | None = None) -> Result:
        """Runs ``argv`` inside the node's namespace (``ip netns exec``).

        On timeout the command's whole process group is killed, so children that hold
        its output open cannot make the wait hang.
        """
        full = ["ip", "netns", "exec", self.namespace(node), *argv]
        proc = subprocess.Popen(full, stdin=subprocess.PIPE if input is not None else
                                subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            raise RemoteError(f"{node}: {' '.join(argv)} timed out after {timeout} s") from None
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        result = Result(proc.returncode, stdout, stderr)
        if check and proc.returncode != 0:
            detail = stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise RemoteError(f"{node}: {' '.join(argv)}: {detail[0]}")
        return result

    def upload(self, node: str, local_path: str, remote_path: str) -> None:
        self._check_node(node)
        _copy(local_path, remote_path)

    def download(self, node: str, remote_path: str, local_path: str) -> None:
        self._check_node(node)
        _copy(remote_path, local_path)

    def workdir(self, node: str) -> str:
        self._check_node(node)
        return str(self.state_dir / self.run_id / node)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _copy(source: str, destination: str) -> None:
    """Copies a file or a directory tree; a missing source is a RemoteError."""
    src, dst = Path(source), Path(destination)
    try:
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    except OSError as e:
        raise RemoteError(f"cannot copy {source} to {destination}: {e}") from None
