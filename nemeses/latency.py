"""Network latency between nodes: ``start-latency`` delays every packet one node gets
from another, ``stop-latency`` ends it.

Slow links are where timeouts stop meaning what their authors assumed: an election
timeout shorter than a round trip, a lease that expires in flight, a retry that lands
after the original. Kernels without netem (this machine's, for one) cannot delay packets
with ``tc``, so each node runs ``delayer.py``, a small netfilter-queue program, and an
iptables rule hands it the packets from the other nodes (``harness.cluster.net``); it lets each
one through after the delay. The controller's traffic is never delayed.
"""

from __future__ import annotations

import posixpath
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cluster import net
from harness.cluster.remote import on_each_node
from harness.daemon import daemon_running, node_python, start_daemon, stop_daemon
from harness.errors import UsageError
from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test

DELAYER_SOURCE = Path(__file__).with_name("delayer.py")
QUEUE = 0
NFQUEUE_PROC = "/proc/net/netfilter/nfnetlink_queue"
DEFAULT_DELAY, DEFAULT_JITTER = 0.1, 0.02  # seconds, each way


class LatencyNemesis:
    """``start-latency`` takes ``{"delay": s, "jitter": s}`` from the op's value, or the
    defaults; the completion records what was applied."""

    fs = frozenset({"start-latency", "stop-latency"})

    def __init__(self, delay: float = DEFAULT_DELAY, jitter: float = DEFAULT_JITTER) -> None:
        if delay < 0 or jitter < 0:
            raise ValueError("latency delay and jitter must be >= 0")
        self.delay, self.jitter = delay, jitter
        self._lock = threading.Lock()

    def setup(self, test: Test) -> None:
        on_each_node(test.nodes, lambda node: _need_nfqueue(test, node))
        self._heal(test)

    def invoke(self, test: Test, op: Op) -> Op:
        with self._lock:
            if op.f == "start-latency":
                value = op.value or {}
                delay = float(value.get("delay", self.delay))
                jitter = float(value.get("jitter", self.jitter))
                self._heal(test)  # a new delay replaces the old one
                on_each_node(test.nodes, lambda node: self._start_delayer(test, node, delay,
                                                                      jitter))
                net.queue_from_peers(test.remote, test.nodes, QUEUE)
                return op.complete("info", {"delay": delay, "jitter": jitter})
            if op.f == "stop-latency":
                self._heal(test)
                return op.complete("info", "latency healed")
            raise ValueError(f"latency nemesis cannot perform {op.f!r}")

    def teardown(self, test: Test) -> None:
        with self._lock:
            self._heal(test)

    def _heal(self, test: Test) -> None:
        """Rules first, so no packet waits for a delayer that is gone."""
        net.heal(test.remote, test.nodes, chain=net.DELAY_CHAIN)
        on_each_node(test.nodes, lambda node: stop_daemon(test.remote, node,
                                                     self._paths(test, node)[1]))

    def _start_delayer(self, test: Test, node: str, delay: float, jitter: float) -> None:
        script, pidfile, logfile = self._paths(test, node)
        test.remote.upload(node, str(DELAYER_SOURCE), script)
        start_daemon(test.remote, node,
                     [node_python(test.remote, node), script, "--queue", str(QUEUE),
                      "--delay", repr(delay), "--jitter", repr(jitter)],
                     pidfile=pidfile, logfile=logfile)
        deadline = time.monotonic() + 10
        while "delaying queue" not in test.remote.run(node, ["cat", logfile],
                                                       check=False).stdout:
            if not daemon_running(test.remote, node, pidfile) or time.monotonic() > deadline:
                log = test.remote.run(node, ["tail", "-n", "5", logfile], check=False).stdout
                raise RuntimeError(f"the packet delayer did not start on {node}: {log}")
            time.sleep(0.05)

    @staticmethod
    def _paths(test: Test, node: str) -> tuple[str, str, str]:
        workdir = test.remote.workdir(node)
        return (posixpath.join(workdir, "delayer.py"), posixpath.join(workdir, "delayer.pid"),
                posixpath.join(workdir, "delayer.log"))


def _need_nfqueue(test: Test, node: str) -> None:
    """The delayer needs the kernel's nfnetlink_queue module. Checked on the node; when
    it is missing there, the controller loads it (namespaces and containers share its
    kernel) or the fault is refused in one line."""
    def present() -> bool:
        return test.remote.run(node, ["test", "-e", NFQUEUE_PROC], check=False).returncode == 0

    if present():
        return
    subprocess.run(["modprobe", "nfnetlink_queue"], capture_output=True, timeout=30)
    if not present():
        raise UsageError(f"latency needs the kernel module nfnetlink_queue, which node {node} "
                         "lacks and the controller could not load (modprobe nfnetlink_queue)")
