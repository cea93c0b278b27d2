"""The backend conformance suite: one set of tests, run unchanged on every backend.

Each backend gets a 3-node cluster of its own (with a state directory of its own, so
other runs on this machine change nothing here) and must: run commands with a timeout
that kills them on the node, move files both ways, host daemons that can be started,
killed, paused and resumed, take partitions, packet loss and latency between nodes
while the controller still reaches every node, tear down to nothing, and be cleaned up
by ``splitbrain cleanup`` after its controller is SIGKILLed (on Docker, the labels'
sweep is tested too). The Docker backend needs a
running engine and the node image (``splitbrain image build``); it is skipped with the
reason when either is missing. The ssh backend runs against real sshd hosts in network
namespaces (``tests/sshd_hosts.py``), made once for the session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster import net
from harness.cluster.cleanup import cleanup_all
from harness.cluster.remote import Remote, RemoteError, Result
from harness.context import Spec
from harness.context import Test as RunContext
from harness.daemon import daemon_running, kill_daemon, node_python, signal_daemon, start_daemon
from harness.errors import UsageError
from nemeses.latency import LatencyNemesis

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="the backends need root")]

REPO = Path(__file__).parents[1]
NODES = ["n1", "n2", "n3"]
PORT = 7070
BACKENDS = ["local", "docker", "ssh"]



def make(backend: str, state_dir: Path | str) -> Remote:
    """A backend's Remote with a state directory of its own (ledgers, local workdirs)."""
    from harness.cluster.backends.docker import DockerRemote
    from harness.cluster.backends.local import LocalRemote

    if backend == "ssh":
        from harness.cluster.backends.ssh import SSHRemote
        from tests.sshd_hosts import settings_from_env

        return SSHRemote(settings=settings_from_env(), state_dir=state_dir)
    cls = LocalRemote if backend == "local" else DockerRemote
    return cls(state_dir=state_dir)


def docker_ready() -> str | None:
    """Why the docker backend cannot run here, or None."""
    from harness.cluster.backends.docker import DockerRemote

    try:
        DockerRemote().check_environment()
    except UsageError as e:
        return str(e)
    return None


def skip_unless_ready(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "docker" and (why := docker_ready()):
        pytest.skip(why)
    if backend == "ssh":
        if not os.path.exists("/usr/sbin/sshd"):
            pytest.skip("no /usr/sbin/sshd (apt-get install openssh-server)")
        request.getfixturevalue("ssh_hosts")


@pytest.fixture(scope="session")
def ssh_hosts(tmp_path_factory):
    """Three sshd hosts n1..n3 (aliases in an ssh config), their settings exported for
    child processes."""
    from tests.sshd_hosts import SshdHosts

    hosts = SshdHosts(tmp_path_factory.mktemp("sshd-hosts"), len(NODES))
    hosts.export()
    yield hosts
    hosts.close()


def leftovers(backend: str, run_id: str) -> list[str]:
    """What of run ``run_id`` still exists on the host: namespaces and links, or
    containers and networks."""
    if backend == "ssh":  # the hosts share this file system and process table
        mark = f"splitbrain-{run_id}"
        found = [str(p) for p in Path("/var/tmp").glob(mark)]
        for fd in Path("/proc").glob("[0-9]*/fd/*"):
            with contextlib.suppress(OSError):
                if mark in os.readlink(fd):
                    found.append(f"{fd}: {os.readlink(fd)}")
        return found
    if backend == "local":
        found = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        found += subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
        return [line for line in found.splitlines() if run_id in line]
    found = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"],
                           capture_output=True, text=True).stdout
    found += subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                            capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if run_id in line]


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request, tmp_path_factory):
    skip_unless_ready(request.param, request)
    remote = make(request.param, tmp_path_factory.mktemp(f"state-{request.param}"))
    remote.setup(NODES)
    remote.backend = request.param
    yield remote
    remote.teardown()


@pytest.fixture(scope="module")
def server(cluster):
    """A TCP echo-less server on every node (accepts and holds connections)."""
    program = ("import socket,sys,time\ns=socket.socket()\n"
               "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
               "s.bind((sys.argv[1], int(sys.argv[2])))\ns.listen(64)\n"
               "while True:\n    c,_=s.accept()\n    c.sendall(b'hi')\n    c.close()\n")
    for node in NODES:
        wd = cluster.workdir(node)
        cluster.run(node, ["mkdir", "-p", wd])
        cluster.run(node, ["sh", "-c", f"cat > {wd}/srv.py"], input=program)
        start_daemon(cluster, node, [node_python(cluster, node), f"{wd}/srv.py",
                                     cluster.peer_address(node), str(PORT)],
                     pidfile=f"{wd}/srv.pid", logfile=f"{wd}/srv.log")
    for node in NODES:
        assert answers(cluster, node, timeout=10), node
    return {node: f"{cluster.workdir(node)}/srv.pid" for node in NODES}


def answers(remote: Remote, node: str, timeout: float = 2.0) -> bool:
    """Whether the controller gets the server's greeting through the node's endpoint."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(remote.endpoint(node, PORT), timeout=0.5) as s:
                s.settimeout(0.5)
                if s.recv(2) == b"hi":
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


REACH = ("import socket,sys,time\nt=time.monotonic()\n"
         "try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)"
         ".recv(2)\n    print('open', time.monotonic()-t)\n"
         "except OSError as e:\n    print(type(e).__name__, 0)\n")


def reach(remote: Remote, src: str, dst: str) -> tuple[str, float]:
    """From ``src``, connect to ``dst``'s server at its peer address by its node name."""
    out = remote.run(src, [node_python(remote, src), "-c", REACH, remote.peer_address(dst),
                           str(PORT)]).stdout.split()
    return out[0], float(out[1])


def test_run_returns_status_output_and_input(cluster):
    assert cluster.run("n1", ["sh", "-c", "echo out; echo err >&2; exit 3"],
                       check=False) == Result(3, "out\n", "err\n")
    assert cluster.run("n2", ["cat"], input="hello").stdout == "hello"
    with pytest.raises(RemoteError, match="n3"):
        cluster.run("n3", ["false"])


def test_run_timeout_kills_the_command_on_the_node(cluster):
    began = time.monotonic()
    with pytest.raises(RemoteError, match="timed out"):
        cluster.run("n1", ["sh", "-c", "sleep 301 & sleep 302; wait"], timeout=1)
    assert time.monotonic() - began < 10
    time.sleep(0.5)
    procs = cluster.run("n1", ["ps", "-eo", "stat,args"]).stdout
    # Exactly these sleeps: the hosts may share a process table with other tests.
    assert not [p for p in procs.splitlines()
                if p.split()[1:] in (["sleep", "301"], ["sleep", "302"]) and p[0] != "Z"]


def test_upload_and_download_files_and_trees(cluster, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha")
    (tree / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    wd = cluster.workdir("n2")
    cluster.upload("n2", str(tree / "a.txt"), f"{wd}/up/one.txt")
    assert cluster.run("n2", ["cat", f"{wd}/up/one.txt"]).stdout == "alpha"
    cluster.upload("n2", str(tree), f"{wd}/up/tree")
    back = tmp_path / "back"
    cluster.download("n2", f"{wd}/up/tree", str(back))
    assert (back / "sub" / "b.bin").read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    cluster.download("n2", f"{wd}/up/one.txt", str(tmp_path / "one.txt"))
    assert (tmp_path / "one.txt").read_text() == "alpha"
    with pytest.raises(RemoteError):
        cluster.download("n2", f"{wd}/no-such-file", str(tmp_path / "x"))


def test_daemon_kill_pause_resume_and_start(cluster, server):
    pidfile = server["n3"]
    assert daemon_running(cluster, "n3", pidfile)
    signal_daemon(cluster, "n3", pidfile, signal.SIGSTOP)
    assert not answers(cluster, "n3", timeout=1)
    signal_daemon(cluster, "n3", pidfile, signal.SIGCONT)
    assert answers(cluster, "n3", timeout=5)
    kill_daemon(cluster, "n3", pidfile)
    assert not daemon_running(cluster, "n3", pidfile)
    assert not answers(cluster, "n3", timeout=0.5)
    wd = cluster.workdir("n3")
    start_daemon(cluster, "n3", [node_python(cluster, "n3"), f"{wd}/srv.py",
                                 cluster.peer_address("n3"), str(PORT)],
                 pidfile=pidfile, logfile=f"{wd}/srv.log")
    assert answers(cluster, "n3", timeout=10)


def test_partition_cuts_nodes_not_the_controller(cluster, server):
    try:
        net.drop(cluster, NODES, {"n1": ["n2"], "n2": ["n1"]})
        assert reach(cluster, "n1", "n2")[0] == "TimeoutError"
        assert reach(cluster, "n1", "n3")[0] == "open"
        assert all(answers(cluster, n) for n in NODES)
    finally:
        net.heal(cluster, NODES)
    assert reach(cluster, "n1", "n2")[0] == "open"


def test_loss_drops_packets_between_nodes(cluster, server):
    try:
        net.drop(cluster, NODES, {"n3": ["n1"]}, probability=1.0)
        assert reach(cluster, "n1", "n3")[0] == "TimeoutError"
        assert answers(cluster, "n3")
    finally:
        net.heal(cluster, NODES, chain=net.LOSS_CHAIN)
    assert reach(cluster, "n1", "n3")[0] == "open"


def test_latency_delays_packets_between_nodes(cluster, server, tmp_path):
    test = RunContext(Spec(nodes=NODES, backend=cluster.backend), cluster, tmp_path)
    nemesis = LatencyNemesis(delay=0.2, jitter=0.0)
    nemesis.setup(test)
    try:
        from harness.history import Op

        nemesis.invoke(test, Op("invoke", "start-latency", None, "nemesis"))
        state, seconds = reach(cluster, "n1", "n2")
        assert state == "open" and seconds >= 0.2
    finally:
        nemesis.teardown(test)
    state, seconds = reach(cluster, "n1", "n2")
    assert state == "open" and seconds < 0.2


CONTROLLER = """
import sys, time
from tests.test_backends import make
from harness.daemon import start_daemon
remote = make(sys.argv[1], sys.argv[2])
remote.setup(["n1", "n2"])
wd = remote.workdir("n1")
start_daemon(remote, "n1", ["sleep", "600"], pidfile=wd + "/s.pid", logfile=wd + "/s.log")
print(remote.run_id, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_teardown_and_cleanup_after_sigkill_leave_nothing(backend, tmp_path, request):
    skip_unless_ready(backend, request)
    remote = make(backend, tmp_path / "a")
    remote.setup(["n1"])
    run_id = remote.run_id
    assert leftovers(backend, run_id)
    remote.teardown()
    remote.teardown()  # idempotent
    assert leftovers(backend, run_id) == []

    state = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-c", CONTROLLER, backend, str(state)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id and leftovers(backend, run_id)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = cleanup_all(state)
    assert leftovers(backend, run_id) == [], lines
    assert cleanup_all(state) == ["nothing to clean up"]


def test_docker_sweep_removes_only_labelled_containers_of_dead_controllers(tmp_path,
                                                                          request):
    """The labels are a safety net for a run whose ledger is lost: cleanup removes a
    labelled container whose controller is dead, and leaves one whose controller lives
    and one splitbrain never labelled."""
    skip_unless_ready("docker", request)
    from harness.cluster.backends.docker import CONTROLLER_LABEL, RUN_LABEL, connect
    from harness.cluster.image import default_image
    from harness.cluster.ledger import process_start_time

    api = connect().api
    dead = subprocess.Popen(["true"])
    dead.wait()
    me = f"{os.getpid()}:{process_start_time(os.getpid())}"
    made = {
        "orphan": {RUN_LABEL: "sweep1", CONTROLLER_LABEL: f"{dead.pid}:1"},
        "alive": {RUN_LABEL: "sweep2", CONTROLLER_LABEL: me},
        "foreign": {"someone.else": "x"},
    }
    names = {key: f"sbtest-sweep-{key}-{os.getpid()}" for key in made}
    try:
        for key, labels in made.items():
            api.create_container(default_image(), name=names[key], labels=labels)
        lines = cleanup_all(tmp_path)
        left = {c["Names"][0].lstrip("/") for c in api.containers(all=True)}
        assert names["orphan"] not in left, lines
        assert names["alive"] in left and names["foreign"] in left
    finally:
        for name in names.values():
            with contextlib.suppress(Exception):
                api.remove_container(name, force=True)
