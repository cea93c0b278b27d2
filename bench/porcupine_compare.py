"""Time our linearizability checker on Porcupine's own test histories.

    python bench/porcupine_compare.py /path/to/porcupine/test_data [--expected FILE]

Porcupine (github.com/anishathalye/porcupine) ships Jepsen etcd logs
(``jepsen/etcd_NNN.log``, a cas register whose initial value is nil) and key-value logs
(``kv/cNN-ok.txt``, ``kv/cNN-bad.txt``: get/put/append with every key initially "").
This script checks the same sets Porcupine's benchmarks check and prints per-file
verdicts, check times and per-set totals:

- ``etcd``: every etcd log with the cas-register model, initial null;
- ``kv-c50``: the 50-client kv logs with the kv model, checked key by key;
- ``kv-c10-no-partition``: the 10-client kv logs checked as one history over all keys
  (Porcupine's ``KvNoPartition10Clients``): the search without P-compositionality.

Nothing of Porcupine is part of this repository: point the script at a copy of its
``test_data`` directory. With ``--expected`` naming Porcupine's ``porcupine_test.go``
(found next to ``test_data`` by default) the verdicts its tests assert are read from
there and every disagreement is listed. Porcupine's own times come from running its
``go test -bench`` separately.

Porcupine's etcd parser treats a failed cas as a completed cas that returned false
(it must be linearized where the value differs from ``old``); Jepsen and Knossos, and
so splitbrain, treat ``fail`` as "did not happen". Disagreements on etcd logs can come
from that difference alone (on the 102 logs it causes none).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkers import linearizable
from checkers.models import KV, Model, make_model
from harness.formats import read_history
from harness.history import HistoryError


class UnpartitionedKV:
    """The kv model with all keys in one state and no ``key_of``, so the checker must
    search the whole history at once, as Porcupine's ``kvNoPartitionModel`` does."""

    name = "kv-no-partition"

    def __init__(self, initial: Any = "") -> None:
        self.kv = KV(initial)

    def init(self) -> Hashable:
        return self.kv.init()

    def step(self, state: Any, f: str, arg: Any, result: Any) -> Any:
        return self.kv.step(state, f, arg, result)

    def describe(self, state: Any) -> str:
        return self.kv.describe(state)

    def read_only(self, f: str, arg: Any) -> bool:
        return self.kv.read_only(f, arg)


SETS = ("etcd", "kv-c50", "kv-c10-no-partition")


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
    check_s: float
    valid: Any


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
    etcd_expected, kv_expected = expected_verdicts(test_go)
    out: list[Case] = []
    if "etcd" in sets:
        for p in sorted((data / "jepsen").glob("etcd_*.log")):
            n = int(re.search(r"(\d+)", p.name).group(1))
            out.append(Case("etcd", p, make_model("cas-register"), etcd_expected.get(n)))
    if "kv-c50" in sets:
        for name in ("c50-ok", "c50-bad"):
            out.append(Case("kv-c50", data / "kv" / f"{name}.txt", make_model("kv", ""),
                            kv_expected.get((name, True))))
    if "kv-c10-no-partition" in sets:
        for name in ("c10-ok", "c10-bad"):
            out.append(Case("kv-c10-no-partition", data / "kv" / f"{name}.txt",
                            UnpartitionedKV(""), kv_expected.get((name, False))))
    return out


def run(case: Case, time_limit: float | None) -> Outcome | None:
    t0 = time.perf_counter()
    try:
        history = read_history(case.path)
    except HistoryError as e:
        print(f"  {case.path.name:<16} skipped: {e}")
        return None
    t1 = time.perf_counter()
    result = linearizable.check(case.model, history, time_limit=time_limit)
    t2 = time.perf_counter()
    return Outcome(case, len(history), t1 - t0, t2 - t1, result["valid"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("test_data", type=Path, help="Porcupine's test_data directory")
    ap.add_argument("--expected", type=Path,
                    help="Porcupine's porcupine_test.go (default: next to test_data)")
    ap.add_argument("--sets", default=",".join(SETS), help="comma separated: " + ", ".join(SETS))
    ap.add_argument("--time-limit", type=float, help="seconds per history")
    args = ap.parse_args(argv)
    if not (args.test_data / "jepsen").is_dir() and not (args.test_data / "kv").is_dir():
        ap.error(f"{args.test_data} has neither jepsen/ nor kv/")
    test_go = args.expected or args.test_data.parent / "porcupine_test.go"
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(sets) - set(SETS)
    if unknown:
        ap.error(f"unknown set(s) {', '.join(sorted(unknown))} (known: {', '.join(SETS)})")

    outcomes: list[Outcome] = []
    current = None
    for case in cases(args.test_data, test_go, sets):
        if case.set != current:
            current = case.set
            print(f"== {current}")
        o = run(case, args.time_limit)
        if o is None:
            continue
        outcomes.append(o)
        exp = "" if case.expected is None else f" (porcupine: {case.expected})"
        mark = "  DISAGREES" if case.expected is not None and o.valid != case.expected else ""
        print(f"  {case.path.name:<16} {o.ops:>6} entries  valid={o.valid!s:<7}{exp}"
              f"  check {o.check_s * 1000:9.1f} ms{mark}", flush=True)

    print("\n== totals")
    for s in sets:
        mine = [o for o in outcomes if o.case.set == s]
        if not mine:
            continue
        verdicts = {v: sum(1 for o in mine if o.valid == v) for v in (True, False, "unknown")}
        print(f"  {s:<22} {len(mine):>4} files  check {sum(o.check_s for o in mine):8.3f} s  "
              f"parse {sum(o.parse_s for o in mine):7.3f} s  "
              f"valid/invalid/unknown {verdicts[True]}/{verdicts[False]}/{verdicts['unknown']}")
    disagreements = [o for o in outcomes
                     if o.case.expected is not None and o.valid != o.case.expected]
    print(f"\n{len(disagreements)} disagreement(s) with Porcupine's expected verdicts")
    for o in disagreements:
        print(f"  {o.case.set} {o.case.path.name}: ours {o.valid}, porcupine {o.case.expected}")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
