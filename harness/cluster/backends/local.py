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
Everything is recorded in the run's ledger before it is created (``harness.cluster.ledger``), and
``teardown`` is ``harness.cluster.cleanup.remove_run`` on that ledger: the same code that cleans
up after a crashed run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cluster.cleanup import register_remover, remove_run
from harness.cluster.ledger import STATE_DIR, Ledger, locked, new_ledger
from harness.cluster.remote import RemoteError, Result
from harness.cluster.subnets import choose_subnet
from harness.errors import NotRootError, UsageError

if TYPE_CHECKING:
    from harness.context import Spec

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
"""Node names become parts of namespace names and directory names."""



def _host(*argv: str) -> None:
    """Runs a setup command in the root namespace; a failure is a RemoteError."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RemoteError(f"{' '.join(argv)}: {out.stderr.strip()}")


def check_cleanup() -> None:
    """Namespaces, links and iptables rules need root and the tools that make them."""
    if os.geteuid() != 0:
        raise NotRootError("not root: the local backend (network namespaces and iptables) "
                           "needs root; run splitbrain as root (e.g. with sudo)")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            raise UsageError(f"the local backend needs {tool!r}; install iproute2 and "
                             "iptables")


def from_spec(spec: Spec) -> LocalRemote:
    return LocalRemote()


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

    def check_environment(self) -> None:
        check_cleanup()

    def setup(self, nodes: Sequence[str]) -> None:
        self.check_environment()
        if len(set(nodes)) != len(nodes) or not nodes:
            raise UsageError(f"node names must be distinct and non-empty: {list(nodes)}")
        if bad := [n for n in nodes if not NODE_NAME.fullmatch(n)]:
            raise UsageError(f"bad node name {bad[0]!r}: use letters, digits, '_', '.', '-'")
        if self.ledger is not None:
            raise RemoteError(f"cluster {self.run_id} is already set up")
        with locked(self.state_dir):
            subnet = choose_subnet(self.state_dir, len(nodes), self.requested_subnet)
            self.ledger = new_ledger(self.state_dir, backend="local", subnet=str(subnet),
                                     nodes=list(nodes))
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

    def peer_address(self, node: str) -> str:
        self._check_node(node)
        return self._addresses[node]

    def endpoint(self, node: str, port: int) -> tuple[str, int]:
        """The controller sits on the nodes' bridge: it connects to the peer address."""
        return (self.peer_address(node), port)

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


# -- removers (for teardown and `splitbrain cleanup`) -----------------------------------

Resource = dict[str, Any]


def _cmd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def netns_pids(name: str) -> list[int]:
    """Pids of the processes living in network namespace ``name`` (empty if it is gone)."""
    out = _cmd("ip", "netns", "pids", name)
    return [int(p) for p in out.stdout.split()] if out.returncode == 0 else []


def kill_netns_processes(name: str, timeout: float = 5.0) -> int:
    """SIGKILLs everything in the namespace until it is empty; returns how many it killed.

    Repeats because a process may fork between listing and killing.
    """
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while (pids := netns_pids(name)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    if netns_pids(name):
        raise RuntimeError(f"processes in namespace {name} survive SIGKILL")
    return len(killed)


def _empty_netns(r: Resource) -> list[str]:
    name = r["name"]
    killed = kill_netns_processes(name)
    return [f"killed {killed} process{'es' * (killed != 1)} in namespace {name}"] if killed \
        else []


def _remove_netns(r: Resource) -> list[str]:
    name = r["name"]
    lines = _empty_netns(r)
    if Path("/run/netns", name).exists():
        out = _cmd("ip", "netns", "delete", name)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        lines.append(f"removed namespace {name}")
    return lines


def _remove_link(r: Resource) -> list[str]:
    name = r["name"]
    if _cmd("ip", "link", "show", "dev", name).returncode != 0:
        return []
    out = _cmd("ip", "link", "delete", "dev", name)
    # A veth vanishes by itself when its peer's namespace goes: gone is as good as removed.
    if out.returncode != 0 and _cmd("ip", "link", "show", "dev", name).returncode == 0:
        raise RuntimeError(out.stderr.strip())
    return [f"removed {r.get('what', 'link')} {name}"]


def _remove_iptables_rule(r: Resource) -> list[str]:
    table, chain, rule = r["table"], r["chain"], list(r["rule"])
    removed = 0
    while _cmd("iptables", "-w", "-t", table, "-C", chain, *rule).returncode == 0:
        out = _cmd("iptables", "-w", "-t", table, "-D", chain, *rule)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        removed += 1
    return [f"removed iptables rule -t {table} -A {chain} {' '.join(rule)}"] if removed else []


def _remove_dir(r: Resource) -> list[str]:
    path = Path(r["path"])
    if not path.exists():
        return []
    if not path.is_absolute() or r.get("run_id") not in path.parts:
        # A guard against a damaged ledger: a run's directories are named after it.
        raise RuntimeError(f"refusing to remove {path}: not a directory of run {r.get('run_id')}")
    shutil.rmtree(path)
    return [f"removed directory {path}"]


register_remover("netns", _remove_netns, quiesce=_empty_netns)
register_remover("link", _remove_link)
register_remover("iptables", _remove_iptables_rule)
register_remover("dir", _remove_dir)
