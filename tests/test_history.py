import json

import pytest

from harness.history import HistoryError, HistoryWriter, Op, pairs, read_jsonl


def _write(path, ops):
    w = HistoryWriter(path)
    for op in ops:
        w.append(op)
    w.close()


def test_round_trip_keeps_fields_and_assigns_indices(tmp_path):
    path = tmp_path / "history.jsonl"
    inv = Op("invoke", "add", 1, 0, extra={"node": "n1"})
    _write(path, [inv, inv.ok(1), Op("invoke", "start-partition", None, "nemesis", time=7)])
    ops = read_jsonl(path)
    assert [o.index for o in ops] == [0, 1, 2]
    assert ops[0].extra == {"node": "n1"} and 0 <= ops[0].time <= ops[1].time
    assert ops[1].type == "ok" and ops[1].process == 0 and ops[1].f == "add"
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first)[:6] == ["index", "time", "type", "process", "f", "value"]


def test_torn_last_line_is_an_error_naming_the_line_unless_tolerated(tmp_path):
    path = tmp_path / "history.jsonl"
    _write(path, [Op("invoke", "read", None, 0)])
    with open(path, "a") as f:
        f.write('{"index": 1, "type": "ok", "pro')
    with pytest.raises(HistoryError, match=r"history.jsonl:2: truncated"):
        read_jsonl(path)
    assert len(read_jsonl(path, tolerate_torn_tail=True)) == 1


def test_malformed_middle_line_is_never_tolerated(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"type":"invoke","f":"read","process":0}\nnot json\n')
    with pytest.raises(HistoryError, match=r"h.jsonl:2: malformed"):
        read_jsonl(path, tolerate_torn_tail=True)
    path.write_text('{"type":"bogus","f":"read","process":0}\n')
    with pytest.raises(HistoryError, match="unknown type"):
        read_jsonl(path)


def test_pairs_matches_completions_and_rejects_double_invocation():
    a, b = Op("invoke", "add", 1, 0), Op("invoke", "read", None, 1)
    ps = pairs([a, b, b.ok(3), Op("invoke", "kill", "n1", "nemesis")])
    assert len(ps) == 2 and ps[0].completion is None and ps[1].completion.value == 3
    assert ps[0].type == "info" and ps[0].end == float("inf")
    with pytest.raises(HistoryError, match="invoked again"):
        pairs([a, Op("invoke", "add", 2, 0)])
    with pytest.raises(HistoryError, match="no invocation"):
        pairs([a.ok(1), a.ok(1)][1:])


def test_an_op_without_optional_fields_holds_no_dict_until_one_is_written():
    """Ops read from a file mostly have no optional fields; ``extra`` still reads as a
    dict and takes writes, which attach it to the op."""
    op = Op("ok", "read", 3, 0)
    assert op.extra == {} and op.error is None and op._extra is None
    op.extra["error"] = "timeout"
    assert op.extra == {"error": "timeout"} and op.error == "timeout"
    other = Op("ok", "read", 3, 0)
    other.extra.update(node="n1")
    assert other.to_dict()["node"] == "n1"
    assert Op("ok", "read", 3, 0) == Op("ok", "read", 3, 0, extra={})
    assert Op("ok", "read", 3, 0) != Op("ok", "read", 4, 0)


def test_ops_read_share_their_names_and_keep_optional_fields(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"type":"invoke","f":"add","process":0,"value":1}\n'
                    '{"type":"info","f":"add","process":0,"error":"timeout","node":"n2"}\n'
                    '{"type":"invoke","f":"add","process":1,"value":1.0}\n')
    a, b, c = read_jsonl(path)
    assert a.f is b.f is c.f and a.type is c.type
    assert b.extra == {"error": "timeout", "node": "n2"} and a.extra == {}
    assert c.value == 1 and type(c.value) is int   # JSON has one number type
    assert [op.index for op in (a, b, c)] == [0, 1, 2]
