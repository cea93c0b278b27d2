"""How a run ends when something stops it: a signal at any moment, an environment that
fails (a server that cannot start, a binary missing on a node, a user's DB that raises).

Every test runs the real command line on real namespaces and processes, then looks at
what the run left: exit code, stderr, results.json, and, for this run only (the machine
is shared with other runs), its ledger, namespaces, links, iptables rules and processes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness.cluster.ledger import STATE_DIR, Ledger, ledger_dir

pytestmark = [pytest.mark.slow, pytest.mark.root]

CLI = [sys.executable, "-c", "from harness.cli import main; main()"]
SHORT_RUN = ["-o", "variant=atomic", "--nemesis", "none", "--nodes", "1",
             "--time-limit", "1", "--concurrency", "4"]


class RunWatch:
    """One ``splitbrain`` process and what it owns: every process it starts carries a
    marker in its environment, and its ledgers (found while it runs) name its cluster."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None,
                 command: str = "run") -> None:
        self.marker = uuid.uuid4().hex
        self.store = tmp_path / "store"
        extra = ["--store", str(self.store)] if command == "run" else []
        self.proc = subprocess.Popen(
            [*CLI, command, *extra, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
            env={**os.environ, **(env or {}), "SPLITBRAIN_TEST_MARK": self.marker})
        self.run_ids: set[str] = set()
        self._watching = True
        self._watcher = threading.Thread(target=self._watch_ledgers, daemon=True)
        self._watcher.start()

    def _watch_ledgers(self) -> None:
        while self._watching:
            for path in ledger_dir(STATE_DIR).glob("*.json"):
                try:
                    ledger = Ledger.load(path)
                except (OSError, ValueError, TypeError):
                    continue
                if ledger.controller_pid == self.proc.pid:
                    self.run_ids.add(ledger.run_id)
            time.sleep(0.01)

    def wait_until_handling_signals(self, timeout: float = 30) -> None:
        """Until splitbrain's own code handles SIGTERM (it starts before its imports
        finish); before that the process is Python starting up, whose signals are its own."""
        status = Path(f"/proc/{self.proc.pid}/status")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            caught = next((line.split()[1] for line in status.read_text().splitlines()
                           if line.startswith("SigCgt:")), "0")
            if int(caught, 16) & (1 << (signal.SIGTERM - 1)):
                return
            time.sleep(0.002)
        raise AssertionError("splitbrain never handled SIGTERM")

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        self._watching = False
        self._watcher.join()
        return self.proc.returncode, out, err

    @property
    def run_dir(self) -> Path | None:
        latest = self.store / "latest"
        return latest.resolve() if latest.exists() else None

    def leftovers(self) -> list[str]:
        """Whatever of this run is still on the machine."""
        left = [f"process {pid}" for pid in _pids_with(self.marker)]
        for path in ledger_dir(STATE_DIR).glob("*.json"):
            try:
                if Ledger.load(path).controller_pid == self.proc.pid:
                    left.append(f"ledger {path}")
            except (OSError, ValueError, TypeError):
                continue
        state = "\n".join(_out(*argv) for argv in (["ip", "netns", "list"],
                                                   ["ip", "-o", "link"], ["iptables", "-S"]))
        for run_id in self.run_ids:
            left += [line for line in state.splitlines() if f"sb-{run_id}" in line
                     or f"sb{run_id}v" in line]
            if (STATE_DIR / run_id).exists():
                left.append(f"directory {STATE_DIR / run_id}")
        return left


def _out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


def _pids_with(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def _history_has(run_dir: Path | None, needle: str) -> bool:
    if run_dir is None:
        return False
    try:
        return needle in (run_dir / "history.jsonl").read_text()
    except OSError:
        return False


# -- signals -----------------------------------------------------------------------------

def test_a_signal_at_any_moment_ends_in_exit_2_and_leaves_nothing(tmp_path):
    """SIGINT and SIGTERM at random moments over a whole short run, from the start of
    the process to its exit: always exit 2, one line, no traceback, nothing left."""
    rng = random.Random(7)
    plain = RunWatch(tmp_path / "plain", *SHORT_RUN)
    plain.wait_until_handling_signals()
    t0 = time.monotonic()
    code, _, err = plain.finish()
    length = time.monotonic() - t0
    assert code == 0, err
    signalled = 0
    for i in range(10):
        sig = (signal.SIGINT, signal.SIGTERM)[i % 2]
        delay = rng.uniform(0, 0.9 * length)
        watch = RunWatch(tmp_path / str(i), *SHORT_RUN)
        watch.wait_until_handling_signals()
        time.sleep(delay)
        if watch.proc.poll() is None:
            watch.proc.send_signal(sig)
        code, out, err = watch.finish()
        where = f"{sig.name} after {delay:.2f} s of {length:.2f}: {out}{err}"
        if code == 0:  # it exited before the signal came: a run like any other
            assert "interrupted" not in err and "VALID" in out, where
        else:
            assert code == 2, where
            signalled += 1
        assert "Traceback" not in err, where
        assert not watch.leftovers(), where
        run_dir = watch.run_dir
        if _history_has(run_dir, '"index":0,'):
            assert run_dir is not None
            assert _results(run_dir)["valid"] in (True, False, "unknown"), where
            assert not list(run_dir.glob("**/.*.tmp")), where
    assert signalled >= 6, "the runs ended before most signals: the delays are too long"


def test_a_signal_during_teardown_lets_it_finish_and_keeps_the_verdict(tmp_path):
    """Once teardown has begun (it is collecting the nodes' logs) the history is
    complete: a SIGTERM then (and a second one) lets teardown finish, the verdict is kept
    in results.json and on the terminal, marked as interrupted, and the exit is 2."""
    watch = RunWatch(tmp_path, *SHORT_RUN)
    deadline = time.monotonic() + 60
    while watch.run_dir is None or not any((watch.run_dir / "nodes").glob("*/*.log")):
        assert time.monotonic() < deadline and watch.proc.poll() is None, watch.finish()
        time.sleep(0.002)
    watch.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    watch.proc.send_signal(signal.SIGTERM)
    code, out, err = watch.finish()
    assert code == 2, out + err
    assert "VALID" in out, out
    assert "Traceback" not in err
    assert "interrupted (SIGTERM" in err.splitlines()[-1], err  # two may merge into one
    assert watch.run_dir is not None
    results = _results(watch.run_dir)
    assert results["valid"] is True, results
    assert "SIGTERM" in results["interrupted"], results
    assert (watch.run_dir / "report.html").exists()
    assert not watch.leftovers()


def test_an_interrupted_check_is_one_line_and_exit_2(tmp_path):
    history = tmp_path / "big.jsonl"
    # Enough to take seconds to read and check (5 million lines: about 0.8 s per million
    # here), written as one repeated block so that making it takes no time.
    block = "".join(
        json.dumps({"type": kind, "f": "add", "value": 1, "process": p}) + "\n"
        for p in range(50) for kind in ("invoke", "ok"))
    with history.open("w") as f:
        for _ in range(50):
            f.write(block * 1000)
    watch = RunWatch(tmp_path, str(history), "--model", "counter", command="check")
    time.sleep(1.0)
    assert watch.proc.poll() is None, watch.finish()
    watch.proc.send_signal(signal.SIGINT)
    code, out, err = watch.finish(timeout=60)
    assert code == 2, out + err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["splitbrain: interrupted (SIGINT)"], err


# -- environment failures ----------------------------------------------------------------

USER_SYSTEMS = textwrap.dedent('''
    """Systems a user might write, each failing to set up in its own way."""
    from harness.systems.daemon_db import DaemonDB


    class GhostDB(DaemonDB):
        """Its server binary is not installed on the nodes."""
        server = "ghostd"

        def argv(self, test, node, paths):
            return ["/nonexistent/bin/ghostd", "--port", "7171"]

        def ready(self, test, node):
            return False


    class LicensedDB:
        def setup(self, test, node):
            raise ValueError("no license key for " + node)

        def teardown(self, test, node):
            pass


    class BrokenNodeDB:
        """A node on which a setup command fails."""
        def setup(self, test, node):
            test.remote.run(node, ["sh", "-c", "echo disk on fire >&2; exit 3"])

        def teardown(self, test, node):
            pass


    class System:
        name = "user"

        def __init__(self, db):
            self._db = db

        def db(self, test):
            return self._db

        def serving_nodes(self, test):
            return ["n1"]

        async def open_client(self, test, node):
            raise ConnectionRefusedError(node)


    def ghost(options):
        return System(GhostDB())


    def licensed(options):
        return System(LicensedDB())


    def broken_node(options):
        return System(BrokenNodeDB())
''')


def _user_run(tmp_path: Path, factory: str) -> tuple[RunWatch, int, str, str]:
    (tmp_path / "usersystems.py").write_text(USER_SYSTEMS)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    watch = RunWatch(tmp_path, "--system", f"usersystems:{factory}", "--nemesis", "none",
                     "--nodes", "2", "--time-limit", "1", env={"PYTHONPATH": path})
    return (watch, *watch.finish())


def test_a_binary_missing_on_a_node_ends_unknown_with_one_line(tmp_path):
    watch, code, out, err = _user_run(tmp_path, "ghost")
    assert code == 2, out + err
    assert "Traceback" not in err and "internal error" not in err
    line = err.strip().splitlines()[-1]
    run_dir = watch.run_dir
    assert run_dir is not None
    log = run_dir / "nodes" / "n1" / "ghostd.log"
    assert line.startswith("splitbrain: ghostd on n") and "exited" in line, err
    assert "not found" in line and "read " in line, err
    named = Path(line.rsplit("read ", 1)[1])
    assert named.parent.parent == log.parent.parent and named.is_file(), line
    results = _results(run_dir)
    assert results["valid"] == "unknown"
    assert "ghostd on n" in results["reason"]
    assert "UNKNOWN" in (run_dir / "report.html").read_text()
    assert "Traceback" in (run_dir / "splitbrain.log").read_text()  # the details are kept
    assert not watch.leftovers()


def test_a_user_db_whose_setup_raises_ends_unknown_with_one_line(tmp_path):
    watch, code, out, err = _user_run(tmp_path, "licensed")
    assert code == 2, out + err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "splitbrain: the system's setup on n1 failed: ValueError: no license key for n1"
    ) or err.strip().splitlines()[-1] == (
        "splitbrain: the system's setup on n2 failed: ValueError: no license key for n2")
    assert watch.run_dir is not None
    assert "no license key" in _results(watch.run_dir)["reason"]
    assert (watch.run_dir / "report.html").exists()
    assert not watch.leftovers()


def test_a_command_failing_on_a_node_during_setup_ends_unknown_with_one_line(tmp_path):
    watch, code, out, err = _user_run(tmp_path, "broken_node")
    assert code == 2, out + err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("splitbrain: n") and line.endswith("disk on fire"), err
    assert watch.run_dir is not None
    assert "disk on fire" in _results(watch.run_dir)["reason"]
    assert not watch.leftovers()


def test_a_third_signal_during_teardown_exits_at_once_and_cleanup_removes_the_rest(tmp_path):
    watch = RunWatch(tmp_path, "-o", "variant=atomic", "--nemesis", "none", "--nodes", "5",
                     "--time-limit", "1", "--concurrency", "4")
    deadline = time.monotonic() + 60
    while watch.run_dir is None or not any((watch.run_dir / "nodes").glob("*/*.log")):
        assert time.monotonic() < deadline and watch.proc.poll() is None, watch.finish()
        time.sleep(0.002)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watch.proc.stderr.readline, "")))
    reader.start()
    for n in (1, 2):  # one at a time: signals sent faster than handled merge into one
        watch.proc.send_signal(signal.SIGINT)
        while sum("finishing the teardown first" in line for line in lines) < n:
            assert time.monotonic() < deadline and watch.proc.poll() is None, lines
            time.sleep(0.001)
    watch.proc.send_signal(signal.SIGINT)
    assert watch.proc.wait(timeout=60) == 2
    reader.join()
    watch.finish()
    assert "Traceback" not in "".join(lines)
    assert "`splitbrain cleanup`" in lines[-1], lines
    r = subprocess.run([*CLI, "cleanup"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not watch.leftovers()


SLOW_CHECK = textwrap.dedent('''
    """The counter workload whose check takes a minute, as a long linearizability search can."""
    import dataclasses
    import time

    from workloads.counter import make_workload as counter


    class SlowChecker:
        def check(self, test, history):
            (test.run_dir / "checking").write_text("")
            time.sleep(60)
            return {"valid": True, "anomalies": []}


    def make_workload(options):
        return dataclasses.replace(counter(options), checker=SlowChecker())
''')


def test_a_signal_during_the_check_ends_it_and_the_run_is_unknown(tmp_path):
    (tmp_path / "slowcheck.py").write_text(SLOW_CHECK)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    watch = RunWatch(tmp_path, *SHORT_RUN, "--workload", "slowcheck:make_workload",
                     env={"PYTHONPATH": path})
    deadline = time.monotonic() + 60
    while watch.run_dir is None or not (watch.run_dir / "checking").exists():
        assert time.monotonic() < deadline and watch.proc.poll() is None, watch.finish()
        time.sleep(0.01)
    watch.proc.send_signal(signal.SIGTERM)
    code, out, err = watch.finish(timeout=30)
    assert code == 2, out + err
    assert "Traceback" not in err
    results = _results(watch.run_dir)
    assert results["valid"] == "unknown" and "while checking" in results["reason"], results
    assert (watch.run_dir / "report.html").exists()
    assert not watch.leftovers()
