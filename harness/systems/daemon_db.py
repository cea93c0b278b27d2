"""A DB that is one server process per node: the common case for real systems.

The subclass says which nodes run the server, its command line and how to tell it is
ready; this class does the rest the same way for every such system: a fresh data
directory per run, a daemon with a pid file and a log file in the node's workdir, and
the capabilities nemeses use (Killable, Pausable, LogFiles). Every method is a no-op on
nodes the system does not run on, so a nemesis may aim at any node of the test.

Kill, pause and resume reach every process of the server on the node, not only the one
the pid file names (``harness.daemon`` says how). A start after a crash first makes sure
nothing of the old server is left and then removes the server's own lock files
(``lock_files``): a crash leaves them, and the server's check of them can be fooled (a
zombie that keeps the old pid "alive" where the node's PID 1 never reaps), while nothing
of the old server remains to protect.
"""

from __future__ import annotations

import posixpath
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.cluster.ports import require_free_ports
from harness.daemon import daemon_running, kill_daemon, signal_daemon, start_daemon, stop_daemon
from harness.errors import EnvironmentFailure

if TYPE_CHECKING:
    from harness.context import Test


class ServerStartError(EnvironmentFailure):
    """A server did not come up on a node: the run ends "unknown". One line names the
    node, what failed (with the log's last line) and the log file; ``detail`` keeps the
    log's last lines for splitbrain.log."""


@dataclass(frozen=True)
class ServerPaths:
    pidfile: str
    logfile: str
    data_dir: str


class DaemonDB:
    """Subclasses set ``server`` (a short name for files) and implement ``argv`` and
    ``ready``; they may override ``nodes`` (default: every node) and ``startup_timeout``."""

    server = "server"
    startup_timeout = 15.0
    restart_wait = 5.0
    """Seconds a restart after a fault (``start``) waits for the server to be ready. A
    server that is running but not ready by then (an etcd member cut off from its
    quorum) is left to come up by itself: the fault schedule must not stall on it, and
    the final reads wait for the system to converge anyway."""

    def nodes(self, test: Test) -> list[str]:
        return list(test.nodes)

    def argv(self, test: Test, node: str, paths: ServerPaths) -> list[str]:
        raise NotImplementedError

    def ports(self, test: Test) -> list[int]:
        """The TCP ports the server listens on: checked free on each node before setup
        (a real host may run its own service there)."""
        return []

    def ready(self, test: Test, node: str) -> bool:
        """Whether the server on ``node`` answers as clients will need it to."""
        raise NotImplementedError

    def paths(self, test: Test, node: str) -> ServerPaths:
        workdir = test.remote.workdir(node)
        return ServerPaths(posixpath.join(workdir, f"{self.server}.pid"),
                           posixpath.join(workdir, f"{self.server}.log"),
                           posixpath.join(workdir, f"{self.server}-data"))

    def lock_files(self, test: Test, node: str, paths: ServerPaths) -> list[str]:
        """Files the server creates to refuse a second instance, which a crash leaves
        behind (e.g. PostgreSQL's ``postmaster.pid``); removed before every start."""
        return []

    def check_programs(self, test: Test, node: str) -> None:
        """Checks that the node has the server's programs (installing them first with
        ``-o install=apt``). It runs before the port check, since a package's install
        may start a service of its own on the server's port."""

    def prepare(self, test: Test, node: str, paths: ServerPaths) -> None:
        """Runs once per node between making the empty data directory and the first
        start (e.g. to initialize a database there)."""

    def initialize(self, test: Test, node: str) -> None:
        """Runs once per node after the first start (e.g. to create a table)."""

    def setup(self, test: Test, node: str) -> None:
        if node not in self.nodes(test):
            return
        self.check_programs(test, node)
        require_free_ports(test.remote, node, self.ports(test), self.server)
        paths = self.paths(test, node)
        test.remote.run(node, ["rm", "-rf", "--", paths.data_dir])  # every run starts empty
        test.remote.run(node, ["mkdir", "-p", paths.data_dir])
        self.prepare(test, node, paths)
        self._start(test, node, patient=False)
        self.initialize(test, node)

    def teardown(self, test: Test, node: str) -> None:
        if node not in self.nodes(test):
            return
        paths = self.paths(test, node)
        stop_daemon(test.remote, node, paths.pidfile)
        test.remote.run(node, ["rm", "-rf", "--", paths.data_dir])

    def start(self, test: Test, node: str) -> None:
        """Starts the server again after a kill (Killable); a no-op if it runs."""
        self._start(test, node, patient=True)

    def _start(self, test: Test, node: str, *, patient: bool) -> None:
        if node not in self.nodes(test):
            return
        paths = self.paths(test, node)
        if daemon_running(test.remote, node, paths.pidfile):
            return
        kill_daemon(test.remote, node, paths.pidfile)  # what a crashed root left running
        if stale := self.lock_files(test, node, paths):
            test.remote.run(node, ["rm", "-f", "--", *stale])
        start_daemon(test.remote, node, self.argv(test, node, paths), pidfile=paths.pidfile,
                     logfile=paths.logfile, cwd=paths.data_dir)
        self._await(test, node, paths, lambda: self.ready(test, node), patient=patient)

    def kill(self, test: Test, node: str) -> None:
        if node in self.nodes(test):
            kill_daemon(test.remote, node, self.paths(test, node).pidfile)

    def pause(self, test: Test, node: str) -> None:
        if node in self.nodes(test):
            signal_daemon(test.remote, node, self.paths(test, node).pidfile, signal.SIGSTOP)

    def resume(self, test: Test, node: str) -> None:
        if node in self.nodes(test):
            signal_daemon(test.remote, node, self.paths(test, node).pidfile, signal.SIGCONT)

    def log_files(self, test: Test, node: str) -> list[str]:
        return [self.paths(test, node).logfile] if node in self.nodes(test) else []

    def _await(self, test: Test, node: str, paths: ServerPaths,
               ready: Callable[[], bool], *, patient: bool = False) -> None:
        """Waits until ``ready``. A server that exits is an error at once; one that is
        still not ready after ``startup_timeout`` is an error too, except for a
        ``patient`` restart, which gives up waiting after ``restart_wait`` and lets it be."""
        deadline = time.monotonic() + self.startup_timeout
        enough = time.monotonic() + self.restart_wait if patient else None
        while not ready():
            exited = not daemon_running(test.remote, node, paths.pidfile)
            if not exited and enough is not None and time.monotonic() > enough:
                test.log.info("%s on %s restarted, not ready within %g s: left to come "
                              "up by itself", self.server, node, self.restart_wait)
                return
            if exited or time.monotonic() > deadline:
                tail = test.remote.run(node, ["tail", "-n", "15", paths.logfile],
                                       check=False).stdout.strip()
                why = ("exited as it started" if exited
                       else f"was not ready within {self.startup_timeout:g} s")
                last = tail.splitlines()[-1].strip()[:200] if tail else "its log is empty"
                raise ServerStartError(f"{self.server} on {node} {why} ({last})", node=node,
                                       log_file=paths.logfile, detail=tail)
            time.sleep(0.05)
