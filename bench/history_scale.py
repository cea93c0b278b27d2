"""Histories at scale: read, check and report a million operations (issue 11).

Makes (or takes, with ``--history``) a counter history of ``--ops`` operations (100
clients, 10% of the adds crashed: ``bench/counter_check.py``'s simulation, written as
``history.jsonl``), and in the same run times a bare stdlib ``json.loads`` loop over the
file as the baseline. Then it prints, each as measured:

- ``splitbrain check`` end to end (a subprocess) and its peak memory (the child's
  maximum resident set), as ratios to the baseline: targets <= 0.5x and <= 300 MB;
- ``splitbrain report`` on a run directory made from that history (a minimal
  ``test.json`` and ``results.json``): time, peak memory and report size (targets
  <= 1x the baseline, <= 300 MB, < 1 MB);
- the unit-counter check alone, in this process, on the history already read (target
  <= 2 s), and the run's counter checker beside it;
- the Knossos corpus (``../shared/corpus/knossos``) parsed and checked, in CPU seconds
  (target < 1 s for parsing).

    python bench/history_scale.py [--ops 1000000] [--history FILE] [--work DIR]

Histories shaped as someone else would write them (spaces, other key orders, extra
fields, string processes, float times, a lost update) come from
``bench/foreign_histories.py``, which also times ``check`` on them, repeatedly; give one
to this bench with ``--history`` for the report and the rest.

This is a bench, not a test: it prints figures and says which targets were missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from counter_check import simulate  # noqa: E402

from checkers import linearizable  # noqa: E402
from checkers.counter import CounterChecker  # noqa: E402
from checkers.counter_linear import check_unit_counter  # noqa: E402
from checkers.models import make_model  # noqa: E402
from harness.formats import read_history  # noqa: E402
from harness.history import read_jsonl  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "knossos"
CORPUS_MODELS = {"cas-register": ("cas-register", 0),
                 "multi-register": ("multi-register", {"x": 0, "y": 0}),
                 "mutex": ("mutex", None)}


def make_history(path: Path, ops: int, seed: int) -> None:
    """Writes the simulated history as the run's recorder writes it (one compact JSON
    object per line)."""
    encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
    with open(path, "w", encoding="utf-8") as f:
        for op in simulate(ops, seed):
            f.write(encode(op.to_dict()) + "\n")


def baseline(path: Path) -> tuple[float, float]:
    """Wall and CPU seconds for a bare stdlib ``json.loads`` loop over the file."""
    began, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as f:
        for line in f:
            json.loads(line)
    return time.perf_counter() - began, time.process_time() - cpu


PEAK_PROBE = """\
import os
_exit = os._exit
def _exit_with_peak(code):
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(os.environ["SPLITBRAIN_BENCH_PEAK"], "w") as out:
        out.write(kb)
    _exit(code)
os._exit = _exit_with_peak  # the CLI ends with os._exit: no atexit hook would run
from harness.cli import main
main()
"""
"""The child's own high-water mark (``VmHWM``, of its address space since its exec). Its
``ru_maxrss`` is no measure: Linux carries the parent's high-water mark across fork and
exec, so a child of this bench (which holds hundreds of MB) reported the bench's peak."""


def timed_subprocess(args: list[str]) -> tuple[int, float, float, float, str]:
    """Exit code, wall seconds, CPU seconds and peak resident MiB of ``splitbrain
    ARGS``, and its last line of output. On a shared machine the CPU ratio is the
    steadier figure; both are printed."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak_file:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
               "SPLITBRAIN_BENCH_PEAK": peak_file.name}
        began = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", PEAK_PROBE, *args],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert p.stdout is not None
        out = p.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - began
        p.returncode = os.waitstatus_to_exitcode(status)
        peak_kb = peak_file.read().strip()
    last = out.strip().splitlines()[-1] if out.strip() else ""
    cpu = usage.ru_utime + usage.ru_stime
    peak = int(peak_kb) / 1024 if peak_kb else float("nan")  # nan: the child died hard
    return p.returncode, seconds, cpu, peak, last


def run_dir_for(history: Path, work: Path) -> Path:
    """A run directory holding ``history`` (hard-linked where possible)."""
    run = work / "run"
    run.mkdir(parents=True, exist_ok=True)
    target = run / "history.jsonl"
    if target.exists():
        target.unlink()
    try:
        os.link(history, target)
    except OSError:
        target.write_bytes(history.read_bytes())
    (run / "test.json").write_text(json.dumps({"name": "history-scale", "system": "counterd",
                                               "nodes": ["n1", "n2", "n3", "n4", "n5"]}))
    (run / "results.json").write_text(json.dumps({"valid": True, "anomalies": []}))
    return run


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--history", type=Path, help="a history.jsonl to use instead")
    parser.add_argument("--work", type=Path, default=Path("/tmp/splitbrain-history-scale"))
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the Knossos corpus")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    missed: list[str] = []

    history = args.history
    if history is None:
        history = args.work / f"counter-{args.ops}-{args.seed}.jsonl"
        if not history.exists():
            began = time.perf_counter()
            make_history(history, args.ops, args.seed)
            print(f"made {history} in {time.perf_counter() - began:.1f} s")
    size = history.stat().st_size
    lines = sum(1 for _ in open(history, "rb"))
    print(f"history: {history} ({lines:,} lines, {size / 1e6:.0f} MB)")
    base, base_cpu = baseline(history)
    print(f"baseline json.loads loop: {base:.2f} s wall, {base_cpu:.2f} s CPU")

    code, seconds, cpu, peak, last = timed_subprocess(
        ["check", str(history), "--model", "counter"])
    ok = cpu <= 0.5 * base_cpu and peak <= 300
    missed += [] if ok else ["check"]
    print(f"check end to end: {seconds:.2f} s wall = {seconds / base:.2f}x baseline, "
          f"{cpu:.2f} s CPU = {cpu / base_cpu:.2f}x, peak {peak:.0f} MB (targets <= 0.5x, "
          f"<= 300 MB: {verdict(ok)}); exit {code}: {last}")

    if not args.skip_report:
        run = run_dir_for(history, args.work)
        code, seconds, cpu, peak, last = timed_subprocess(["report", str(run)])
        report = run / "report.html"
        kb = report.stat().st_size / 1024 if report.exists() else float("nan")
        ok = cpu <= base_cpu and peak <= 300 and kb < 1024
        missed += [] if ok else ["report"]
        print(f"report: {seconds:.2f} s wall = {seconds / base:.2f}x baseline, {cpu:.2f} s "
              f"CPU = {cpu / base_cpu:.2f}x, peak {peak:.0f} MB, {kb:.0f} KB (targets <= 1x, "
              f"<= 300 MB, < 1 MB: {verdict(ok)}); exit {code}")

    began = time.process_time()
    ops = read_jsonl(history)
    print(f"read_jsonl in this process: {time.process_time() - began:.2f} s CPU")
    began = time.process_time()
    unit = check_unit_counter(ops)
    seconds = time.process_time() - began
    ok = unit is not None and unit["valid"] is True and seconds <= 2
    missed += [] if ok else ["unit-counter"]
    print(f"unit-counter check alone: {seconds:.2f} s CPU, "
          f"{unit and unit['valid']} (target <= 2 s: {verdict(ok)})")
    began = time.process_time()
    result: dict[str, Any] = CounterChecker().check(None, ops)
    print(f"run's counter checker: {time.process_time() - began:.2f} s CPU, "
          f"{result['valid']}")
    del ops

    corpus(args.corpus, missed)
    if missed:
        raise SystemExit(f"targets missed: {', '.join(missed)}")


def corpus(root: Path, missed: list[str]) -> None:
    """The Knossos corpus parsed, then checked, in CPU seconds."""
    paths = sorted(root.glob("*/*/*.edn"))
    if not paths:
        print(f"Knossos corpus: not found at {root} (skipped)")
        return
    began = time.process_time()
    histories = [(p, read_history(p, "edn")) for p in paths]
    parse = time.process_time() - began
    began = time.process_time()
    wrong = 0
    for p, h in histories:
        name, initial = CORPUS_MODELS[p.parent.parent.name]
        result = linearizable.check(make_model(name, initial), h, time_limit=60, workers=1)
        wrong += result["valid"] is not (p.parent.name == "good")
    check = time.process_time() - began
    ok = parse < 1 and not wrong
    missed += [] if ok else ["corpus"]
    print(f"Knossos corpus ({len(paths)} files): parsed in {parse:.2f} s CPU "
          f"(target < 1 s: {verdict(parse < 1)}), checked in {check:.2f} s CPU, "
          f"{wrong} verdicts differ from the folders'")


if __name__ == "__main__":
    main()
