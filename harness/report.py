"""``report.html``: one self-contained page that explains a run to a person.

It is made from the run directory alone (test.json, results.json, history.jsonl and the
node logs), so ``splitbrain report RUN_DIR`` can draw it again at any time, for runs
recorded by older versions too. The page leads with the verdict and what made it, then
shows the counterexample as a picture, the operations and their latencies over time
under the faults that were active, and links to every file of the run.
"""

from __future__ import annotations

import json
import os
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2

from harness.errors import UsageError
from harness.history import NEMESIS, HistoryError, Op, pairs, read_jsonl
from harness.report_charts import (
    counterexample_chart,
    fault_bands,
    latency_chart,
    throughput_chart,
)
from harness.summary import checker_line

MAX_EXAMPLES = 10
"""Examples shown per anomaly; results.json keeps them all."""

TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("harness", "templates"),
                               autoescape=True, undefined=jinja2.StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)


def write_report(run_dir: Path | str) -> Path:
    """Renders ``run_dir/report.html`` from the run's files and returns its path."""
    run_dir = Path(run_dir)
    test = _read_json(run_dir / "test.json")
    if (run_dir / "results.json").exists():
        results = _read_json(run_dir / "results.json")
    else:  # a controller killed mid-run: its history is still worth a look
        results = {"valid": "unknown", "reason": "the run did not finish (no results.json)"}
    try:
        history = read_jsonl(run_dir / "history.jsonl", tolerate_torn_tail=True)
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: no history.jsonl; is this a run directory?") from None
    except HistoryError as e:
        raise UsageError(str(e)) from None
    data = report_data(run_dir, test, results, history)
    html = TEMPLATES.get_template("report.html.j2").render(**data)
    out = run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path.parent}: no {path.name}; is this a run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def report_data(run_dir: Path, test: dict[str, Any], results: dict[str, Any],
                history: list[Op]) -> dict[str, Any]:
    """Everything the template shows, as plain data."""
    duration = max((op.time for op in history), default=0) / 1e9
    bands = fault_bands(history, duration)
    client_ops = [op for op in history if op.process != NEMESIS]
    checkers = {name: sub for name, sub in results.items()
                if isinstance(sub, dict) and "valid" in sub}
    return {
        "checker_line": checker_line,
        "name": test.get("name", run_dir.parent.name),
        "run": run_dir.name,
        "valid": results.get("valid"),
        "reason": results.get("reason", ""),
        "test": test,
        "command": reproduce_command(test),
        "outcomes": Counter(op.type for op in client_ops if op.type != "invoke"),
        "duration": duration,
        "checkers": checkers,
        "anomalies": [_anomaly(a) for a in results.get("anomalies", [])],
        "counterexamples": [
            {"checker": name, "cx": sub["counterexample"],
             "chart": counterexample_chart(sub["counterexample"])}
            for name, sub in checkers.items()
            if sub.get("valid") is False and "counterexample" in sub],
        "throughput": throughput_chart(history, bands, duration),
        "latency": latency_chart(pairs(history), bands, duration),
        "faults": [{"time": op.time / 1e9, "type": op.type, "f": op.f,
                    "value": _short(op.value)}
                   for op in history if op.process == NEMESIS],
        "files": _files(run_dir),
    }


def reproduce_command(test: dict[str, Any]) -> str:
    """The command line that runs this test again, with the same seed."""
    args = ["splitbrain", "run"]
    for flag, key in (("--system", "system"), ("--workload", "workload"),
                      ("--backend", "backend"), ("--concurrency", "concurrency"),
                      ("--rate", "rate"), ("--time-limit", "time_limit"),
                      ("--seed", "seed")):
        if test.get(key) is not None:
            args += [flag, f"{test[key]:g}" if isinstance(test[key], float) else str(test[key])]
    nemesis = test.get("nemesis")
    if nemesis is not None:
        args += ["--nemesis", ",".join(nemesis) if nemesis else "none"]
    if test.get("nodes"):
        n = test["nodes"]
        args += ["--nodes", str(len(n))] if n == [f"n{i}" for i in range(1, len(n) + 1)] \
            else [a for node in n for a in ("--node", node)]
    for key, value in sorted(test.get("options", {}).items()):
        args += ["-o", f"{key}={value}"]
    return shlex.join(args)


def _anomaly(a: dict[str, Any]) -> dict[str, Any]:
    examples = next((v for k, v in a.items() if isinstance(v, list)), [])
    details = {k: v for k, v in a.items() if k not in ("type", "count")
               and not isinstance(v, list)}
    shown = [_short(e) for e in examples[:MAX_EXAMPLES]]
    count = a.get("count", "?")
    total = count if isinstance(count, int) else len(examples)
    return {"type": a.get("type", "?"), "count": count, "details": details,
            "examples": shown, "more": max(total - len(shown), 0)}


def _short(v: Any, limit: int = 160) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _files(run_dir: Path) -> list[tuple[str, int]]:
    """The run's files, relative to the report, with their sizes."""
    return [(str(p.relative_to(run_dir)), p.stat().st_size)
            for p in sorted(run_dir.rglob("*"))
            if p.is_file() and not p.name.startswith("report.html")]
