"""Histories written as other people write them (issue 11's acceptance): the batch
reader's fast path (records that learn a file's own fields, ``decode_lines``, the
one-object-a-line and nesting guards) must read exactly what the line-by-line reader
reads, op for op and error for error; and ``check``'s streaming path must reach the
full path's verdict and explanation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import check_command, jsonl
from harness.history import HistoryError, Op, iter_records, read_jsonl
from harness.reading import MAX_DEPTH, plain_json

SETTINGS = settings(max_examples=250, deadline=5000,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6),
                    st.integers(min_value=2**63, max_value=2**70), st.floats(allow_nan=False,
                    allow_infinity=False), st.sampled_from([1.0, 2.0, -0.0, 3.5]),
                    st.text(max_size=5), st.sampled_from(["}\n{", "[[[", "{\"a\":", "\\"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=6)
RAW = ["1e999", "-1e400", "9" * 5000, "NaN", "\"\\ud800\"", "\"\\q\"", "tru", "[" * 70 +
       "]" * 70, "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "[" * MAX_DEPTH + "]" * MAX_DEPTH,
       "{\"a\":" * 66 + "1" + "}" * 66, "\"\xff\"", "1.5", "2.0", "null", "\"x\""]


def nested(depth: int) -> Any:
    v: Any = 1
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


@st.composite
def lines(draw: Any) -> list[str]:
    """Lines of a history.jsonl: ops with keys in any order, optional fields of any
    name, times and indices as ints or floats, separators with or without spaces, and
    now and then a raw token, a blank line, two ops on a line or one op on two."""
    out: list[str] = []
    hostile = draw(st.booleans())   # else every line is one an op may be
    extra_names = draw(st.lists(st.sampled_from(
        ["node", "error", "final", "latency", "meta", "type ", "x\"y", "", "f2"]),
        max_size=3, unique=True))
    types = ["invoke", "ok", "fail", "info"] + (["oops"] if hostile else [])
    processes = st.integers(0, 4) | st.sampled_from(
        ["nemesis", "worker-1", *((True, 1.0) if hostile else ())])
    times: st.SearchStrategy[Any] = st.integers(0, 10**12) | st.integers(0, 10**6).map(float)
    if hostile:
        times = times | st.floats(0, 1e12, allow_nan=False) | st.none()
    for i in range(draw(st.integers(0, 12))):
        op: dict[str, Any] = {"type": draw(st.sampled_from(types)),
                              "f": draw(st.sampled_from(["add", "read", "start-partition"])),
                              "process": draw(processes)}
        if draw(st.booleans()):
            deep = [nested(MAX_DEPTH - 1)] + ([nested(MAX_DEPTH + 2)] if hostile else [])
            op["value"] = draw(values | st.sampled_from(deep))
        indices = [i, float(i), -1] + (["3"] if hostile else [])
        for key, strategy in (("time", times), ("index", st.sampled_from(indices))):
            if draw(st.integers(0, 3)):
                op[key] = draw(strategy)
        for name in extra_names:
            if draw(st.booleans()):
                op[name] = draw(values)
        keys = draw(st.permutations(list(op)))
        text = json.dumps({k: op[k] for k in keys},
                          separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
        if hostile and draw(st.integers(0, 9)) == 0:   # a hostile token in place of a value
            text = text[:-1] + f', "raw": {draw(st.sampled_from(RAW))}}}'
        out.append(text)
    for _ in range(draw(st.integers(0, 2)) if hostile else 0):   # splice lines
        if out:
            k = draw(st.integers(0, len(out) - 1))
            kind = draw(st.sampled_from(["blank", "join", "split", "spaces", "shift"]))
            if kind == "blank":
                out.insert(k, "")
            elif kind == "join" and k + 1 < len(out):
                out[k:k + 2] = [out[k] + draw(st.sampled_from([" ", "", ","])) + out[k + 1]]
            elif kind == "split" and ", " in out[k]:
                a, b = out[k].split(", ", 1)
                out[k:k + 1] = [a + ",", b]
            elif kind == "shift" and k + 1 < len(out) and ", " in out[k + 1]:
                # two ops on one line and one op on two: as many objects as lines
                a, b = out[k + 1].split(", ", 1)
                out[k:k + 2] = [out[k] + " " + a + ",", b]
            elif kind == "spaces":
                out[k] = " " + out[k] + " "
    return out


def reference(path: Path, data: bytes) -> list[Op] | str:
    """What the line-by-line reader (every line decoded alone) makes of the file."""
    body, _, last = data.rpartition(b"\n")
    try:
        ops = list(jsonl._line_by_line(path, body, 0, {}, eof=False,
                                       tolerate_torn_tail=False)) if body or _ else []
        if last:
            ops += jsonl._line_by_line(path, last, body.count(b"\n") + 1 if _ else 0, {},
                                       eof=True, tolerate_torn_tail=False)
        return ops
    except HistoryError as e:
        return str(e)


def exactly(ops: list[Op]) -> list[str]:
    """Ops as JSON text, so that 1.0 and 1 differ (Python has 1.0 == 1); an op's
    optional fields in any order."""
    return [json.dumps(op.to_dict(), sort_keys=True) for op in ops]


def fast(path: Path, plain: bool) -> list[Any] | str:
    try:
        return list(iter_records(path, plain=plain))
    except HistoryError as e:
        return str(e)


@SETTINGS
@given(text=lines(), batch=st.sampled_from([1 << 20, 64, 300]))
def test_batches_read_exactly_what_lines_read(tmp_path, monkeypatch, text, batch):
    monkeypatch.setattr(jsonl, "BATCH", batch)
    path = tmp_path / "h.jsonl"
    data = ("\n".join(text) + "\n").encode("utf-8", "surrogatepass")
    path.write_bytes(data)
    expected = reference(path, data)
    got = fast(path, plain=True)
    raw = fast(path, plain=False)
    if isinstance(expected, str) or isinstance(got, str) or isinstance(raw, str):
        assert got == expected
        assert raw == expected
        return
    as_ops = [r if isinstance(r, Op) else Op(r.type, r.f, r.value, r.process, r.time,
                                             r.index, r.optional_fields()) for r in got]
    assert exactly(as_ops) == exactly(expected)
    assert exactly(read_jsonl(path)) == exactly(expected)
    # Not plain (check's proof pass): the same ops, numbers left as decoded.
    assert [(r.type, r.f, r.process, plain_json(r.value)) for r in raw] == \
        [(op.type, op.f, op.process, op.value) for op in expected]


# ------------------------------------------------- check: streaming = full path

def counter_history(rng: random.Random, n: int, *, lose: bool, shape: str) -> list[str]:
    """A unit counter driven by 6 clients, as ``bench/foreign_histories.py`` writes it,
    with a nemesis; ``lose`` drops increments at each partition's end."""
    count = 0
    out: list[dict[str, Any]] = []
    flight: list[dict[str, Any] | None] = [None] * 6
    names = list(range(6))
    started = t = 0
    while started < n or any(flight):
        t += rng.randrange(1, 1000)
        if rng.random() < 0.01:
            for kind in ("invoke", "info"):
                out.append({"type": kind, "f": "kill", "value": ["n1"], "process": "nemesis",
                            "time": t})
            if lose:
                count = max(count - rng.randrange(1, 3), 0)
        c = rng.randrange(6)
        op = flight[c]
        if op is None:
            if started < n:
                started += 1
                f = rng.choice(["add", "add", "read"])
                op = flight[c] = {"f": f, "process": names[c], "done": False, "seen": None}
                out.append({"type": "invoke", "f": f, "value": 1 if f == "add" else None,
                            "process": names[c], "time": t})
            continue
        if not op["done"] and rng.random() < 0.5:
            op["done"] = True
            count += op["f"] == "add"
            op["seen"] = count
            continue
        r = rng.random()
        typ = "fail" if r < 0.05 and not op["done"] else "info" if r < 0.1 else \
            "ok" if op["done"] else None
        if typ is None:
            continue
        value = op["seen"] if op["f"] == "read" and typ == "ok" else \
            1 if op["f"] == "add" else None
        out.append({"type": typ, "f": op["f"], "value": value, "process": op["process"],
                    "time": t, **({"error": "timeout"} if typ == "info" else {})})
        flight[c] = None
        if typ == "info":
            names[c] += 6
    lines_ = []
    for i, op in enumerate(out):
        d = dict(op)
        if shape == "named":
            d["process"] = d["process"] if d["process"] == "nemesis" else f"w{d['process']}"
            d["time"] = float(d["time"])
            d["latency"] = 0.5
            d = dict(sorted(d.items(), reverse=True))
        elif shape == "indexed":
            d["index"] = i
        lines_.append(json.dumps(d))
    return lines_


@pytest.mark.parametrize("shape", ["plain", "named", "indexed"])
@pytest.mark.parametrize("seed", range(12))
def test_streamed_check_reaches_the_full_paths_result(tmp_path, monkeypatch, capsys,
                                                      shape, seed):
    rng = random.Random(seed)
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(counter_history(rng, 300, lose=seed % 2 == 1,
                                              shape=shape)) + "\n")
    monkeypatch.setattr(check_command, "STREAM_EXPLAIN_OPS", 0)
    streamed = check_command.check_file(path)
    monkeypatch.setattr(check_command, "_proved_streaming", lambda *a: None)
    full = check_command.check_file(path)
    capsys.readouterr()
    assert streamed["valid"] == full["valid"]
    assert streamed.get("explanation") == full.get("explanation")
    if full["valid"] is False:
        cx, cx_full = streamed["counterexample"], full["counterexample"]
        assert cx["op"] == cx_full["op"] and cx["concurrent"] == cx_full["concurrent"]


@pytest.mark.parametrize("text", [
    # two ops on one line, one op on two: as many objects as lines
    '{"type": "invoke", "f": "add", "process": 0} {"type": "ok",\n"f": "add", "process": 0}\n',
    # a line break inside a list of objects, with `}` before and `{` after it
    '{"type": "invoke", "f": "add", "process": 0, "value": [{}\n, {}]}\n'
    '{"type": "ok", "f": "add", "process": 0}\n',
    '{"type": "invoke", "f": "add", "process": 0}{"type": "ok", "f": "add", "value": [[1\n'
    '2]], "process": 0}\n',
    # numbers too large for a float, in a value and in an optional field already known
    '{"type": "invoke", "f": "add", "process": 0, "value": [1, 1e999]}\n',
    '{"type": "invoke", "f": "add", "process": 0, "raw": 1}\n'
    '{"type": "ok", "f": "add", "process": 0, "raw": {"x": -1e400}}\n',
    '{"type": "invoke", "f": "add", "process": 0, "raw": 1}\n'
    '{"type": "ok", "f": "add", "process": 0, "raw": 1' + "0" * 400 + '.0}\n',
    # an optional field msgspec cannot name, and one nested past MAX_DEPTH
    '{"type": "invoke", "f": "add", "process": 0, "x\\"y": 1}\n',
    '{"type": "invoke", "f": "add", "process": 0, "deep": ' + "[" * 65 + "]" * 65 + '}\n',
])
def test_what_lines_do_not_read_the_batches_do_not_either(tmp_path, text):
    path = tmp_path / "h.jsonl"
    data = text.encode()
    path.write_bytes(data)
    expected = reference(path, data)
    assert fast(path, plain=True) == expected
    assert fast(path, plain=False) == expected
