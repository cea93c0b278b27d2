"""harness.daemon against real processes inside a real network namespace."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from harness.cluster.backends.local import LocalRemote
from harness.cluster.remote import RemoteError
from harness.daemon import daemon_running, kill_daemon, signal_daemon, start_daemon, stop_daemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]


@pytest.fixture(scope="module")
def remote():
    r = LocalRemote()
    r.setup(["n1"])
    yield r
    r.teardown()


@pytest.fixture
def files(remote, request):
    base = Path(remote.workdir("n1")) / request.node.name
    return str(base / "d.pid"), str(base / "d.log")


def proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (R, S, T, Z...), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        return None
    return None


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z")


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_start_runs_detached_in_the_namespace_and_stop_ends_it(remote, files):
    pidfile, logfile = files
    pid = start_daemon(remote, "n1", ["sleep", "300"], pidfile=pidfile, logfile=logfile)
    assert Path(pidfile).read_text().strip() == str(pid)
    assert daemon_running(remote, "n1", pidfile)
    assert alive(pid)
    # Its own session, inside the node's namespace, tagged with its pid file.
    assert os.getsid(pid) == pid
    assert f"SPLITBRAIN_DAEMON={pidfile}".encode() in \
        Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ns_inode = os.stat(f"/run/netns/{remote.namespace('n1')}").st_ino
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == ns_inode

    stop_daemon(remote, "n1", pidfile)
    assert not alive(pid)
    assert not daemon_running(remote, "n1", pidfile)
    assert not Path(pidfile).exists()
    stop_daemon(remote, "n1", pidfile)  # idempotent


def test_arguments_env_and_cwd_arrive_intact(remote, files, tmp_path):
    pidfile, logfile = files
    tricky = ["it's", 'a "quoted" $HOME; rm -rf /', "*", ""]
    program = ("import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['SB_X'], "
               "os.getcwd()]), flush=True)")
    start_daemon(remote, "n1", ["python3", "-c", program, *tricky], pidfile=pidfile,
                 logfile=logfile, cwd=str(tmp_path), env={"SB_X": "a b'c"})
    assert wait_for(lambda: Path(logfile).exists() and Path(logfile).read_text().strip())
    argv, env_value, cwd = json.loads(Path(logfile).read_text())
    assert argv == tricky
    assert env_value == "a b'c"
    assert cwd == str(tmp_path)


def test_log_is_appended_and_captures_stderr(remote, files):
    pidfile, logfile = files
    for word in ("first", "second"):
        start_daemon(remote, "n1", ["sh", "-c", f"echo {word}; echo {word}-err >&2"],
                     pidfile=pidfile, logfile=logfile)
        assert wait_for(lambda: not daemon_running(remote, "n1", pidfile))
    assert Path(logfile).read_text().split() == ["first", "first-err", "second", "second-err"]


def test_a_command_that_cannot_start_is_not_running(remote, files):
    pidfile, logfile = files
    start_daemon(remote, "n1", ["no-such-program-xyz"], pidfile=pidfile, logfile=logfile)
    assert wait_for(lambda: not daemon_running(remote, "n1", pidfile))
    assert "no-such-program-xyz" in Path(logfile).read_text()


def test_signal_pauses_and_resumes(remote, files):
    pidfile, logfile = files
    pid = start_daemon(remote, "n1", ["sleep", "300"], pidfile=pidfile, logfile=logfile)
    assert signal_daemon(remote, "n1", pidfile, signal.SIGSTOP)
    assert wait_for(lambda: proc_state(pid) == "T")
    assert daemon_running(remote, "n1", pidfile)  # paused is still running
    assert signal_daemon(remote, "n1", pidfile, signal.SIGCONT)
    assert wait_for(lambda: proc_state(pid) == "S")
    kill_daemon(remote, "n1", pidfile)
    assert not signal_daemon(remote, "n1", pidfile, signal.SIGCONT)


def test_kill_reaches_children_and_is_idempotent(remote, files):
    pidfile, logfile = files
    childfile = Path(pidfile).with_name("child.pid")
    pid = start_daemon(remote, "n1", ["sh", "-c", f"sleep 300 & echo $! > {childfile}; wait"],
                       pidfile=pidfile, logfile=logfile)
    assert wait_for(childfile.exists)
    child = int(childfile.read_text())
    kill_daemon(remote, "n1", pidfile)
    assert not alive(pid)
    assert wait_for(lambda: not alive(child))
    kill_daemon(remote, "n1", pidfile)
    assert Path(pidfile).exists()  # like a crash: start_daemon replaces it


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(remote, files):
    pidfile, logfile = files
    pid = start_daemon(remote, "n1", ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
                       pidfile=pidfile, logfile=logfile)
    began = time.monotonic()
    stop_daemon(remote, "n1", pidfile, timeout=0.5)
    assert 0.4 < time.monotonic() - began < 5
    assert not alive(pid)


def test_stop_ends_a_paused_daemon(remote, files):
    pidfile, logfile = files
    pid = start_daemon(remote, "n1", ["sleep", "300"], pidfile=pidfile, logfile=logfile)
    signal_daemon(remote, "n1", pidfile, signal.SIGSTOP)
    began = time.monotonic()
    stop_daemon(remote, "n1", pidfile, timeout=3)
    assert time.monotonic() - began < 2  # SIGTERM took effect; no wait for SIGKILL
    assert not alive(pid)


def test_missing_pidfile_means_not_running(remote, files):
    pidfile, _ = files
    assert not daemon_running(remote, "n1", pidfile)
    assert not signal_daemon(remote, "n1", pidfile, signal.SIGTERM)
    kill_daemon(remote, "n1", pidfile)
    stop_daemon(remote, "n1", pidfile)


def test_empty_command_and_relative_paths_are_refused(remote, files):
    pidfile, logfile = files
    with pytest.raises(ValueError):
        start_daemon(remote, "n1", [], pidfile=pidfile, logfile=logfile)
    with pytest.raises(ValueError, match="absolute"):
        start_daemon(remote, "n1", ["true"], pidfile="x.pid", logfile=logfile)


def test_unknown_node_is_an_error(remote, files):
    pidfile, logfile = files
    with pytest.raises(RemoteError, match="unknown node"):
        start_daemon(remote, "n9", ["sleep", "1"], pidfile=pidfile, logfile=logfile)
