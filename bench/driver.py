"""Throughput of the interpreter on its own: 200 workers, a real history file.

Two in-process clients bracket what the interpreter costs per op: one that answers at
once (the interpreter and the history writer are all that is measured) and one that
takes 10 ms per request (200 concurrent 10 ms requests allow at most 20,000 ops/s).
A recorded op is one completed operation: its invoke line and its completion line.

Peak memory is the rise of the process's peak resident set (VmHWM, reset before each
run) over its resident set at the start of that run, scaled to 100,000 recorded ops.

    python bench/driver.py [--seconds 5] [--concurrency 200]

The last two lines are ``no-op client: N ops/s`` and ``10 ms client: N ops/s``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.client import Client, NoopClient
from harness.cluster.remote import NoopRemote
from harness.context import Spec, Test
from harness.generator import constant, mix
from harness.history import HistoryWriter, Op
from harness.interpreter import Interpreter, run_async

NODES = [f"n{i}" for i in range(1, 6)]


class TenMillisecondClient:
    """Every request takes 10 ms, like a fast server on a local network."""

    async def invoke(self, test: Test, op: Op) -> Op:
        await asyncio.sleep(0.01)
        return op.ok(op.value)

    async def close(self) -> None:
        pass


@dataclass
class Measurement:
    ops: int
    seconds: float
    cpu_seconds: float
    peak_bytes: int

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds

    @property
    def cpu_us_per_op(self) -> float:
        """Unlike ops/s, barely affected by other processes competing for the CPU."""
        return self.cpu_seconds / self.ops * 1e6

    @property
    def bytes_per_100k_ops(self) -> float:
        return self.peak_bytes / self.ops * 100_000


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure(client_type: type[Client], concurrency: int, seconds: float) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="splitbrain-bench-") as tmp:
        run_dir = Path(tmp)
        test = Test(Spec(nodes=NODES, concurrency=concurrency), NoopRemote(), run_dir)
        history = HistoryWriter(run_dir / "history.jsonl")

        async def open_client(node: str) -> Client:
            return client_type()

        interpreter = Interpreter(test, history, open_client, NODES, concurrency)
        workload = mix([(3, constant("add", 1)), (1, constant("read", None))])

        async def main() -> float:
            began = time.perf_counter()
            await interpreter.run(workload, time_limit=seconds, seed=1)
            elapsed = time.perf_counter() - began
            await interpreter.close()
            return elapsed

        _reset_peak_rss()
        baseline = _proc_status_bytes("VmRSS")
        cpu = time.process_time()
        elapsed = run_async(main())
        cpu = time.process_time() - cpu
        peak = _proc_status_bytes("VmHWM") - baseline
        history.close()
        return Measurement(history.count // 2, elapsed, cpu, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time limit per run")
    parser.add_argument("--concurrency", type=int, default=200, help="workers")
    args = parser.parse_args()
    results = {}
    for label, client_type in (("no-op client", NoopClient),
                               ("10 ms client", TenMillisecondClient)):
        m = measure(client_type, args.concurrency, args.seconds)
        results[label] = m
        print(f"{label}: {m.ops} ops in {m.seconds:.2f} s, {m.cpu_us_per_op:.1f} µs CPU "
              f"per op, peak memory {m.bytes_per_100k_ops / 2**20:.2f} MiB per 100,000 "
              f"ops (+{m.peak_bytes / 2**20:.1f} MiB)")
    for label, m in results.items():
        print(f"{label}: {m.ops_per_s:.0f} ops/s")


if __name__ == "__main__":
    main()
