"""LocalRemote with real namespaces, a real bridge, real iptables and real servers.

Runs with the Docker engine up (started here if it is installed and not running), whose
FORWARD policy DROP would cut nodes apart without LocalRemote's ACCEPT rule; the policy
is also set to DROP explicitly, so the test means the same with or without Docker.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.cluster.backends.local import LocalRemote
from harness.cluster.remote import Remote, RemoteError
from harness.daemon import start_daemon
from harness.errors import NotRootError, UsageError

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

NODES = [f"n{i}" for i in range(1, 6)]
HTTP_PORT = 8000


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def ensure_dockerd() -> None:
    """Starts the Docker engine if it is installed and not running, and leaves it running."""
    if Path("/var/run/docker.sock").exists() or shutil.which("dockerd") is None:
        return
    log = open("/var/log/splitbrain-test-dockerd.log", "ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 30
    while not Path("/var/run/docker.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def forward_drop():
    """Docker running and FORWARD's policy DROP; the policy is restored afterwards."""
    ensure_dockerd()
    before = "DROP" if "-P FORWARD DROP" in sh("iptables", "-w", "-S", "FORWARD") else "ACCEPT"
    subprocess.run(["iptables", "-w", "-P", "FORWARD", "DROP"], check=True)
    yield
    subprocess.run(["iptables", "-w", "-P", "FORWARD", before], check=True)


@pytest.fixture(scope="module")
def cluster(forward_drop):
    remote = LocalRemote()
    began = time.monotonic()
    remote.setup(NODES)
    up = time.monotonic() - began
    print(f"\n5-node cluster up in {up:.3f} s")
    yield remote
    began = time.monotonic()
    remote.teardown()
    print(f"\n5-node cluster down in {time.monotonic() - began:.3f} s")


def http_get(url: str, timeout: float = 3.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status


def serve_http(remote: LocalRemote, node: str) -> int:
    """A python http.server on ``node``'s address, started as a daemon; returns its pid."""
    wd = remote.workdir(node)
    pid = start_daemon(remote, node, [sys.executable, "-m", "http.server", "-b",
                                      remote.peer_address(node), str(HTTP_PORT)],
                       pidfile=f"{wd}/http.pid", logfile=f"{wd}/http.log", cwd=wd)
    url = f"http://{remote.peer_address(node)}:{HTTP_PORT}/"
    deadline = time.monotonic() + 10
    while True:
        try:
            http_get(url, timeout=1)
            return pid
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


FETCH = ("import sys, urllib.request; "
         "print(urllib.request.urlopen(sys.argv[1], timeout=3).status)")


def fetch_from(remote: LocalRemote, node: str, target: str) -> str:
    """Makes ``node`` fetch ``target``'s web page; returns the status or the error."""
    result = remote.run(node, [sys.executable, "-c", FETCH,
                               f"http://{remote.peer_address(target)}:{HTTP_PORT}/"], check=False)
    return result.stdout.strip() if result.returncode == 0 else "unreachable"


def test_is_a_remote(cluster):
    assert isinstance(cluster, Remote)


def test_cluster_comes_up_fast():
    remote = LocalRemote()
    began = time.monotonic()
    remote.setup(NODES)
    try:
        assert time.monotonic() - began < 5
    finally:
        remote.teardown()


def test_names_and_addresses(cluster):
    addresses = [cluster.peer_address(n) for n in NODES]
    assert len(set(addresses)) == len(NODES)
    subnet = cluster.subnet
    assert not subnet.overlaps(ipaddress.IPv4Network("172.17.0.0/16"))
    assert all(ipaddress.IPv4Address(a) in subnet for a in addresses)
    assert cluster.bridge_address not in addresses
    names = sh("ip", "netns", "list")
    for node in NODES:
        assert cluster.namespace(node) in names
        assert cluster.run_id in cluster.namespace(node)
    links = sh("ip", "-o", "link", "show", "master", cluster.bridge).splitlines()
    assert len(links) == len(NODES)
    for name in [cluster.bridge] + [line.split(":")[1].strip().split("@")[0] for line in links]:
        assert cluster.run_id in name
        assert len(name) <= 15


def test_run_is_inside_the_namespace_with_loopback_up(cluster):
    out = cluster.run("n3", ["ip", "-o", "-4", "addr", "show"]).stdout
    assert cluster.peer_address("n3") in out
    assert "127.0.0.1" in out
    assert cluster.peer_address("n1") not in out
    # No route anywhere but the cluster's own subnet.
    assert "default" not in cluster.run("n3", ["ip", "route"]).stdout


def test_run_exit_status_input_and_errors(cluster):
    assert cluster.run("n1", ["cat"], input="hello").stdout == "hello"
    result = cluster.run("n1", ["sh", "-c", "echo oops >&2; exit 3"], check=False)
    assert (result.returncode, result.stderr.strip()) == (3, "oops")
    with pytest.raises(RemoteError, match="oops"):
        cluster.run("n1", ["sh", "-c", "echo oops >&2; exit 3"])
    with pytest.raises(RemoteError, match="unknown node"):
        cluster.run("nope", ["true"])


def test_run_timeout_kills_the_command_and_its_children(cluster):
    marker = f"sb-timeout-{os.getpid()}"
    began = time.monotonic()
    with pytest.raises(RemoteError, match="timed out"):
        # The background child keeps stdout open: the wait must not depend on it.
        cluster.run("n2", ["sh", "-c", 'sleep 300 & exec "$@"', "sh", sys.executable, "-c",
                           "import time; time.sleep(300)", marker], timeout=0.5)
    assert time.monotonic() - began < 3
    time.sleep(0.1)
    assert marker not in sh("ps", "-eo", "args")


def test_controller_and_nodes_reach_each_other(cluster):
    for node in ("n2", "n4"):
        serve_http(cluster, node)
    assert http_get(f"http://{cluster.peer_address('n2')}:{HTTP_PORT}/") == 200
    assert fetch_from(cluster, "n1", "n2") == "200"
    assert fetch_from(cluster, "n5", "n4") == "200"
    assert fetch_from(cluster, "n2", "n4") == "200"


def test_upload_download_and_workdir(cluster, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("payload")
    workdir = cluster.workdir("n3")
    assert Path(workdir).is_dir()
    assert workdir != cluster.workdir("n4")
    cluster.upload("n3", str(source), f"{workdir}/sub/file.txt")
    assert cluster.run("n3", ["cat", f"{workdir}/sub/file.txt"]).stdout == "payload"
    cluster.download("n3", f"{workdir}/sub", str(tmp_path / "back"))
    assert (tmp_path / "back" / "file.txt").read_text() == "payload"
    with pytest.raises(RemoteError, match="cannot copy"):
        cluster.download("n3", f"{workdir}/missing", str(tmp_path / "x"))


def test_concurrent_clusters_get_separate_subnets(cluster):
    other = LocalRemote()
    other.setup(["n1", "n2"])
    try:
        assert not other.subnet.overlaps(cluster.subnet)
        assert other.namespace("n1") != cluster.namespace("n1")
        assert other.run("n1", ["true"]).returncode == 0
    finally:
        other.teardown()


def test_explicit_subnet_is_used_and_validated(forward_drop):
    remote = LocalRemote("10.214.7.0/28")
    remote.setup(["a", "b"])
    try:
        assert remote.peer_address("a") == "10.214.7.2"
        assert remote.bridge_address == "10.214.7.1"
        with pytest.raises(UsageError, match="overlaps"):
            LocalRemote("10.214.7.0/24").setup(["x"])
    finally:
        remote.teardown()
    with pytest.raises(UsageError, match="too small"):
        LocalRemote("10.214.8.0/30").setup(["a", "b", "c"])
    with pytest.raises(UsageError, match="bad subnet"):
        LocalRemote("10.214.300.0/24")


def proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (R, S, T, Z...), None if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next(line.split()[1] for line in lines if line.startswith("State:"))


def test_bad_node_names_are_usage_errors(forward_drop):
    for nodes in (["n1", "n1"], ["../etc"], ["a b"], []):
        with pytest.raises(UsageError):
            LocalRemote().setup(nodes)


def snapshot() -> dict[str, str]:
    return {
        "netns": sh("ip", "netns", "list"),
        "links": sh("ip", "-o", "link"),
        "iptables": sh("iptables", "-w", "-S"),
        "forward": sh("iptables", "-w", "-S", "FORWARD"),
        "processes": sh("ps", "-eo", "pid,stat,args"),
    }


def test_teardown_removes_everything_and_is_idempotent(forward_drop):
    remote = LocalRemote()
    remote.setup(["n1", "n2", "n3"])
    run_id = remote.run_id
    pid = serve_http(remote, "n1")
    stray = remote.run("n2", ["sh", "-c", "sleep 300 > /dev/null 2>&1 & echo $!"]).stdout
    ledger, workdirs = remote.ledger.path, Path(remote.workdir("n1")).parent
    assert ledger.exists() and workdirs.is_dir()

    remote.teardown()
    remote.teardown()
    state = snapshot()
    for what, text in state.items():
        assert run_id not in text, f"{what} still mentions run {run_id}"
    for leftover in (pid, int(stray)):
        assert proc_state(leftover) in (None, "Z")  # PID 1 may never reap the dead
    assert not ledger.exists() and not workdirs.exists()


NOT_ROOT_PROGRAM = """
from harness.cluster.backends.local import LocalRemote
try:
    LocalRemote().setup(["n1"])
except Exception as e:
    print(type(e).__name__, e, sep=": ")
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
def test_not_root_is_a_one_line_usage_error():
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-c", NOT_ROOT_PROGRAM],
        capture_output=True, text=True, cwd=str(Path(__file__).parents[1]),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    if "ModuleNotFoundError" in result.stderr or "Permission denied" in result.stderr:
        pytest.skip(f"nobody cannot import the package here: {result.stderr.strip()[-200:]}")
    line = result.stdout.strip()
    assert line.startswith(f"{NotRootError.__name__}: not root: the local backend"), result
    assert "\n" not in line
    assert issubclass(NotRootError, UsageError)  # so the CLI prints it as one line, exit 254
