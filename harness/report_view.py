"""What ``report.html`` shows, as plain data: the run's test, results and history
summary turned into the bounded, already checked values its template renders.

``results.json`` and ``test.json`` are input like any other: a field of the wrong type
is shown as text or left out, never trusted, and every list is capped and says how much
it left out. Reading the run's files and rendering the page are ``harness.report``'s.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.context import SSHSettings
from harness.report_charts import (
    BLAMED,
    CONCURRENT,
    PREFIX,
    counterexample_chart,
    latency_chart,
    slices,
    throughput_chart,
)
from harness.report_history import Anchors, HistorySummary, TimeAnchor, short
from harness.summary import checker_line

MAX_EXAMPLES = 10
"""Examples shown per anomaly; results.json keeps them all."""
MAX_ANOMALIES = 30
MAX_CHECKERS = 30
MAX_COUNTEREXAMPLES = 5
MAX_PREFIX = 10
MAX_CONCURRENT = 20
MAX_NOTES = 20  # notes the run made about itself (a fault left out, ...)
MAX_KEYS = 30  # rows of a per-key table (kv): the failing key and the busiest
TEST_KEYS = ("system", "workload", "nemesis", "backend", "nodes", "concurrency", "rate",
             "time_limit", "seed", "options")


def report_data(run_dir: Path, test: dict[str, Any], results: dict[str, Any],
                checkers: dict[str, dict[str, Any]], history: HistorySummary
                ) -> dict[str, Any]:
    """Everything the template shows but the run's files, as plain, already bounded
    data."""
    s = slices(history.timeline, history.duration)
    name = test.get("name")
    anomalies = results.get("anomalies")
    anomalies = [a for a in anomalies if isinstance(a, dict)] if isinstance(
        anomalies, list) else []
    return {
        "name": short(name if isinstance(name, str) else run_dir.parent.name, 200),
        "run": short(run_dir.name, 200),
        "valid": _verdict(results.get("valid")),
        "reason": short(results.get("reason") or "", 300),
        "notes": [short(n, 300) for n in _listed(results.get("notes"))[:MAX_NOTES]],
        "test": {k: short(test[k], 300) for k in TEST_KEYS if k in test},
        "command": short(reproduce_command(test), 2000),
        "history": history,
        "checkers": {name: _checker_view(sub) for name, sub in checkers.items()},
        "checkers_hidden": _count_checkers(results) - len(checkers),
        "anomalies": [_anomaly(a) for a in anomalies[:MAX_ANOMALIES]],
        "anomalies_hidden": max(len(anomalies) - MAX_ANOMALIES, 0),
        "keys": _key_rows(checkers),
        "counterexamples": [_counterexample(name, sub["counterexample"])
                            for name, sub in checkers.items()
                            if sub.get("valid") is False
                            and isinstance(sub.get("counterexample"), dict)
                            ][:MAX_COUNTEREXAMPLES],
        "throughput": throughput_chart(s, history.bands),
        "latency": latency_chart(s, history.bands),
    }


@dataclass(frozen=True)
class KeyRow:
    key: str
    ok: int
    fail: int
    info: int
    failing: bool
    """The key of a counterexample."""

    @property
    def order(self) -> tuple[bool, int, int, str]:
        return (not self.failing, -(self.fail + self.info),
                -(self.ok + self.fail + self.info), self.key)


def _key_rows(checkers: dict[str, Any]) -> dict[str, Any] | None:
    """The per-key table of a checker that keeps one (the kv workload's ``keys``), the
    key of any counterexample first, then the keys with the most ``fail`` and ``info``
    ops (where the faults landed); at most ``MAX_KEYS`` rows, and how many are left out."""
    table = next((sub["per_key"] for sub in checkers.values()
                  if isinstance(sub.get("per_key"), dict)), None)
    if not table:
        return None
    failing = set()
    for sub in checkers.values():
        cx = sub.get("counterexample") if sub.get("valid") is False else None
        op = cx.get("op") if isinstance(cx, dict) else None
        value = op.get("value") if isinstance(op, dict) else None
        if isinstance(value, list) and len(value) == 2:
            failing.add(str(value[0]))

    def count(counts: object, outcome: str) -> int:
        n = counts.get(outcome) if isinstance(counts, dict) else None
        return n if type(n) is int else 0

    rows = sorted((KeyRow(short(key, 80), count(c, "ok"), count(c, "fail"), count(c, "info"),
                          str(key) in failing) for key, c in table.items()),
                  key=lambda r: r.order)
    return {"rows": rows[:MAX_KEYS], "hidden": max(len(rows) - MAX_KEYS, 0)}


def _listed(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _verdict(v: Any) -> bool | str:
    return v if v is True or v is False else "unknown"


def _count_checkers(results: dict[str, Any]) -> int:
    return sum(1 for sub in results.values() if isinstance(sub, dict) and "valid" in sub)


def checker_results(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each checker's part of results.json (an object with a ``valid``), by its name cut
    short; ``MAX_CHECKERS`` at most."""
    out: dict[str, dict[str, Any]] = {}
    for name, sub in results.items():
        if isinstance(sub, dict) and "valid" in sub and len(out) < MAX_CHECKERS:
            out[short(name, 80)] = sub
    return out


def _checker_view(sub: dict[str, Any]) -> dict[str, Any]:
    """A checker's verdict and one line, from the fields of the right type only."""
    fields: dict[str, Any] = {k: short(v, 2000) for k, v in sub.items()
              if k in ("summary", "explanation", "reason", "model", "analyzer")
              and isinstance(v, str)}
    if type(sub.get("ops")) is int:
        fields["ops"] = sub["ops"]
    stats = sub.get("stats")
    if isinstance(stats, dict) and type(stats.get("elapsed_s")) in (int, float) \
            and math.isfinite(stats["elapsed_s"]):
        fields["stats"] = {"elapsed_s": stats["elapsed_s"]}
    return {"valid": _verdict(sub.get("valid")), "line": short(checker_line(fields), 300)}


def blamed_ops(checkers: dict[str, dict[str, Any]], results: dict[str, Any]) -> Anchors:
    """The operations the checkers blamed: each counterexample's op, by history index,
    and each anomaly's examples, by index or by process and invocation time."""
    anchors = Anchors()
    for name, sub in checkers.items():
        cx = sub.get("counterexample")
        op = cx.get("op") if isinstance(cx, dict) else None
        if isinstance(op, dict) and type(op.get("index")) is int and op["index"] >= 0:
            anchors.indexes[op["index"]] = (
                f"{name}: process {short(op.get('process'), 40)} {short(op.get('f'), 40)} "
                "cannot be linearized")
    times: list[TimeAnchor] = []
    anomalies = results.get("anomalies")
    for a in anomalies if isinstance(anomalies, list) else []:
        if not isinstance(a, dict):
            continue
        kind = short(a.get("type", "anomaly"), 60)
        for e in _examples(a)[:MAX_EXAMPLES]:
            if not isinstance(e, dict):
                continue
            p = e.get("process") if type(e.get("process")) in (int, str) else None
            who = f"{kind}: process {short(p, 40)}" if p is not None else kind
            if type(e.get("index")) is int and e["index"] >= 0:
                anchors.indexes.setdefault(e["index"], who)
            elif type(e.get("time")) in (int, float) and 0 <= e["time"] < 1e9:
                times.append(TimeAnchor(int((e["time"] - 0.0005) * 1e9),
                                        f"{who} at {e['time']:.3f} s", p))
    anchors.times = sorted(times)
    return anchors


def _examples(a: dict[str, Any]) -> list[Any]:
    return next((v for v in a.values() if isinstance(v, list)), [])


def _anomaly(a: dict[str, Any]) -> dict[str, Any]:
    examples = _examples(a)
    details = {short(k, 60): short(v, 160) for k, v in list(a.items())[:12]
               if k not in ("type", "count") and not isinstance(v, list)}
    shown = [short(e) for e in examples[:MAX_EXAMPLES]]
    count = a.get("count")
    total = count if type(count) is int else len(examples)
    return {"type": short(a.get("type", "?"), 80),
            "count": f"{count:,}" if type(count) is int else short(count, 40),
            "details": details, "examples": shown,
            "more": max(total - len(shown), 0)}


def _view(v: Any) -> dict[str, Any] | None:
    """An op of a counterexample as shown, or None if it is not one."""
    if not isinstance(v, dict):
        return None
    start, end = v.get("start"), v.get("end")
    return {"process": short(v.get("process"), 40), "f": short(v.get("f"), 40),
            "value": short(v.get("value"), 80), "type": short(v.get("type"), 20),
            "start": _seconds(start), "end": _seconds(end)}


def _seconds(x: Any) -> float | None:
    """A time in seconds as given in results.json, if it is one."""
    ok = type(x) in (int, float) and math.isfinite(x) and abs(x) < 1e12
    return float(x) if ok else None


def _counterexample(checker: str, cx: dict[str, Any]) -> dict[str, Any]:
    """The counterexample cut to a window: the end of the prefix, the op, and the
    concurrent ops that began nearest to it; the page says how many were left out."""
    op = _view(cx.get("op")) or _view({})
    assert op is not None
    prefix, concurrent = (v if isinstance(v := cx.get(k), list) else []
                          for k in ("prefix", "concurrent"))
    prefix_views = [w for w in map(_view, prefix[-MAX_PREFIX:]) if w]
    near = [w for w in map(_view, concurrent[:10 * MAX_CONCURRENT]) if w]
    if op["start"] is not None:
        near.sort(key=lambda w: abs((w["start"] or 0) - op["start"]))
    near = sorted(near[:MAX_CONCURRENT], key=lambda w: w["start"] or 0)
    views = ([(w, PREFIX) for w in prefix_views] + [(op, BLAMED)]
             + [(w, CONCURRENT) for w in near])
    hidden = len(prefix) - len(prefix_views) + len(concurrent) - len(near)
    return {"checker": checker, "explanation": short(cx.get("explanation") or "", 4000),
            "state": short(cx.get("state") or "", 300), "op": op,
            "prefix": prefix_views, "prefix_total": len(prefix),
            "concurrent": near, "concurrent_total": len(concurrent),
            "chart": counterexample_chart(views, hidden)}


def reproduce_command(test: dict[str, Any]) -> str:
    """The command line that runs this test again, with the same seed (fields of the
    wrong type are left out), on one line. An ssh run's ``[ssh]`` table (keys, users,
    host key policy) has no flags: a shell comment says to give it in a test file."""
    args = ["splitbrain", "run"]
    for flag, key in (("--system", "system"), ("--workload", "workload"),
                      ("--backend", "backend"), ("--concurrency", "concurrency"),
                      ("--rate", "rate"), ("--time-limit", "time_limit"),
                      ("--seed", "seed")):
        v = test.get(key)
        if type(v) is float and math.isfinite(v):
            args += [flag, f"{v:g}"]
        elif type(v) in (int, str):
            args += [flag, short(str(v), 200)]
    nemesis = test.get("nemesis")
    if isinstance(nemesis, list) and all(isinstance(n, str) for n in nemesis):
        args += ["--nemesis", ",".join(nemesis) if nemesis else "none"]
    n = test.get("nodes")
    if isinstance(n, list) and n and all(isinstance(node, str) for node in n):
        counted = n == [f"n{i}" for i in range(1, len(n) + 1)] and test.get("backend") != "ssh"
        args += ["--nodes", str(len(n))] if counted \
            else [a for node in n for a in ("--node", short(node, 200))]
    image = test.get("image")
    if isinstance(image, str) and image:
        args += ["--image", short(image, 200)]
    options = test.get("options")
    for key, value in sorted(options.items() if isinstance(options, dict) else []):
        args += ["-o", f"{key}={short(value, 200)}"]
    command = shlex.join(args)
    if test.get("backend") == "ssh" and _ssh_table_given(test.get("ssh")):
        command += "  # plus test.json's [ssh] table, in a TEST_FILE: no flag carries it"
    return command


def _ssh_table_given(ssh: Any) -> bool:
    """Whether test.json's ``[ssh]`` table says anything its defaults do not."""
    defaults = SSHSettings().model_dump()
    return isinstance(ssh, dict) and any(v is not None and v != defaults.get(k)
                                         for k, v in ssh.items())
