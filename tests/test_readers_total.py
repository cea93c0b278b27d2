"""Readers are total (issue 7): every history reader turns any input into a history or
a one-line ``HistoryError`` naming the file and line; never another exception, never
a hang, never an unbounded read. And the EDN fast path decides exactly what the
reference (edn_format) decides (issue 11).

Inputs are generated (hypothesis) for each reader: byte soup, JSON and EDN built from
hostile values (lists where scalars belong, integers past 4,300 digits, nesting past
the recursion limit), Jepsen log lines and Porcupine lines.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import edn_format
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from checkers.calls import Budget
from harness import edn_fast, edn_values
from harness.edn_values import plain
from harness.formats import FORMATS, read_history
from harness.history import HistoryError, Op, iter_records, parse_op, read_jsonl
from harness.reading import BudgetExceeded

CORPUS = Path(os.environ.get("SPLITBRAIN_CORPUS", "")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus")
LINE_ERROR = re.compile(r"^\S.*?:\d+: \S")
SETTINGS = settings(max_examples=300, deadline=3000,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def read_or_error(tmp_path: Path, data: bytes, fmt: str) -> list[Op] | str:
    path = tmp_path / "h"
    path.write_bytes(data)
    began = time.monotonic()
    try:
        ops = read_history(path, fmt)
    except HistoryError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        assert LINE_ERROR.match(msg), f"no line number: {msg}"
        return msg
    finally:
        assert time.monotonic() - began < 10, "a small input took more than 10 s"
    assert all(isinstance(op, Op) for op in ops)
    for op in ops:   # what later stages rely on
        assert op.type in ("invoke", "ok", "fail", "info")
        assert isinstance(op.f, str)
        assert type(op.process) is int or isinstance(op.process, str)
        assert type(op.index) is int and type(op.time) is int
        json.dumps(op.to_dict(), default=str)   # no recursion error downstream
    return ops


# ------------------------------------------------------------- strategies

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**40),
    st.floats(allow_nan=False), st.text(max_size=8), st.sampled_from(["add", "read", "ok"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)
FIELDS = ["type", "f", "process", "value", "time", "index", "error", "node"]


@st.composite
def json_ops(draw: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"type": draw(st.sampled_from(["invoke", "ok", "fail", "info"])),
                          "f": draw(st.sampled_from(["add", "read"])),
                          "process": draw(st.integers(0, 5)), "value": 1}
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        op[key] = draw(json_values)
    for key in draw(st.lists(st.sampled_from(list(op)), max_size=1)):
        del op[key]
    return op


def deep(n: int, open_: str = "[", close: str = "]") -> str:
    return open_ * n + close * n


HOSTILE_TOKENS = ["9" * 5000, "1/0", "1/2", "-0", "007", "1.", "1e400", "##NaN", "\\a",
                  "#inst \"2020-01-01\"", "#_ 1", "#foo 1", "nil", "true", ":a/b", "a/b",
                  "\"\\u00e9\"", "\"\\q\"", "\"", "[", "]", "{", "}", "#{1 1}", "#{[1] 2}",
                  deep(900), deep(900, "{:a ", "}"), "{:a}", "(", ")", ";x\n", ",", "\x00",
                  "{:type :invoke :f :add :process [1] :value 1}",
                  "{:type [1] :f :add :process 1}", "{:type :ok :f [1] :process 1}",
                  "{:type :ok :f :read :process 1 :index \"3\"}",
                  "{:type :ok :f :read :process 1 :time 1.5}",
                  "{:type :invoke, :f :read, :process 0, :value nil}"]
edn_soup = st.lists(st.sampled_from(HOSTILE_TOKENS), max_size=8).map(" ".join)


@st.composite
def edn_texts(draw: Any) -> str:
    """EDN as Jepsen writes it, with hostile tokens spliced in."""
    maps = []
    for _ in range(draw(st.integers(0, 4))):
        parts = [":type", draw(st.sampled_from([":invoke", ":ok", ":info", ":fail"])),
                 ":f", draw(st.sampled_from([":read", ":write", ":cas"])),
                 ":process", str(draw(st.integers(0, 3)))]
        parts += [":value", draw(edn_soup | st.sampled_from(["nil", "1", "[1 2]"]))]
        maps.append("{" + " ".join(parts) + "}")
    text = "[" + "\n".join(maps) + "]"
    if draw(st.booleans()):
        text += draw(edn_soup)
    return text


# --------------------------------------------------------------- totality

@SETTINGS
@given(data=st.binary(max_size=300), fmt=st.sampled_from([*FORMATS, "auto"]))
def test_any_bytes_read_or_fail_in_one_line(tmp_path, data, fmt):
    read_or_error(tmp_path, data, fmt)


@SETTINGS
@given(ops=st.lists(json_ops(), max_size=5), junk=st.sampled_from(
    ["", "[]", deep(900), "9" * 5000, "{\"type\":\"ok\"", "1e400", "NaN", "\"\\ud800\""]))
def test_jsonl_of_hostile_values_reads_or_fails_in_one_line(tmp_path, ops, junk):
    text = "".join(json.dumps(op) + "\n" for op in ops) + junk
    read_or_error(tmp_path, text.encode(), "jsonl")


@SETTINGS
@given(ops=st.lists(json_ops(), max_size=8), blank=st.integers(0, 8))
def test_jsonl_read_in_batches_equals_line_by_line(tmp_path, ops, blank):
    """Lines are decoded in batches straight into records; a batch with any line the
    records do not fit is read line by line. Either way the ops are the same."""
    lines = [json.dumps(op) for op in ops]
    lines.insert(min(blank, len(lines)), "")
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n")
    try:
        expected = [parse_op(json.loads(line), "x") for line in lines if line]
        for n, op in enumerate(expected):
            if op.index < 0:
                op.index = [i for i, line in enumerate(lines) if line][n]
    except (HistoryError, ValueError, RecursionError):
        expected = None
    try:
        got = read_jsonl(path)
    except HistoryError:
        got = None
    if expected is not None:
        assert got == expected


@SETTINGS
@given(text=edn_texts(), fmt=st.sampled_from(["edn", "auto"]))
def test_edn_of_hostile_values_reads_or_fails_in_one_line(tmp_path, text, fmt):
    read_or_error(tmp_path, text.encode(), fmt)


@SETTINGS
@given(lines=st.lists(st.tuples(
    st.sampled_from(["3", ":nemesis", "9" * 30, "x"]),
    st.sampled_from([":invoke", ":ok", ":fail", ":info"]),
    st.sampled_from([":cas", ":read", ":write"]),
    edn_soup), min_size=1, max_size=4))
def test_jepsen_log_lines_read_or_fail_in_one_line(tmp_path, lines):
    text = "".join(f"INFO  jepsen.util - {p}\t{t}\t{f}\t{v}\n" for p, t, f, v in lines)
    read_or_error(tmp_path, text.encode(), "jepsen-log")


@SETTINGS
@given(lines=st.lists(st.tuples(st.sampled_from(["0", "1", "9" * 30, "[1]"]),
                                 st.sampled_from([":get", ":put", ":append", ":x"]),
                                 st.sampled_from(['"k"', "nil", "1/0", "[1]"]),
                                 st.sampled_from(['"v"', "nil", deep(900), '"\\q"'])),
                       min_size=1, max_size=4))
def test_porcupine_lines_read_or_fail_in_one_line(tmp_path, lines):
    text = "".join(f"{{:process {p}, :type :invoke, :f {f}, :key {k}, :value {v}}}\n"
                   for p, f, k, v in lines)
    read_or_error(tmp_path, text.encode(), "porcupine")


# ------------------------------------------------- the EDN fast path agrees

edn_atoms = st.one_of(
    st.just("nil"), st.just("true"), st.just("false"), st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r":[a-z][a-z0-9.*+!?-]{0,5}(/[a-z]{1,3})?", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9.*+!?-]{0,5}", fullmatch=True),
    st.text(max_size=6).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.sampled_from(HOSTILE_TOKENS[:20]))
edn_forms = st.recursive(edn_atoms, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda xs: "[" + " ".join(xs) + "]"),
    st.lists(inner, max_size=4).map(lambda xs: "(" + ", ".join(xs) + ")"),
    st.lists(inner, max_size=4).map(lambda xs: "#{" + " ".join(xs) + "}"),
    st.lists(st.tuples(inner, inner), max_size=3).map(
        lambda kvs: "{" + ", ".join(f"{k} {v}" for k, v in kvs) + "}"),
    inner.map(lambda x: f"#jepsen.history.Op {x}")), max_leaves=10)


def reference(text: str) -> list[Any] | None:
    try:
        return [plain(f) for f in edn_format.loads_all(text)]
    except Exception:   # noqa: BLE001 - any refusal: the fast path must refuse too
        return None


@settings(max_examples=400, deadline=None)
@given(forms=st.lists(edn_forms, max_size=3))
def test_fast_edn_agrees_with_edn_format(forms):
    text = "\n".join(forms)
    try:
        fast = edn_fast.loads_all(text)
    except edn_fast.Unsupported:
        return   # the reader uses the reference then
    assert fast == reference(text), text


def reference_ops(text: str) -> list[Any] | None:
    """The op-level forms as the reader has always taken them from edn_format."""
    try:
        raw = edn_format.loads_all(text)
        if len(raw) == 1 and isinstance(raw[0], Sequence) and not isinstance(raw[0], str):
            raw = list(raw[0])
        return [plain(f) for f in raw]
    except Exception:   # noqa: BLE001 - any refusal: the reader must refuse too
        return None


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # set once, kept
@given(forms=st.lists(edn_forms, max_size=6), wrap=st.booleans())
@example(forms=["nil", "nil", "[[]"], wrap=True)   # the closing bracket is missing
def test_edn_read_in_parts_or_fast_gives_the_references_ops(monkeypatch, forms, wrap):
    """Long texts the fast path refuses are read by edn_format in parts (so the budget
    is consulted between them); parts of two elements must change nothing."""
    monkeypatch.setattr(edn_values, "REFERENCE_PART", 2)
    text = "\n".join(forms)
    text = f"[{text}]" if wrap else text
    expected = reference_ops(text)
    for load in (edn_values._load_reference, edn_values.load_edn):
        try:
            got = load(text, Path("h.edn"), None)
        except HistoryError:
            got = None
        assert repr(got) == repr(expected), (load.__name__, text)


@pytest.mark.skipif(not (CORPUS / "knossos").is_dir(), reason="no ../shared/corpus")
def test_fast_edn_agrees_with_edn_format_on_the_whole_knossos_corpus():
    paths = sorted((CORPUS / "knossos").glob("*/*/*.edn"))
    assert len(paths) > 100
    for path in paths:
        text = path.read_text()
        assert edn_fast.loads_all(text) == reference(text), path


# ------------------------------------------------------------ special files

@pytest.mark.timeout(30)
@pytest.mark.parametrize("fmt", ["auto", "jsonl", "edn"])
def test_special_files_are_refused_without_reading(tmp_path, fmt):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)   # nobody writes: opening it for reading would block forever
    for path, what in [(fifo, "FIFO"), (Path("/dev/zero"), "device"),
                       (tmp_path, "directory")]:
        with pytest.raises(HistoryError, match=what):
            read_history(path, fmt)
    link = tmp_path / "zero.jsonl"
    link.symlink_to("/dev/zero")
    with pytest.raises(HistoryError, match="device"):
        read_jsonl(link)


@pytest.mark.timeout(60)
def test_check_of_dev_zero_and_a_fifo_exits_254_at_once(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    for target in ("/dev/zero", str(fifo)):
        r = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                            "check", target, "--format", "jsonl"], capture_output=True,
                           text=True, timeout=30, check=False)
        assert r.returncode == 254, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_line_without_end_is_bounded(tmp_path, monkeypatch):
    from harness import jsonl
    monkeypatch.setattr(jsonl, "MAX_LINE", 1000)
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"{" + b" " * (3 << 20))
    with pytest.raises(HistoryError, match=r":1: line longer than"):
        read_jsonl(path)


# ---------------------------------------------------------- budgets

def test_reading_stops_when_the_budget_runs_out(tmp_path):
    path = tmp_path / "h.jsonl"
    line = json.dumps({"type": "invoke", "f": "read", "process": 0, "value": None})
    path.write_text((line + "\n" + line.replace("invoke", "ok") + "\n") * 20000)
    spent = Budget(time.monotonic() - 1, 1 << 20)
    with pytest.raises(BudgetExceeded, match="time limit"):
        list(iter_records(path, limits=spent))
    edn = tmp_path / "h.edn"
    edn.write_text("[" + "{:type :invoke, :f :read, :process 0}\n" * 20000 + "]")
    with pytest.raises(BudgetExceeded):
        read_history(edn, "edn", limits=spent)
