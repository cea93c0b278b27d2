"""report.html: the geometry of its pictures, and the page made from a run directory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from checkers import linearizable
from checkers.models import Counter
from harness.history import NEMESIS, HistoryWriter, Op, read_jsonl
from harness.report import write_report
from harness.report_charts import COLOURS, latency_chart, slices, throughput_chart
from harness.report_history import summarize
from harness.report_view import _counterexample, reproduce_command

S = 1_000_000_000  # ns per second


def _op(t: float, type_: str, f: str, value=None, process=0) -> Op:
    return Op(type_, f, value, process, time=int(t * S))


def _nemesis(t: float, type_: str, f: str, value=None, ends: str | None = None) -> Op:
    op = _op(t, type_, f, value, NEMESIS)
    if ends is not None:  # a healing op names the op it ends, as the schedule marks it
        op.extra["ends"] = ends
    return op


def test_fault_bands_run_from_a_fault_to_its_heal_with_what_the_fault_did():
    history = [
        _nemesis(1, "invoke", "start-partition"),
        _nemesis(1.1, "info", "start-partition", {"n1": ["n2"], "n2": ["n1"]}),
        _nemesis(3, "invoke", "kill"),
        _nemesis(3.2, "info", "kill", ["n3"]),
        _nemesis(4, "invoke", "stop-partition", ends="start-partition"),
        _nemesis(4.1, "info", "stop-partition", "network healed"),
        _nemesis(6, "invoke", "pause"),
        _nemesis(6.1, "info", "pause", ["n2"]),
        _nemesis(7, "invoke", "start", ends="kill"),
        _nemesis(7.5, "info", "start", ["n3"]),
    ]
    history.append(_op(10, "invoke", "read"))  # the run ends at 10 s
    bands = summarize(history).bands
    assert [(b.start, b.end, b.label) for b in bands] == [
        (1, 4, "partition"), (3, 7, "kill n3"), (6, 10, "pause n2")]  # never resumed
    assert bands[0].detail == "n1 drops n2; n2 drops n1"


def test_throughput_bars_count_every_completion_once_by_outcome():
    history = []
    for i in range(40):
        history.append(_op(i * 0.05, "invoke", "add", 1, i % 4))
        history.append(_op(i * 0.05 + 0.01, ["ok", "ok", "fail", "info"][i % 4], "add", 1,
                           i % 4))
    summary = summarize(history)
    chart = throughput_chart(slices(summary.timeline, summary.duration), [])
    counted = {kind: 0 for kind in COLOURS}
    for r in chart.rects:
        n, kind = r.title.split()[:2]
        counted[kind] += int(n)
    assert counted == {"ok": 20, "fail": 10, "info": 10}
    assert all(r.y >= 0 and r.y + r.h <= chart.height for r in chart.rects)


def test_latency_is_drawn_per_slice_in_log_scale_by_outcome():
    history = [_op(0, "invoke", "read"), _op(0.001, "ok", "read", 0),
               _op(1, "invoke", "read", process=1), _op(1.1, "info", "read", process=1),
               _op(2, "invoke", "read", process=2)]  # never completed: no latency
    summary = summarize(history)
    chart = latency_chart(slices(summary.timeline, summary.duration), [])
    assert [d.fill for d in chart.dots] == [COLOURS["info"]]  # the 100 ms info op
    assert "1 info" in chart.dots[0].title and "median 1" in chart.dots[0].title
    median = next(p for p in chart.polylines if p.title.startswith("median"))
    assert len(median.points) == 1  # one slice had ok ops
    (x_ok, y_ok), info = median.points[0], chart.dots[0]
    assert x_ok < info.x and info.y < y_ok  # 100 ms drawn later and higher than 1 ms


def _lost_increment_history() -> list[Op]:
    """Process 0 adds 1 (ok), then process 1 reads 0: the add was lost."""
    ops = [_op(0.1, "invoke", "add", 1, 0), _op(0.2, "ok", "add", 1, 0),
           _op(0.3, "invoke", "read", None, 1), _op(0.4, "ok", "read", 0, 1)]
    for i, op in enumerate(ops):
        op.index = i
    return ops


def test_the_counterexample_picture_marks_the_op_that_cannot_be_linearized():
    result = linearizable.check(Counter(), _lost_increment_history())
    assert result["valid"] is False
    chart = _counterexample("linearizable", result["counterexample"])["chart"]
    assert chart is not None
    red = [r for r in chart.rects if r.fill == "#d9534f"]
    assert len(red) == 1 and "process 1 read 0" in red[0].title
    assert {t.text for t in chart.texts} >= {"process 0", "process 1"}


def test_no_counterexample_picture_without_times():
    cx = {"op": {"process": 1, "f": "read", "value": 0, "type": "ok", "start": None,
                 "end": None, "index": 3}, "prefix": [], "concurrent": []}
    assert _counterexample("linearizable", cx)["chart"] is None


def _run_dir(tmp_path: Path, *, with_results: bool = True) -> Path:
    run = tmp_path / "store" / "t" / "20260101T000000Z"
    (run / "nodes" / "n1").mkdir(parents=True)
    (run / "nodes" / "n1" / "counterd.log").write_text("started\n")
    test = {"name": "t", "system": "counterd", "workload": "counter",
            "nemesis": ["partition"], "backend": "local", "nodes": ["n1", "n2", "n3"],
            "concurrency": 2, "rate": None, "time_limit": 10.0, "seed": 42,
            "options": {"variant": "<naive>"}}
    (run / "test.json").write_text(json.dumps(test))
    writer = HistoryWriter(run / "history.jsonl")
    for op in _lost_increment_history():
        writer.append(Op(op.type, op.f, op.value, op.process))
    writer.close()
    if with_results:
        history = read_jsonl(run / "history.jsonl")
        lin = linearizable.check(Counter(), history)
        results = {"valid": False, "linearizable": lin, "anomalies": lin["anomalies"]}
        (run / "results.json").write_text(json.dumps(results))
    return run


def test_the_report_leads_with_the_verdict_and_shows_the_counterexample(tmp_path):
    run = _run_dir(tmp_path)
    html = write_report(run).read_text()
    assert re.search(r'<span class="badge invalid">INVALID</span>\s*t', html)
    assert "nonlinearizable" in html and "cannot be linearized" in html
    assert html.count("<svg") == 3  # counterexample, operations, latency
    assert 'href="./nodes/n1/counterd.log"' in html and 'href="./history.jsonl"' in html
    assert "variant=&lt;naive&gt;" in html and "<naive>" not in html  # escaped
    assert "--seed 42" in html


def test_the_report_shows_the_run_s_notes_such_as_a_fault_left_out(tmp_path):
    run = _run_dir(tmp_path)
    results = json.loads((run / "results.json").read_text())
    results["notes"] = ["left out partition: <one node> cannot be partitioned", 7]
    (run / "results.json").write_text(json.dumps(results))
    html = write_report(run).read_text()
    assert "Note: left out partition: &lt;one node&gt; cannot be partitioned" in html
    assert "Note: 7" not in html  # a note that is not text is not shown


def test_a_run_killed_before_its_verdict_still_gets_a_report(tmp_path):
    html = write_report(_run_dir(tmp_path, with_results=False)).read_text()
    assert "UNKNOWN" in html and "did not finish" in html


def test_reproduce_command_names_everything_the_run_needs():
    test = {"system": "counterd", "workload": "counter", "nemesis": [], "backend": "local",
            "nodes": ["n1", "n2"], "concurrency": 20, "rate": None, "time_limit": 10.0,
            "seed": 7, "options": {"variant": "naive"}}
    assert reproduce_command(test) == (
        "splitbrain run --system counterd --workload counter --backend local "
        "--concurrency 20 --time-limit 10 --seed 7 --nemesis none --nodes 2 "
        "-o variant=naive")


def test_reproduce_command_keeps_the_image_and_points_at_the_ssh_table_on_one_line():
    docker = {"system": "redis", "backend": "docker", "nodes": ["n1"], "image": "my img:1",
              "build_image": False, "options": {"install": "apt"}}
    assert reproduce_command(docker) == ("splitbrain run --system redis --backend docker "
                                         "--nodes 1 --image 'my img:1' -o install=apt")
    assert "--image" not in reproduce_command({**docker, "image": ""})
    defaults = {"user": None, "port": None, "key": None, "known_hosts": None,
                "host_key_policy": "strict", "sudo": None, "config": None,
                "connect_timeout": 10.0, "workdir": None}
    ssh = {"system": "etcd", "backend": "ssh", "nodes": ["admin@db1:2222", "db2"],
           "image": "", "ssh": defaults}
    plain = "splitbrain run --system etcd --backend ssh --node admin@db1:2222 --node db2"
    assert reproduce_command(ssh) == plain  # nothing in [ssh] a flag would miss
    for given in ({"key": "/home/u/.ssh/id_ed25519"}, {"host_key_policy": "accept-new"}):
        command = reproduce_command({**ssh, "ssh": {**defaults, **given}})
        assert command == plain + ("  # plus test.json's [ssh] table, in a TEST_FILE: "
                                   "no flag carries it")
        assert "\n" not in command


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                           *args], capture_output=True, text=True, timeout=60, check=False)


def test_splitbrain_report_draws_again_or_says_why_not(tmp_path):
    run = _run_dir(tmp_path)
    r = _cli("report", str(run))
    assert r.returncode == 0 and r.stdout.strip() == str(run / "report.html"), r.stderr
    r = _cli("report", str(tmp_path))
    assert r.returncode == 254
    assert "no test.json; is this a run directory?" in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_the_history_window_highlights_the_blamed_op_of_the_right_process():
    """A stale read given by process and a time rounded to the millisecond (as the
    counter checker gives it) is found among ops of other processes at that time."""
    from harness.report_history import Anchors, TimeAnchor, summarize

    history = []
    for k in range(100):
        t = 1.0 + k * 0.0001  # 0.1 ms apart: ten ops per rounded millisecond
        kind = "invoke" if k % 2 or k == 57 else "ok"
        process = 1 if k in (56, 57) else k % 7  # 56: the completion of 1's previous op
        history.append(_op(t, kind, "read" if k == 57 else "add", None, process))
        history[-1].index = k
    blamed_time = round(history[57].time / 1e9, 3)
    anchors = Anchors(times=[TimeAnchor(int((blamed_time - 0.0005) * 1e9), "stale", 1)])
    (window,) = summarize(history, anchors).windows
    assert [r["index"] for r in window.rows if r["blamed"]] == [57]
    assert window.rows[0]["index"] == 47 and window.rows[-1]["index"] == 67


def test_a_kv_run_s_report_shows_its_keys_failing_key_first_and_says_what_it_left_out(
        tmp_path):
    run = _run_dir(tmp_path)
    results = json.loads((run / "results.json").read_text())
    per_key = {f"k{i}": {"ok": 10, "info": i % 3} for i in range(40)}
    per_key["k7"] = {"ok": 5, "fail": 1}
    results["keys"] = {"valid": True, "summary": "40 keys", "per_key": per_key}
    results["linearizable"]["valid"] = False
    results["linearizable"]["counterexample"]["op"]["value"] = ["k7", 3]
    (run / "results.json").write_text(json.dumps(results))
    html = write_report(run).read_text()
    keys = html[html.index("<h2>Keys</h2>"):]
    rows = re.findall(r"<tr><td>(k\d+)</td>", keys)
    assert rows[0] == "k7" and "not linearizable" in keys[:keys.index("k2")]
    assert len(rows) == 30 and "10 more keys in results.json" in keys
    assert all(int(k[1:]) % 3 == 2 for k in rows[1:14])  # then the keys with most info


def test_a_run_without_keys_has_no_key_table(tmp_path):
    assert "<h2>Keys</h2>" not in write_report(_run_dir(tmp_path)).read_text()


def test_the_summary_of_records_as_read_equals_the_summary_of_ops(tmp_path):
    """``report`` folds the reader's records and makes an ``Op`` only of what shows on
    the page (faults, window rows): each part of the summary must be what the ops give,
    extras (``ends``, a user's own fields) included."""
    from harness.history import iter_records
    from harness.report_history import Anchors, TimeAnchor

    lines = []
    for k in range(3000):
        t = int(1e9 + k * 1e6)
        if k % 500 == 10:
            f, ends = ("start-partition", None) if k % 1000 == 10 else ("stop-partition",
                                                                         "start-partition")
            for type_, dt in (("invoke", 0), ("info", 100)):
                lines.append({"type": type_, "f": f, "value": None, "process": NEMESIS,
                              "time": t + dt, **({"ends": ends} if ends else {})})
        p = k % 9
        kind = "invoke" if k % 2 == 0 else ["ok", "ok", "fail", "info"][k % 7 % 4]
        lines.append({"type": kind, "f": "add", "value": 1, "process": p, "time": t,
                      "node": f"n{p % 3 + 1}", "meta": {"try": k % 3}})
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    anchors = Anchors(indexes={1200: "lost"},
                      times=[TimeAnchor(int(2.5e9), "stale", 6)])
    of_records = summarize(iter_records(path), anchors)
    of_ops = summarize(read_jsonl(path), anchors)
    assert len(of_ops.windows) == 2 and of_ops.faults and len(of_ops.bands) == 3
    for name in ("ops", "duration", "outcomes", "untimed", "bands", "faults",
                 "faults_total", "windows", "windows_dropped"):
        assert getattr(of_records, name) == getattr(of_ops, name), name
    assert vars(of_records.timeline) == vars(of_ops.timeline)
