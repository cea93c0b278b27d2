"""Kill, pause and resume reach every process of a system on its node: a forking toy
daemon and a real PostgreSQL with busy backends, in a real network namespace.

The processes are counted independently of ``harness.daemon``: every process inside the
node's network namespace (the local backend shares the host's pid space) that matches the
system (the toy's marker in its command line, or the ``postgres`` user), read straight
from /proc by the test.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cluster.backends.local import LocalRemote
from harness.context import Spec
from harness.context import Test as RunContext  # not Test*: pytest would collect it
from harness.daemon import (
    daemon_processes,
    daemon_running,
    kill_daemon,
    signal_daemon,
    start_daemon,
    stop_daemon,
)
from harness.systems.daemon_db import DaemonDB, ServerPaths, ServerStartError

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

# The toy: setsid workers (as PostgreSQL's backends), one of them orphaned by a double
# fork and reparented out of the tree, one with a scrubbed environment, and a parent
# that forks a short-lived child every 20 ms, so a kill races with fork.
TOY = textwrap.dedent("""
    import os, sys, time
    marker = sys.argv[1]
    def spin():
        while True:
            time.sleep(0.05)
    for kind in ("orphan", "scrubbed", "plain"):
        if os.fork() == 0:
            os.setsid()
            if kind == "orphan" and os.fork():
                os._exit(0)
            if kind == "scrubbed":
                os.execve(sys.executable, [sys.executable, "-c",
                          "import time\\nwhile True: time.sleep(0.05)", marker], {})
            spin()
    while True:
        if os.fork() == 0:
            time.sleep(0.2)
            os._exit(0)
        time.sleep(0.02)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
""")


@pytest.fixture(scope="module")
def remote():
    r = LocalRemote()
    r.setup(["n1"])
    yield r
    r.teardown()


def node_processes(remote: LocalRemote, node: str,
                   matches: Callable[[int, str], bool]) -> dict[int, str]:
    """pid -> state letter of every living (non-zombie) process in the node's namespace
    for which ``matches(uid, cmdline)``."""
    ns = os.stat(f"/run/netns/{remote.namespace(node)}").st_ino
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino != ns:
                continue
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        state, uid = fields["State"].split()[0], int(fields["Uid"].split()[0])
        if state not in ("Z", "X") and matches(uid, cmdline):
            found[int(entry.name)] = state
    return found


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- the forking toy ---------------------------------------------------------------------

@pytest.fixture
def toy(remote, request, tmp_path):
    marker = f"toy-marker-{request.node.name}"
    base = Path(remote.workdir("n1")) / request.node.name
    pidfile = str(base / "toy.pid")
    script = tmp_path / "toy.py"
    script.write_text(TOY)

    def count() -> dict[int, str]:
        return node_processes(remote, "n1", lambda uid, cmd: marker in cmd)

    def start() -> None:
        start_daemon(remote, "n1", [sys.executable, str(script), marker], pidfile=pidfile,
                     logfile=str(base / "toy.log"))
        # parent, orphan, scrubbed, plain, and at least one short-lived child
        assert wait_for(lambda: len(count()) >= 5), count()

    start()
    yield remote, pidfile, count, start
    kill_daemon(remote, "n1", pidfile)
    assert not count()


def test_kill_leaves_no_process_of_a_forking_daemon_and_restart_works(toy):
    remote, pidfile, count, start = toy
    orphan_reparented = wait_for(lambda: any(
        _ppid(p) not in count() for p in count() if p != _root(pidfile)))
    assert orphan_reparented  # the double-forked worker has left the tree
    kill_daemon(remote, "n1", pidfile)
    assert count() == {}  # at once: kill waits until everything is gone
    time.sleep(0.3)
    assert count() == {}  # and nothing forked in the meantime comes back
    assert not daemon_running(remote, "n1", pidfile)
    assert daemon_processes(remote, "n1", pidfile) == []
    start()  # right after the kill, over the pid file it left
    assert daemon_running(remote, "n1", pidfile)


def test_pause_stops_every_process_and_resume_continues_every_one(toy):
    remote, pidfile, count, _ = toy
    assert signal_daemon(remote, "n1", pidfile, signal.SIGSTOP)
    paused = count()
    assert len(paused) >= 4 and set(paused.values()) == {"T"}, paused
    assert set(daemon_processes(remote, "n1", pidfile)) == set(paused)
    time.sleep(0.3)
    assert count() == paused  # frozen: nothing forks, nothing exits
    assert signal_daemon(remote, "n1", pidfile, signal.SIGCONT)
    resumed = count()
    assert resumed and "T" not in resumed.values(), resumed
    assert wait_for(lambda: set(count()) - set(paused))  # forking again


def test_stop_ends_a_paused_forking_daemon(toy):
    remote, pidfile, count, _ = toy
    signal_daemon(remote, "n1", pidfile, signal.SIGSTOP)
    stop_daemon(remote, "n1", pidfile, timeout=1)
    assert count() == {}
    assert not Path(pidfile).exists()


def test_workers_outliving_their_root_are_still_found_and_killed(toy):
    """The root dies alone (as when only the main process crashes): its workers are
    reparented away from the tree, yet the tag finds them. The one blind spot, said in
    harness.daemon: a worker that scrubbed its environment and lost its parent."""
    remote, pidfile, count, _ = toy
    os.kill(_root(pidfile), signal.SIGKILL)
    assert wait_for(lambda: not daemon_running(remote, "n1", pidfile))
    time.sleep(0.5)  # the short-lived children have ended
    scrubbed = {pid for pid in count() if "import time" in _cmdline(pid)}
    tagged = set(count()) - scrubbed
    assert len(scrubbed) == 1 and len(tagged) == 2  # the orphan and the plain worker
    assert set(daemon_processes(remote, "n1", pidfile)) == tagged
    kill_daemon(remote, "n1", pidfile)
    assert set(count()) == scrubbed
    os.kill(scrubbed.pop(), signal.SIGKILL)
    assert wait_for(lambda: count() == {})


def test_a_recycled_pid_is_not_taken_for_the_daemon(remote, tmp_path):
    """The pid file names a pid that now belongs to another process: not ours."""
    pidfile = str(Path(remote.workdir("n1")) / "recycled" / "d.pid")
    start_daemon(remote, "n1", ["sleep", "300"], pidfile=pidfile,
                 logfile=str(Path(pidfile).with_suffix(".log")))
    kill_daemon(remote, "n1", pidfile)
    stranger = subprocess.Popen(["ip", "netns", "exec", remote.namespace("n1"), "sleep", "300"])
    try:
        Path(pidfile).write_text(f"{stranger.pid}\n")
        assert not daemon_running(remote, "n1", pidfile)
        kill_daemon(remote, "n1", pidfile)
        assert stranger.poll() is None  # left alone
    finally:
        stranger.kill()
        stranger.wait()


def _root(pidfile: str) -> int:
    return int(Path(pidfile).read_text())


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


# -- PostgreSQL with busy backends, on every backend ----------------------------------

CONTROLLER_PSQL = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
needs_postgres = pytest.mark.skipif(not CONTROLLER_PSQL,
                                    reason="PostgreSQL is not installed (.ci/setup installs it)")

STATES = (r'''me=$(id -u postgres); for d in /proc/[0-9]*; do '''
          r'''u=$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "$d/status" 2>/dev/null); '''
          r'''st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "$d/status" 2>/dev/null); '''
          r'''[ "$u" = "$me" ] && [ "$st" != Z ] && printf %s "$st"; done; echo''')
"""The state letters of the postgres user's living processes on the node, read from the
node's /proc by a script of the test's own (the local backend's nodes share the host's
pid space, but its namespaces hold one run each and postgres runs only in n1's)."""


def _docker_missing() -> str | None:
    from harness.cluster.backends.docker import DockerRemote
    from harness.errors import UsageError

    try:
        DockerRemote().check_environment()
    except UsageError as e:
        return str(e)
    return None


@pytest.fixture(scope="module", params=["local", "docker"])
def pg(request):
    from harness.systems.postgres_counter import PostgresDB, PostgresOptions

    if request.param == "local":
        remote = LocalRemote()
    else:
        if why := _docker_missing():
            pytest.skip(why)
        from harness.cluster.backends.docker import DockerRemote
        remote = DockerRemote()
    remote.setup(["n1"])
    test = RunContext(Spec(nodes=["n1"], system="postgres", backend=request.param), remote,
                      Path("/tmp"))
    db = PostgresDB(PostgresOptions())

    def states() -> str:
        """Sorted state letters of the postgres user's living processes on n1."""
        return "".join(sorted(remote.run("n1", ["sh", "-c", STATES]).stdout.strip()))

    try:
        db.setup(test, "n1")
        yield test, db, states
        db.teardown(test, "n1")
        assert states() == ""
    finally:
        remote.teardown()


BUSY = "DO $$BEGIN LOOP PERFORM 1; END LOOP; END$$"
"""A statement that never ends and never waits: its backend never looks whether the
postmaster is still alive (only waits do), so a kill that misses it leaves it running."""


def psql(test: RunContext, *args: str) -> list[str]:
    """A psql command line on the controller, connecting to n1 as clients do."""
    from harness.systems.postgres_counter import PostgresOptions

    host, port = test.remote.endpoint("n1", PostgresOptions().port)  # the fixture's server
    return [CONTROLLER_PSQL[-1], "-h", host, "-p", str(port), "-U", "postgres", *args]


def busy_clients(test: RunContext, n: int) -> list[subprocess.Popen]:
    """``n`` psql sessions, each busy in ``BUSY`` after committing an increment."""
    return [subprocess.Popen(psql(test, "-c", "UPDATE likes SET n = n + 1", "-c", BUSY),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(n)]


def query(test: RunContext, sql: str, timeout: float = 10) -> str:
    return subprocess.run(psql(test, "-tAc", sql), capture_output=True, text=True,
                          timeout=timeout, check=True).stdout.strip()


def busy(test: RunContext) -> int:
    """How many sessions are running ``BUSY``."""
    return int(query(test, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'DO %' "
                           "AND state = 'active'"))


def end_sessions(test: RunContext) -> None:
    """Ends the busy statements (a backend in a loop never notices its client left)."""
    query(test, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")


def stop_clients(clients: list[subprocess.Popen]) -> None:
    for c in clients:
        c.kill()
        c.wait()


def zombie_on_node(test: RunContext) -> tuple[str, int]:
    """A zombie on n1 (the child of a process that never reaps): its pid looks alive to
    kill(pid, 0), as an unreaped old postmaster does where the node's PID 1 never reaps.
    Returns the parent's pid file (kill_daemon ends it) and the zombie's pid."""
    pidfile = f"{test.remote.workdir('n1')}/zombie-maker.pid"
    parent = start_daemon(test.remote, "n1", ["sh", "-c", "true & exec sleep 120"],
                          pidfile=pidfile, logfile=f"{test.remote.workdir('n1')}/zombie.log")
    find = (f"for d in /proc/[0-9]*; do grep -q '^PPid:[[:space:]]*{parent}$' $d/status "
            "2>/dev/null && grep -q '^State:[[:space:]]*Z' $d/status && echo ${d#/proc/}; "
            "done; :")
    def zombies() -> list[str]:
        return test.remote.run("n1", ["sh", "-c", find]).stdout.split()

    assert wait_for(lambda: bool(zombies()))
    return pidfile, int(zombies()[0])


@needs_postgres
@pytest.mark.slow
def test_postgres_kill_leaves_no_backend_and_restart_works_over_the_crash(pg):
    test, db, states = pg
    clients = busy_clients(test, 4)
    try:
        assert wait_for(lambda: busy(test) == 4)
        assert query(test, "SELECT n FROM likes") == "4"
        db.kill(test, "n1")
        assert states() == ""
        # Every busy session lost its server: none was left to go on.
        for c in clients:
            assert c.wait(timeout=10) != 0
    finally:
        stop_clients(clients)
    lock = f"{db.paths(test, 'n1').data_dir}/postmaster.pid"
    test.remote.run("n1", ["test", "-s", lock])  # the crash left its lock file
    db.start(test, "n1")
    assert query(test, "SELECT n FROM likes") == "4"  # the committed updates
    # The lock file names a pid that looks alive: the restart must still work.
    db.kill(test, "n1")
    maker, zombie = zombie_on_node(test)
    try:
        test.remote.run("n1", ["sed", "-i", f"1s/.*/{zombie}/", lock])
        db.start(test, "n1")
        assert query(test, "SELECT 1") == "1"
    finally:
        kill_daemon(test.remote, "n1", maker)


@needs_postgres
@pytest.mark.slow
def test_postgres_pause_stops_every_process_and_resume_continues_them(pg):
    test, db, states = pg
    clients = busy_clients(test, 3)
    try:
        assert wait_for(lambda: busy(test) == 3)
        running = states()
        db.pause(test, "n1")
        paused = states()
        assert paused == "T" * len(running) and len(paused) >= 8, (running, paused)
        with pytest.raises(subprocess.TimeoutExpired):
            query(test, "SELECT 1", timeout=2)  # no process of it answers
        db.resume(test, "n1")
        assert "T" not in states()
        assert query(test, "SELECT 1") == "1"
    finally:
        db.resume(test, "n1")
        end_sessions(test)
        stop_clients(clients)


class _NeverReadyDB(DaemonDB):
    """A server that runs but never becomes ready, as an etcd member without quorum."""

    server = "neverready"
    startup_timeout = 3.0
    restart_wait = 0.5

    def argv(self, test: RunContext, node: str, paths: ServerPaths) -> list[str]:
        return ["sleep", "60"]

    def ready(self, test: RunContext, node: str) -> bool:
        return False


def test_a_restart_after_a_fault_does_not_wait_for_a_server_that_cannot_be_ready(remote,
                                                                                  tmp_path):
    test = RunContext(Spec(nodes=["n1"]), remote, tmp_path)
    db = _NeverReadyDB()
    with pytest.raises(ServerStartError, match="not ready within 3 s"):
        db.setup(test, "n1")  # setting up insists: a server that never serves is a failure
    try:
        db.kill(test, "n1")
        assert not daemon_running(remote, "n1", db.paths(test, "n1").pidfile)
        began = time.monotonic()
        db.start(test, "n1")  # a nemesis's restart gives up waiting, and leaves it running
        assert time.monotonic() - began < 2.5
        assert daemon_running(remote, "n1", db.paths(test, "n1").pidfile)
    finally:
        db.teardown(test, "n1")
