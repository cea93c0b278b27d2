"""How long the counter checkers take on large histories.

A linearizable counter (one integer, each operation taking effect at a random moment
inside its interval) is driven by 100 clients: three adds of 1 for every read, 10% of
the adds crashed (some before taking effect, some after), then a final read on each of
5 nodes.
An op is one operation: its invocation and its completion (two history entries).
Generating the history is not timed. Peak memory is the most the check had allocated
at once (tracemalloc, in a second run, since tracing slows the check down).

    python bench/counter_check.py [--ops 100000 1000000] [--seed 1]

Targets: ``check_unit_counter`` proves 100,000 ops in under 1 s and 1,000,000 ops in
under 10 s (and finds them linearizable: the bench fails loudly otherwise).
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from checkers.counter import CounterChecker
from checkers.counter_linear import check_unit_counter
from harness.history import Op

CLIENTS = 100
NODES = [f"n{i}" for i in range(1, 6)]


def simulate(ops: int, seed: int) -> list[Op]:
    """A history of ``ops`` operations against a real linearizable counter."""
    rng = random.Random(seed)
    history: list[Op] = []
    count = 0
    processes = list(range(CLIENTS))
    next_process = CLIENTS
    # per client: its invocation, and whether the op has taken effect (and what it read)
    flight: list[tuple[Op, bool, int] | None] = [None] * CLIENTS
    started = in_flight = 0
    tick = 0
    while started < ops or in_flight:
        tick += 1
        c = rng.randrange(CLIENTS)
        entry = flight[c]
        if entry is None:
            if started == ops:
                continue
            started += 1
            op = (Op("invoke", "read", None, processes[c], tick, len(history))
                  if rng.random() < 0.25 else
                  Op("invoke", "add", 1, processes[c], tick, len(history)))
            history.append(op)
            flight[c] = (op, False, 0)
            in_flight += 1
            continue
        inv, applied, seen = entry
        if not applied and rng.random() < 0.5:  # takes effect now
            if inv.f == "add":
                count += 1
            flight[c] = (inv, True, count)
            continue
        if inv.f == "add" and rng.random() < 0.1:  # crashed: half of them applied
            if not applied and rng.random() < 0.5:
                count += 1
            done = Op("info", "add", None, inv.process, tick, len(history),
                      {"error": "timeout"})
            processes[c] = next_process
            next_process += 1
        else:
            if not applied:
                count += inv.f == "add"
                seen = count
            done = Op("ok", inv.f, seen if inv.f == "read" else None, inv.process,
                      tick, len(history))
        history.append(done)
        flight[c] = None
        in_flight -= 1
    for node in NODES:
        tick += 1
        extra = {"final": True, "node": node}
        history.append(Op("invoke", "read", None, next_process, tick, len(history),
                          dict(extra)))
        history.append(Op("ok", "read", count, next_process, tick + 1, len(history),
                          dict(extra)))
        next_process += 1
    for op in history:
        op.time *= 1000  # ticks of 1 us, in ns
    return history


def measure(check: Callable[..., Any], *args: Any) -> tuple[Any, float, int]:
    """The result, seconds, and the peak of memory allocated while ``check`` ran."""
    gc.collect()
    began = time.perf_counter()
    result = check(*args)
    seconds = time.perf_counter() - began
    del result
    tracemalloc.start()
    result = check(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    limits = {100_000: 1.0, 1_000_000: 10.0}
    failed = False
    for ops in args.ops:
        history = simulate(ops, args.seed)
        result, seconds, peak = measure(check_unit_counter, history)
        if result is None or result["valid"] is not True:
            raise SystemExit(f"check_unit_counter did not find the simulated counter "
                             f"linearizable: {result and result.get('explanation')}")
        limit = limits.get(ops)
        verdict = "" if limit is None else (
            f" (target < {limit:g} s: {'met' if seconds < limit else 'MISSED'})")
        failed |= limit is not None and seconds >= limit
        print(f"check_unit_counter {ops:,} ops ({len(history):,} entries): "
              f"{seconds:.3f} s, peak {peak / 2**20:.2f} MiB{verdict}")
        result, seconds, peak = measure(CounterChecker().check, None, history)
        if result["valid"] is not True:
            raise SystemExit(f"CounterChecker flagged the simulated counter: "
                             f"{result['summary']}")
        print(f"CounterChecker     {ops:,} ops ({len(history):,} entries): "
              f"{seconds:.3f} s, peak {peak / 2**20:.2f} MiB — {result['summary']}")
        del history
    if failed:
        raise SystemExit("a target was missed")


if __name__ == "__main__":
    main()
