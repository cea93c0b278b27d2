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
