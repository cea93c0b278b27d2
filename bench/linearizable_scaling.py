"""How the linearizability checker's time grows with history length and concurrency.

Histories come from simulating a real, linearizable object driven by concurrent
clients: each op takes effect at one random moment between its invocation and its
completion; about 1% of ops crash (``info``; the client goes on as a new process). The
seed is fixed, so runs are comparable.

    python bench/linearizable_scaling.py            # up to 10^5 ops
    python bench/linearizable_scaling.py --full     # adds 10^6 ops
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from checkers import linearizable
from checkers.models import make_model
from harness.history import Op

OpMaker = Callable[[random.Random, int], tuple[str, Any]]


def unique_register_op(rnd: random.Random, serial: int) -> tuple[str, Any]:
    return ("write", serial) if rnd.random() < 0.5 else ("read", None)


def small_register_op(rnd: random.Random, serial: int) -> tuple[str, Any]:
    x = rnd.random()
    if x < 0.3:
        return "write", rnd.randrange(5)
    if x < 0.5:
        return "cas", [rnd.randrange(5), rnd.randrange(5)]
    return "read", None


def counter_op(rnd: random.Random, serial: int) -> tuple[str, Any]:
    return ("add", rnd.choice([1, 2, 3, 5, -1])) if rnd.random() < 0.5 else ("read", None)


WORKLOADS: dict[str, tuple[str, OpMaker]] = {
    "register, unique writes": ("register", unique_register_op),
    "cas-register, 5 values": ("cas-register", small_register_op),
    "counter, deltas 1,2,3,5,-1": ("counter", counter_op),
}


def apply(state: Any, f: str, arg: Any) -> tuple[Any, Any, bool]:
    """(state after, result, ok) of the real object."""
    if f == "read":
        return state, state, True
    if f == "write":
        return arg, arg, True
    if f == "add":
        return state + arg, arg, True
    old, new = arg  # cas
    return (new, arg, True) if state == old else (state, arg, False)


def simulate(make_op: OpMaker, n_ops: int, clients: int, seed: int = 1,
             crash: float = 0.01) -> list[Op]:
    """A history of ``n_ops`` ops by ``clients`` concurrent clients (nearly all busy
    at any moment, so ``clients`` is the concurrency)."""
    rnd = random.Random(seed)
    history: list[Op] = []
    state: Any = 0
    in_flight: list[list] = []  # [invoke, took effect, result, ok]
    idle = list(range(clients))
    next_process = clients
    started = 0
    while started < n_ops or in_flight:
        if idle and started < n_ops and rnd.random() < 0.5:
            p = idle.pop(rnd.randrange(len(idle)))
            f, arg = make_op(rnd, started + 1)
            inv = Op("invoke", f, arg, p)
            history.append(inv)
            in_flight.append([inv, False, None, True])
            started += 1
            continue
        if not in_flight:
            continue
        k = rnd.randrange(len(in_flight))
        entry = in_flight[k]
        if not entry[1]:  # its moment of effect
            state, entry[2], entry[3] = apply(state, entry[0].f, entry[0].value)
            entry[1] = True
            continue
        in_flight[k] = in_flight[-1]
        in_flight.pop()
        if rnd.random() < crash:
            history.append(entry[0].info("timeout"))
            idle.append(next_process)
            next_process += 1
        else:
            history.append(entry[0].ok(entry[2]) if entry[3]
                           else entry[0].fail("cas mismatch"))
            idle.append(entry[0].process)
    for i, op in enumerate(history):
        op.index, op.time = i, i * 100_000
    return history


def run(name: str, n_ops: int, clients: int, time_limit: float) -> list[str]:
    model_name, make_op = WORKLOADS[name]
    history = simulate(make_op, n_ops, clients)
    crashed = sum(op.type == "info" for op in history)
    started = time.perf_counter()
    result = linearizable.check(make_model(model_name, 0), history, time_limit=time_limit)
    seconds = time.perf_counter() - started
    stats = result.get("stats", {})
    return [name, f"{n_ops:,}", str(clients), str(crashed), str(result["valid"]),
            result["analyzer"], f"{seconds:.2f}", f"{seconds / n_ops * 1e6:.1f}",
            f"{stats.get('steps', 0):,}", f"{stats.get('cache_size', 0):,}"]


HEADER = ["workload", "ops", "clients", "crashed", "valid", "analyzer", "seconds",
          "us/op", "steps", "configurations"]


def print_row(row: list[str], widths: list[int]) -> None:
    print("  ".join(cell.rjust(w) if i else cell.ljust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="include 10^6-op histories")
    parser.add_argument("--time-limit", type=float, default=300.0,
                        help="per check, seconds (default 300)")
    args = parser.parse_args()
    lengths = [1_000, 10_000, 100_000] + ([1_000_000] if args.full else [])
    widths = [26, 9, 7, 7, 7, 21, 7, 6, 11, 14]
    print_row(HEADER, widths)
    for name in WORKLOADS:
        for n in lengths:
            print_row(run(name, n, 10, args.time_limit), widths)
        for clients in (5, 20, 50, 100, 200):
            print_row(run(name, 10_000, clients, args.time_limit), widths)


if __name__ == "__main__":
    main()
