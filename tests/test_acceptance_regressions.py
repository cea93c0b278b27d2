"""Regressions found by the acceptance pass (issues 6-11, tried as a new user would)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.history import HistoryError, iter_records, read_jsonl


@pytest.mark.parametrize("depth", [100, 5000])
def test_a_value_nested_past_msgspecs_own_limit_is_a_line_error(tmp_path: Path,
                                                                depth: int) -> None:
    """A JSONL op whose value nests past msgspec's recursion limit (about 1,000) made
    the batch decoder raise RecursionError: exit 255 with a traceback from `check`."""
    path = tmp_path / "history.jsonl"
    path.write_text('{"type":"invoke","f":"add","process":1,"value":0}\n'
                    '{"type":"invoke","f":"write","process":2,"value":'
                    + "[" * depth + "]" * depth + "}\n")
    for read in (lambda: list(iter_records(path)), lambda: read_jsonl(path)):
        with pytest.raises(HistoryError, match=r"history\.jsonl:2: values nested"):
            read()


@pytest.mark.parametrize("value, said", [(float("nan"), "nan"), (float("inf"), "inf"),
                                         (10 ** 5000, "an integer of 16610 bits"),
                                         ([float("nan")], "a list that JSON cannot hold")],
                         ids=["nan", "inf", "huge-int", "list-with-nan"])
def test_a_value_json_cannot_hold_is_recorded_as_words(tmp_path: Path, value: object,
                                                       said: str) -> None:
    """A user client whose read returned NaN had `NaN` written into history.jsonl: the
    run could not read its own history back and ended unknown, without a report. The
    value is recorded as words instead, so the checkers see an ill-typed read."""
    from harness.history import HistoryWriter
    from harness.ops import Op

    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path)
    writer.append(Op("invoke", "read", None, process=0))
    writer.append(Op("ok", "read", value, process=0))
    writer.close()
    ops = read_jsonl(path)
    assert [op.value for op in ops] == [None, said]


def test_the_report_says_which_default_fault_was_left_out(tmp_path: Path) -> None:
    """Issue 6: a default fault that cannot act on the run is dropped "and says so in
    the summary and the report"; results.json had the note, report.html did not."""
    import json

    from harness.report import render_report

    note = "default fault partition left out: system postgres runs on n1 alone"
    (tmp_path / "test.json").write_text(json.dumps({"name": "pg", "system": "postgres"}))
    (tmp_path / "results.json").write_text(json.dumps(
        {"valid": True, "anomalies": [], "notes": [note, 5, "<b>escaped</b>"]}))
    (tmp_path / "history.jsonl").write_text(
        '{"type":"invoke","f":"add","process":0,"value":1,"time":1,"index":0}\n'
        '{"type":"ok","f":"add","process":0,"value":1,"time":2,"index":1}\n')
    html = render_report(tmp_path)
    assert f"Note: {note}" in html
    assert "&lt;b&gt;escaped&lt;/b&gt;" in html and "<b>escaped" not in html


def test_a_set_read_that_returned_a_number_is_a_usage_error(tmp_path: Path) -> None:
    """`check --model set` on a history whose read returned a number crashed in the
    search (TypeError, exit 255); the fit check tried invocations only."""
    from checkers.models import make_model
    from harness.check_command import check_fit
    from harness.errors import UsageError

    path = tmp_path / "history.jsonl"
    path.write_text('{"type":"invoke","f":"read","process":0,"value":null}\n'
                    '{"type":"ok","f":"read","process":0,"value":5}\n')
    with pytest.raises(UsageError, match=r"set model cannot take this history: op 1 "
                                         r"\(read returned 5\)"):
        check_fit(make_model("set", None), read_jsonl(path))


def test_report_reads_no_file_of_a_run_through_a_symbolic_link(tmp_path: Path) -> None:
    """`report` read results.json through a link to /etc/shadow (it only said "not valid
    JSON", but a run's files are its own: no link may lead out of the run)."""
    import json

    from harness.errors import UsageError
    from harness.report import render_report

    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"valid": True, "anomalies": []}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "test.json").write_text(json.dumps({"name": "t", "system": "counterd"}))
    (run / "results.json").symlink_to(secret)
    (run / "history.jsonl").write_text("")
    with pytest.raises(UsageError, match="results.json: a symbolic link"):
        render_report(run)
    (run / "results.json").unlink()
    (run / "results.json").write_text(secret.read_text())
    (run / "history.jsonl").unlink()
    (run / "history.jsonl").symlink_to(secret)
    with pytest.raises(UsageError, match="history.jsonl: a symbolic link"):
        render_report(run)


@pytest.mark.parametrize("initial", ["NaN", "Infinity", "[1, -Infinity]"])
def test_an_initial_state_that_is_no_number_is_refused(initial: str) -> None:
    from harness.check_command import parse_initial
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="not a number a history can hold"):
        parse_initial(initial)


@pytest.mark.parametrize("flags", [{}, {"nodes": "3"}])
def test_the_ssh_backend_without_hosts_is_a_usage_error(flags: dict[str, str]) -> None:
    """It tried hosts n1..n5 and ended "cannot reach host n1" (exit 2)."""
    from harness.errors import UsageError
    from harness.spec_loader import build_spec

    with pytest.raises(UsageError, match="the ssh backend needs its hosts"):
        build_spec(None, {}, {"backend": "ssh", **flags})


@pytest.mark.parametrize(("nemesis", "message"), [
    ("", 'names no fault: say "none"'),
    ("none,kill", '"none" means no faults: it goes alone'),
])
def test_a_nemesis_list_that_contradicts_itself_is_refused(nemesis: str, message: str) -> None:
    """`--nemesis ''` quietly ran without faults, and `none,kill` was accepted."""
    from harness.errors import UsageError
    from harness.spec_loader import build_spec

    with pytest.raises(UsageError, match=message):
        build_spec(None, {}, {"nemesis": nemesis})


def test_a_fault_named_twice_is_one_fault() -> None:
    from harness.spec_loader import build_spec

    assert build_spec(None, {}, {"nemesis": "kill,partition,kill"}).nemesis == [
        "kill", "partition"]
