"""Counter histories as someone else would write them, and ``check`` timed against them.

Issue 11 is accepted on histories its testers generate themselves, not on ours. This
writes 10^6-operation counter histories that follow ARCHITECTURE.md's format but not
our recorder's habits, each a ``--shape``:

- ``spaces``: ``json.dumps`` with its default separators, keys in the order a person
  would list them (``type, f, value, process, time, index``), a ``node`` field, and a
  nemesis (partitions) between the clients' ops;
- ``minimal``: only the required fields (no ``index``, no ``time``), the shortest line
  a person would write, so the fixed cost per line weighs most;
- ``named``: string process names (``"worker-7"``, a new name after each ``info``),
  times as integral floats (``1234000.0`` ns), keys in a random order per line, and
  extra fields (``latency_ms``, ``attempt``, ``error``, ``meta`` objects);
- ``lost``: ``spaces``, but the counter loses acknowledged increments at each kill:
  invalid, so ``check`` must read the whole history to explain it.

The simulated counter is linearizable (each op takes effect at a random moment inside
its interval) except in ``lost``. Then, with ``--measure``, it times in subprocesses,
``--repeat`` times each, ``splitbrain check FILE --model counter`` (with each checkout
of ``--repo``, to compare) and a bare stdlib ``json.loads`` loop over the same file,
started the same way (``python -c``), and prints the best and the median of wall
seconds, child CPU seconds (``RUSAGE_CHILDREN``) and peak resident MB (the child's
``VmHWM``), with ratios to the loop. ``--file`` adds histories made elsewhere.

    python bench/foreign_histories.py [--shape spaces ...] [--ops 1000000] [--measure]
        [--repeat 3] [--repo DIR ...] [--file HISTORY ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHAPES = ("spaces", "minimal", "named", "lost")


def simulate(ops: int, seed: int, *, lose: bool) -> Iterator[dict[str, Any]]:
    """Ops (as dicts with ``type, f, value, process, t``) against a counter driven by 64
    clients: 3 adds of 1 per read, 5% of ops failing, 5% crashing (``info``, the client
    then goes on under a new process). A nemesis partitions and kills now and then; with
    ``lose`` each kill also loses the increments of the last few hundred ops."""
    rng = random.Random(seed)
    clients = 64
    count = 0
    names = list(range(clients))
    next_name = clients
    flight: list[dict[str, Any] | None] = [None] * clients
    started = 0
    t = 0
    nemesis_next = 5_000
    nemesis_on = False
    while started < ops or any(flight):
        t += rng.randrange(1, 2_000_000)
        if started >= nemesis_next and started < ops:
            nemesis_next += rng.randrange(20_000, 60_000)
            f = "stop-partition" if nemesis_on else "start-partition"
            value = None if nemesis_on else [["n1", "n2"], ["n3", "n4", "n5"]]
            yield {"type": "invoke", "f": f, "value": value, "process": "nemesis", "t": t}
            t += 1000
            yield {"type": "info", "f": f, "value": value, "process": "nemesis", "t": t}
            nemesis_on = not nemesis_on
            if lose and not nemesis_on and count:
                yield {"type": "invoke", "f": "kill", "value": ["n1"], "process": "nemesis",
                       "t": t}
                count -= min(rng.randrange(1, 50), count)   # acknowledged adds gone
                yield {"type": "info", "f": "kill", "value": ["n1"], "process": "nemesis",
                       "t": t + 10}
        c = rng.randrange(clients)
        op = flight[c]
        if op is None:
            if started >= ops:
                continue
            started += 1
            f = "read" if rng.random() < 0.25 else "add"
            op = {"type": "invoke", "f": f, "value": None if f == "read" else 1,
                  "process": names[c], "t": t, "done": False, "seen": None}
            flight[c] = op
            yield {k: op[k] for k in ("type", "f", "value", "process", "t")}
            continue
        if not op["done"] and rng.random() < 0.6:   # takes effect now
            op["done"] = True
            if op["f"] == "add":
                count += 1
            else:
                op["seen"] = count
            continue
        if rng.random() < 0.5 and not op["done"]:
            continue
        r = rng.random()
        if r < 0.05 and not op["done"]:
            done = {"type": "fail", "value": op["value"], "error": "refused"}
        elif r < 0.10:
            done = {"type": "info", "value": op["value"], "error": "timeout"}
        elif not op["done"]:
            continue
        else:
            done = {"type": "ok", "value": op["seen"] if op["f"] == "read" else op["value"]}
        flight[c] = None
        yield {**done, "f": op["f"], "process": op["process"], "t": t}
        if done["type"] == "info":
            names[c] = next_name
            next_name += 1


def render(shape: str, ops: int, seed: int) -> Iterator[str]:
    """The lines of ``shape``'s history file."""
    rng = random.Random(seed + 1)
    dumps = json.dumps
    for i, op in enumerate(simulate(ops, seed, lose=shape == "lost")):
        t, error = op.pop("t"), op.pop("error", None)
        if shape in ("spaces", "lost"):
            d = {"type": op["type"], "f": op["f"], "value": op["value"],
                 "process": op["process"], "time": t, "index": i}
            if op["process"] != "nemesis":
                d["node"] = f"n{op['process'] % 5 + 1}" if type(op["process"]) is int \
                    else "n1"
            if error:
                d["error"] = error
        elif shape == "minimal":
            d = {"type": op["type"], "process": op["process"], "f": op["f"],
                 "value": op["value"]}
        else:   # named
            p = op["process"]
            d = {"index": i, "time": float(t),
                 "process": p if p == "nemesis" else f"worker-{p}",
                 "type": op["type"], "f": op["f"], "value": op["value"]}
            if op["type"] != "invoke":
                d["latency_ms"] = round(rng.random() * 30, 3)
                d["attempt"] = 1
            if error:
                d["error"] = {"kind": error, "retryable": error == "refused"}
            if rng.random() < 0.1:
                d["meta"] = {"client": "py-3.11", "tags": ["a", "b"]}
            keys = list(d)
            rng.shuffle(keys)
            d = {k: d[k] for k in keys}
        yield dumps(d) + "\n"


def make(shape: str, ops: int, seed: int, path: Path) -> None:
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(render(shape, ops, seed))
    tmp.rename(path)


LOOP = """\
import json, sys
with open(sys.argv[1], "rb") as f:
    for line in f:
        json.loads(line)
"""
CHECK = """\
import os, sys
_exit = os._exit
def _exit_with_peak(code):
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    sys.stderr.write(f"VmHWM {kb}\\n")
    _exit(code)
os._exit = _exit_with_peak   # the CLI ends with os._exit
from harness.cli import main
main()
"""


def timed(args: list[str], repo: Path = REPO) -> tuple[int, float, float, float]:
    """Exit code, wall s, child CPU s (``RUSAGE_CHILDREN``), peak MB of ``python ARGS``
    run with ``repo``'s splitbrain."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    p = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(repo)}, cwd=repo)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = next((int(line.split()[1]) / 1024 for line in p.stderr.splitlines()
                 if line.startswith("VmHWM ")), float("nan"))
    return p.returncode, wall, cpu, peak


def measure(path: Path, repeat: int, repos: list[Path], say: Callable[[str], None]) -> None:
    """``repeat`` rounds, each the loop then ``check`` with each of ``repos``
    (interleaved, so that a burst of load from others hits all alike); prints the best
    and the median of each, and their ratios."""
    loop: list[tuple[float, float]] = []
    check: dict[Path, list[tuple[float, float, float]]] = {r: [] for r in repos}
    codes: dict[Path, set[int]] = {r: set() for r in repos}
    for _ in range(repeat):
        _, w, c, _ = timed(["-c", LOOP, str(path)])
        loop.append((w, c))
        for repo in repos:
            code, w, c, peak = timed(["-c", CHECK, "check", str(path), "--model", "counter"],
                                     repo)
            check[repo].append((w, c, peak))
            codes[repo].add(code)
    lw, lc = [x[0] for x in loop], [x[1] for x in loop]
    med = statistics.median
    say(f"  json.loads loop: wall best {min(lw):.2f} s median {med(lw):.2f} s; "
        f"CPU best {min(lc):.2f} s median {med(lc):.2f} s")
    for repo in repos:
        cw, cc, cp = ([x[i] for x in check[repo]] for i in range(3))
        say(f"  check ({repo}): exit {sorted(codes[repo])}, peak {max(cp):.0f} MB; "
            f"wall best {min(cw):.2f} s = {min(cw) / min(lw):.2f}x, median {med(cw):.2f} s "
            f"= {med(cw) / med(lw):.2f}x; CPU best {min(cc):.2f} s = "
            f"{min(cc) / min(lc):.2f}x, median {med(cc):.2f} s = {med(cc) / med(lc):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/splitbrain-foreign"))
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--file", type=Path, nargs="*", default=[],
                        help="further histories to measure as they are")
    parser.add_argument("--repo", type=Path, nargs="*", default=[REPO],
                        help="checkouts of splitbrain to compare (default: this one)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    paths = []
    for shape in args.shape:
        path = args.work / f"{shape}-{args.ops}-{args.seed}.jsonl"
        if not path.exists():
            began = time.perf_counter()
            make(shape, args.ops, args.seed, path)
            print(f"made {path} in {time.perf_counter() - began:.1f} s")
        paths.append(path)
    for path in [*paths, *args.file]:
        lines = sum(1 for _ in open(path, "rb"))
        print(f"{path} ({lines:,} lines, {path.stat().st_size / 1e6:.0f} MB)", flush=True)
        if args.measure:
            measure(path, args.repeat, args.repo, lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
