"""``splitbrain report`` on hostile run directories, and the page's bounds on big runs.

Every hostile directory gets either a report or one line of error with exit 254, never a
traceback; and however long the history, the page stays small and says what it left out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.history import Op
from harness.report import write_report
from harness.report_charts import latency_chart, slices, throughput_chart
from harness.report_history import Anchors, TimeAnchor, summarize
from tests.test_report import _run_dir

GOOD_OP = '{"index":0,"time":1000,"type":"invoke","process":0,"f":"add","value":1}\n'


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def make(run: Path) -> None:
        path = run / name
        if path.is_dir():
            os.rmdir(path)
        else:
            path.unlink(missing_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return make


def _replace(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def go(run: Path) -> None:
        (run / name).unlink(missing_ok=True)
        make(run / name)
    return go


def _non_empty_dir(path: Path) -> None:
    path.mkdir()
    (path / "x").write_text("")


HOSTILE: dict[str, Callable[[Path], None]] = {
    "no test.json": lambda run: (run / "test.json").unlink(),
    "test.json garbled": _write("test.json", "{nope"),
    "test.json a list": _write("test.json", "[1, 2, 3]"),
    "test.json binary": _write("test.json", os.urandom(256) + b"\xff\xfe"),
    "test.json a directory": _replace("test.json", lambda p: p.mkdir()),
    "test.json a fifo": _replace("test.json", lambda p: os.mkfifo(p)),
    "test.json wrong types": _write("test.json", json.dumps(
        {"name": ["x"], "nemesis": 5, "options": [1], "nodes": "abc", "seed": {"a": 1},
         "time_limit": 1e308, "rate": "fast", "concurrency": None})),
    "results.json garbled": _write("results.json", '{"valid": tr'),
    "results.json a list": _write("results.json", "[true]"),
    "results.json nested deep": _write("results.json", "[" * 50_000 + "]" * 50_000),
    "results.json a huge integer": _write("results.json", '{"valid": ' + "9" * 5000 + "}"),
    "results.json wrong types": _write("results.json", json.dumps(
        {"valid": "yes", "reason": ["a"], "anomalies": "lost",
         "lin": {"valid": False, "counterexample": "x", "summary": 5, "stats": 3},
         "lin2": {"valid": False, "counterexample": {"op": 1, "prefix": "p",
                                                     "concurrent": [1, None, {}]}}})),
    "results.json anomalies of every shape": _write("results.json", json.dumps(
        {"valid": False, "anomalies": [1, "x", None, {"type": ["t"], "count": "many"},
                                       {"count": 10 ** 100, "reads": [{"time": "x"}] * 50,
                                        "blob": "y" * 100_000},
                                       {"type": "z", "reads": [{"index": -5}, {"time": 1e300},
                                                               {"index": 10 ** 30}]}]})),
    "results.json a device": _replace("results.json", lambda p: p.symlink_to("/dev/zero")),
    "no history.jsonl": lambda run: (run / "history.jsonl").unlink(),
    "history.jsonl garbled": _write("history.jsonl", GOOD_OP + "{garbage}\n" + GOOD_OP),
    "history.jsonl binary": _write("history.jsonl", os.urandom(4096)),
    "history.jsonl a fifo": _replace("history.jsonl", lambda p: os.mkfifo(p)),
    "history.jsonl a directory": _replace("history.jsonl", lambda p: p.mkdir()),
    "history.jsonl empty": _write("history.jsonl", ""),
    "history.jsonl torn": _write("history.jsonl", GOOD_OP + '{"index":1,"ti'),
    "history.jsonl wrong types": _write("history.jsonl", "".join(json.dumps(o) + "\n" for o in [
        {"type": "invoke", "f": "add", "process": 0, "time": "soon", "value": 1},
        {"type": "ok", "f": ["add"], "process": 0, "time": -5},
        {"type": "invoke", "f": "add", "process": 1.5, "time": 10 ** 40, "index": "x"},
        {"type": "info", "f": "kill", "process": "nemesis", "time": 10, "value": {"a": 1}},
        {"type": "invoke", "f": None, "process": 2, "time": 20, "value": "z" * 10_000},
        {"type": "ok", "f": None, "process": 2, "time": 10},  # completes before invoked
    ])),
    "history.jsonl deep": _write("history.jsonl", GOOD_OP + "[" * 100_000 + "\n"),
    "report.html a directory": _replace("report.html", lambda p: _non_empty_dir(p)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_report_on_a_hostile_run_directory_is_a_page_or_one_line(tmp_path, case):
    run = _run_dir(tmp_path)
    HOSTILE[case](run)
    r = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                        "report", str(run)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert "Traceback" not in r.stderr, r.stderr
    if r.returncode == 0:
        html = (run / "report.html").read_text()
        assert html.startswith("<!DOCTYPE html>") and "made by splitbrain" in html
        assert len(html) < 300_000
    else:
        assert r.returncode == 254, (r.returncode, r.stderr)
        assert r.stderr.startswith("splitbrain: ") and r.stderr.count("\n") == 1, r.stderr
    assert not list(run.glob(".report.*"))  # no temporary file left behind


def test_a_long_history_gives_a_small_page_that_says_what_it_left_out(tmp_path):
    """200,000 ops, 301 faults and 400 files: every part is capped and says so."""
    run = _run_dir(tmp_path)
    lines = []
    t, i = 0, 0
    for k in range(100_000):
        p = k % 50
        for kind in ("invoke", "ok" if k % 10 else "info"):
            t += 100_000
            lines.append(json.dumps({"index": i, "time": t, "type": kind, "process": p,
                                     "f": "add", "value": 1}))
            i += 1
        if k % 333 == 0:
            for f, kind in (("start-partition", "invoke"), ("start-partition", "info"),
                            ("stop-partition", "invoke"), ("stop-partition", "info")):
                t += 1
                heal = {"ends": "start-partition"} if f == "stop-partition" else {}
                lines.append(json.dumps({"index": i, "time": t, "type": kind,
                                         "process": "nemesis", "f": f, "value": ["n1"],
                                         **(heal if kind == "invoke" else {})}))
                i += 1
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    for n in range(400):
        (run / "nodes" / "n1" / f"extra-{n}.log").write_text("x")
    results = json.loads((run / "results.json").read_text())
    results["linearizable"]["counterexample"]["op"]["index"] = 150_000
    results["linearizable"]["counterexample"]["concurrent"] = [
        {"process": p, "f": "add", "value": 1, "type": "ok", "start": 5.0, "end": 5.1,
         "index": 1} for p in range(500)]
    (run / "results.json").write_text(json.dumps(results))
    html = write_report(run).read_text()
    assert len(html) < 400_000
    assert "consecutive of the 201,204 ops" in html  # the window around index 150,000
    assert "of 500, the rest are in results.json" in html.replace(";", ",")
    assert "the first 60 of 1,204 nemesis operations" in html
    assert "Only the first 200 faults are shaded; 101 more are not." in html
    assert "… and 104 more" in html  # 400 + 4 files, 300 listed
    assert html.count("<rect") < 1_500


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)
FIELD = st.one_of(JSON, st.sampled_from(["invoke", "ok", "fail", "info", "nemesis", "add",
                                         "kill", "start", "start-partition"]),
                  st.integers(-10, 10 ** 12))


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.builds(Op, FIELD, FIELD, FIELD, FIELD, FIELD, FIELD,
                              st.dictionaries(st.text(max_size=3), JSON, max_size=2)),
                    max_size=40))
def test_the_fold_accepts_any_op_whatever_its_fields_hold(ops):
    """Readers may let through ops of odd shapes; the fold and the charts never fail."""
    anchors = Anchors({0: "blamed"}, [TimeAnchor(0, "early"), TimeAnchor(5, "p", 3)])
    summary = summarize(ops, anchors)
    s = slices(summary.timeline, summary.duration)
    throughput_chart(s, summary.bands)
    latency_chart(s, summary.bands)
    assert summary.ops == len(ops)
    assert sum(summary.outcomes.values()) + summary.untimed <= len(ops)
