"""Time our linearizability checker on Porcupine's own test histories, against Porcupine.

    python bench/porcupine_compare.py /path/to/porcupine/test_data \\
        [--porcupine go-bench.txt] [--expected porcupine_test.go] [--repeat 3]

Porcupine (github.com/anishathalye/porcupine) ships Jepsen etcd logs
(``jepsen/etcd_NNN.log``, a cas register whose initial value is nil) and key-value logs
(``kv/cNN-ok.txt``, ``kv/cNN-bad.txt``: get/put/append with every key initially "").
This script checks the sets Porcupine's benchmarks check (its Go benchmark in brackets):

- ``etcd``: every etcd log, cas-register model, initial nil (``EtcdJepsenNNN``);
- ``kv-c01``, ``kv-c10``, ``kv-c50``: the 1-, 10- and 50-client kv logs with the kv
  model, checked key by key (``Kv1Client``, ``Kv10Clients``, ``Kv50Clients``);
- ``kv-c01-no-partition``, ``kv-c10-no-partition``: the same 1- and 10-client logs
  checked as one history over all keys (``KvNoPartition1Client``,
  ``KvNoPartition10Clients``): the search without P-compositionality.

Nothing of Porcupine is part of this repository: point the script at a copy of its
``test_data``. The verdicts Porcupine's tests assert are read from its
``porcupine_test.go`` (``--expected``, by default next to ``test_data``) and every
disagreement is listed (exit status 1).

Porcupine's times (``--porcupine``) are what its benchmarks print. Produce them outside
this repository, in the Porcupine clone whose ``test_data`` you check, with
``go test -run xxx -bench 'Kv|Etcd' -benchtime 5x -cpu 1 > go-bench.txt``. ``-cpu 1``
runs them with GOMAXPROCS=1, so each ns/op is one core's time, that is CPU (Go prints
the mean over its runs, parsing excluded). Without it Go appends ``-N`` to each name
(N cores) and ns/op is wall time over up to N cores; the output then says that its
ratios compare our CPU with Porcupine's wall time.

Our side, also parsing excluded: each history is read once (timed apart), then checked
at least ``--repeat`` times and until its checks add up to ``--min-time`` seconds of CPU.
CPU is this process's time plus that of the worker processes the checker forks for many
keys (``RUSAGE_CHILDREN``; ``--workers 1`` keeps the check in one process); wall time
is printed too. A history's figure is its median
run: as central as Go's mean but not moved by one run that another process disturbed
on a shared machine (the best run would flatter us by picking the luckiest one).

Targets (issue 11): our CPU / Porcupine's <= 0.5 on the hard sets (``etcd``,
``kv-c50``, ``kv-c10-no-partition``), over the histories both sides timed; under 2 ms
of CPU for every history of the millisecond sets (``kv-c01``, ``kv-c10``, and
``kv-c01-no-partition``), where the fixed cost of a check dominates.

Porcupine's etcd parser treats a failed cas as a completed cas that returned false
(it must be linearized where the value differs from ``old``); Jepsen and Knossos, and
so splitbrain, treat ``fail`` as "did not happen". Disagreements on etcd logs can come
from that difference alone (on the 102 logs it causes none).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkers import linearizable
from checkers.models import KV, Model, make_model
from harness.formats import read_history
from harness.history import HistoryError

RATIO_TARGET = 0.5
MS_TARGET = 2.0
MAX_RUNS = 10_000
"""However fast a history's check, it is not repeated more often than this."""


class UnpartitionedKV:
    """The kv model with all keys in one state and no ``key_of``, so the checker must
    search the whole history at once, as Porcupine's ``kvNoPartitionModel`` does. Its
    methods are the kv model's own, bound here (a wrapper would add a call per step)."""

    name = "kv-no-partition"

    def __init__(self, initial: Any = "") -> None:
        kv = KV(initial)
        self.init: Callable[[], Hashable] = kv.init
        self.step: Callable[[Any, str, Any, Any], Any] = kv.step
        self.describe: Callable[[Any], str] = kv.describe
        self.read_only: Callable[[str, Any], bool] = kv.read_only


@dataclass(frozen=True)
class SetSpec:
    """One set of histories: its kv logs (``clients``) or, for None, every etcd log."""

    clients: int | None
    partitioned: bool
    target: str  # "ratio" (a hard set) or "ms" (a millisecond set)

    def model(self) -> Model:
        if self.clients is None:
            return make_model("cas-register")
        return make_model("kv", "") if self.partitioned else UnpartitionedKV("")


SETS = {
    "etcd": SetSpec(None, True, "ratio"),
    "kv-c01": SetSpec(1, True, "ms"),
    "kv-c10": SetSpec(10, True, "ms"),
    "kv-c50": SetSpec(50, True, "ratio"),
    "kv-c01-no-partition": SetSpec(1, False, "ms"),
    "kv-c10-no-partition": SetSpec(10, False, "ratio"),
}

_GO_LINE = re.compile(r"^Benchmark(?P<name>\w+?)(?:-(?P<procs>\d+))?\s+\d+\s+"
                      r"(?P<ns>\d+(?:\.\d+)?) ns/op")
_GO_ETCD = re.compile(r"EtcdJepsen(\d+)")
_GO_KV = re.compile(r"Kv(NoPartition)?(\d+)Clients?(Ok|Bad)")


def history_of(bench: str) -> tuple[str, str] | None:
    """Our (set, file name) for a Go benchmark's name (without ``Benchmark``)."""
    if m := _GO_ETCD.fullmatch(bench):
        return "etcd", f"etcd_{int(m[1]):03d}.log"
    if m := _GO_KV.fullmatch(bench):
        name = f"c{int(m[2]):02d}-{m[3].lower()}"
        s = f"kv-c{int(m[2]):02d}" + ("-no-partition" if m[1] else "")
        return (s, f"{name}.txt") if s in SETS else None
    return None


@dataclass
class GoBench:
    """Porcupine's seconds per check, by (set, file), and the GOMAXPROCS they ran with."""

    seconds: dict[tuple[str, str], float]
    procs: int


def parse_go_bench(text: str) -> GoBench:
    """The lines ``BenchmarkName[-N] iterations X ns/op`` of ``go test -bench``. A name
    seen several times (``-count``) counts at its median; where several GOMAXPROCS were
    run (``-cpu 1,2``) only the fewest cores count."""
    seen: dict[int, dict[tuple[str, str], list[float]]] = {}
    for line in text.splitlines():
        m = _GO_LINE.match(line.strip())
        key = history_of(m["name"]) if m else None
        if m and key:
            procs = int(m["procs"] or 1)
            seen.setdefault(procs, {}).setdefault(key, []).append(float(m["ns"]) / 1e9)
    if not seen:
        raise ValueError("no Porcupine benchmark lines (`BenchmarkKv1ClientOk  5  61121 "
                         "ns/op`, `BenchmarkEtcdJepsenNNN ...`)")
    procs = min(seen)
    return GoBench({k: statistics.median(v) for k, v in seen[procs].items()}, procs)


@dataclass
class Case:
    set: str
    path: Path
    model: Model
    expected: bool | None


@dataclass
class Outcome:
    case: Case
    ops: int
    parse_s: float
    valid: Any
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return statistics.median(self.cpu)

    @property
    def wall_s(self) -> float:
        return statistics.median(self.wall)


def expected_verdicts(test_go: Path | None) -> tuple[dict[int, bool], dict[tuple[str, bool], bool]]:
    """The verdicts Porcupine's tests assert: etcd log number -> valid, and
    (kv log name, partitioned) -> valid."""
    if test_go is None or not test_go.is_file():
        return {}, {}
    src = test_go.read_text()
    etcd = {int(n): v == "true" for n, v in
            re.findall(r"checkJepsen\(t, (\d+), (true|false)\)", src)}
    kv = {(name, part == "true"): v == "true" for name, v, part in
          re.findall(r'checkKv\(t, "([\w-]+)", (true|false), (true|false)\)', src)}
    return etcd, kv


def cases(data: Path, test_go: Path | None, sets: list[str]) -> list[Case]:
    """Every history of ``sets`` found in ``data``; a missing kv log is named and left out."""
    etcd_expected, kv_expected = expected_verdicts(test_go)
    out: list[Case] = []
    for s in sets:
        spec = SETS[s]
        if spec.clients is None:
            for p in sorted((data / "jepsen").glob("etcd_*.log")):
                n = re.search(r"(\d+)", p.name)
                exp = etcd_expected.get(int(n[1])) if n else None
                out.append(Case(s, p, spec.model(), exp))
            continue
        for kind in ("ok", "bad"):
            name = f"c{spec.clients:02d}-{kind}"
            path = data / "kv" / f"{name}.txt"
            if path.is_file():
                out.append(Case(s, path, spec.model(),
                                kv_expected.get((name, spec.partitioned))))
            else:
                print(f"  ({s}: no {path}, left out)")
    return out


def cpu_now() -> float:
    """CPU seconds of this process and of its children that have ended (the checker's
    worker pool is joined before ``check`` returns)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(case: Case, repeat: int, min_time: float, time_limit: float | None,
            workers: int | None) -> Outcome | None:
    c0 = time.process_time()
    try:
        history = read_history(case.path)
    except (HistoryError, OSError) as e:
        print(f"  {case.path.name:<16} skipped: {e}")
        return None
    out = Outcome(case, len(history), time.process_time() - c0, None)
    while len(out.cpu) < repeat or (sum(out.cpu) < min_time and len(out.cpu) < MAX_RUNS):
        c0, w0 = cpu_now(), time.perf_counter()
        result = linearizable.check(case.model, history, time_limit=time_limit,
                                    workers=workers)
        out.wall.append(time.perf_counter() - w0)
        out.cpu.append(cpu_now() - c0)
        if out.valid is None:
            out.valid = result["valid"]
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def summarize(sets: list[str], outcomes: list[Outcome], go: GoBench | None) -> list[str]:
    """Per-set totals, then one line per target saying whether it is met."""
    lines = ["", "== totals (per history: median run; ratio: our CPU / Porcupine's, over"
             " the histories both timed)"]
    if go and go.procs > 1:
        lines.append(f"  Porcupine ran with GOMAXPROCS={go.procs} (no `-cpu 1`): its ns/op"
                     f" is wall time on up to {go.procs} cores, not CPU; the ratios compare"
                     " our CPU with its wall time")
    verdicts = ["", "== targets (issue 11)"]
    for s in sets:
        mine = [o for o in outcomes if o.case.set == s]
        if not mine:
            continue
        count = {v: sum(1 for o in mine if o.valid == v) for v in (True, False, "unknown")}
        line = (f"  {s:<22} {len(mine):>4} files  ours {sum(o.cpu_s for o in mine):8.4f} s CPU"
                f" {sum(o.wall_s for o in mine):8.4f} s wall  "
                f"parse {sum(o.parse_s for o in mine):7.3f} s")
        both = [o for o in mine if go and (s, o.case.path.name) in go.seconds]
        ratio = None
        if go and both:
            theirs = sum(go.seconds[(s, o.case.path.name)] for o in both)
            ratio = sum(o.cpu_s for o in both) / theirs
            line += f"  porcupine {theirs:8.4f} s  ratio {ratio:6.3f} ({len(both)}/{len(mine)})"
        lines.append(line + f"  valid/invalid/unknown "
                            f"{count[True]}/{count[False]}/{count['unknown']}")
        spec = SETS[s]
        if spec.target == "ms":
            per = [o.cpu_s for o in mine]
            lines.append(f"  {'':<22} per history: median {ms(statistics.median(per))}, "
                         f"max {ms(max(per))} CPU")
            ok = max(per) * 1000 < MS_TARGET
            verdicts.append(f"  {s:<22} max {ms(max(per))} per history "
                            f"{'<' if ok else '>='} {MS_TARGET:g} ms: "
                            f"{'met' if ok else 'MISSED'}")
        elif ratio is None:
            verdicts.append(f"  {s:<22} CPU ratio not measured (no Porcupine figure for it;"
                            " see --porcupine)")
        else:
            ok = ratio <= RATIO_TARGET
            wall = (f" (Porcupine's figures are wall time on {go.procs} cores)"
                    if go and go.procs > 1 else "")
            verdicts.append(f"  {s:<22} CPU ratio {ratio:.3f} {'<=' if ok else '>'} "
                            f"{RATIO_TARGET:g}: {'met' if ok else 'MISSED'}{wall}")
    return lines + verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("test_data", type=Path, help="Porcupine's test_data directory")
    ap.add_argument("--expected", type=Path,
                    help="Porcupine's porcupine_test.go (default: next to test_data)")
    ap.add_argument("--porcupine", type=Path, metavar="FILE",
                    help="what Porcupine's `go test -bench ... -cpu 1` printed")
    ap.add_argument("--sets", default=",".join(SETS), help="comma separated: " + ", ".join(SETS))
    ap.add_argument("--repeat", type=int, default=3,
                    help="check each history at least this often (default 3)")
    ap.add_argument("--min-time", type=float, default=0.2,
                    help="and until its checks add up to this much CPU, s (default 0.2)")
    ap.add_argument("--time-limit", type=float, help="seconds per check")
    ap.add_argument("--workers", type=int,
                    help="processes the checker may use (default: its own, the cores)")
    args = ap.parse_args(argv)
    if not (args.test_data / "jepsen").is_dir() and not (args.test_data / "kv").is_dir():
        ap.error(f"{args.test_data} has neither jepsen/ nor kv/")
    if args.repeat < 1 or args.min_time < 0 or (args.workers is not None and args.workers < 1):
        ap.error("--repeat and --workers must be 1 or more, --min-time 0 or more")
    test_go = args.expected or args.test_data.parent / "porcupine_test.go"
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(sets) - set(SETS)
    if unknown:
        ap.error(f"unknown set(s) {', '.join(sorted(unknown))} (known: {', '.join(SETS)})")
    go = None
    if args.porcupine:
        try:
            go = parse_go_bench(args.porcupine.read_text(errors="replace"))
        except (OSError, ValueError) as e:
            ap.error(f"--porcupine {args.porcupine}: {e}")
        if go.procs > 1:
            print(f"warning: {args.porcupine} was not run with `-cpu 1` (names end in "
                  f"-{go.procs}): Porcupine's ns/op are wall time on up to {go.procs} "
                  "cores, not CPU")

    load = os.getloadavg()[0]
    outcomes: list[Outcome] = []
    current = None
    for case in cases(args.test_data, test_go, sets):
        if case.set != current:
            current = case.set
            print(f"== {current}")
        o = measure(case, args.repeat, args.min_time, args.time_limit, args.workers)
        if o is None:
            continue
        outcomes.append(o)
        exp = "" if case.expected is None else f" (porcupine: {case.expected})"
        mark = "  DISAGREES" if case.expected is not None and o.valid != case.expected else ""
        theirs = go.seconds.get((case.set, case.path.name)) if go else None
        versus = "" if theirs is None else f"  porcupine {ms(theirs):>12}"
        print(f"  {case.path.name:<16} {o.ops:>6} entries  valid={o.valid!s:<7}{exp}"
              f"  check {ms(o.cpu_s):>12} CPU {ms(o.wall_s):>12} wall {len(o.cpu):>5} runs"
              f"{versus}{mark}", flush=True)

    print("\n".join(summarize(sets, outcomes, go)))
    print(f"\nload average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, "
          f"{os.cpu_count()} cores: other processes slow even CPU time (shared caches)")
    disagreements = [o for o in outcomes
                     if o.case.expected is not None and o.valid != o.case.expected]
    print(f"\n{len(disagreements)} disagreement(s) with Porcupine's expected verdicts")
    for o in disagreements:
        print(f"  {o.case.set} {o.case.path.name}: ours {o.valid}, porcupine {o.case.expected}")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
