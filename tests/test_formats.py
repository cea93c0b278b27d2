"""Importers for Jepsen EDN, Jepsen logs, Porcupine kv logs and our own JSONL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import edn_format
import pytest
from edn_format import Keyword
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.formats import detect_format, read_history
from harness.history import HistoryError, Op

CORPUS = Path(os.environ.get("SPLITBRAIN_CORPUS", "")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus")


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def brief(ops: list[Op]) -> list[tuple]:
    return [(o.process, o.type, o.f, o.value) for o in ops]


# ------------------------------------------------------------------ EDN

def test_edn_vector_of_maps(tmp_path: Path) -> None:
    p = write(tmp_path, "h.edn", """; a comment line
[{:process 0, :type :invoke, :f :cas, :value [1 2], :time 5}
 {:process 0, :type :ok, :f :cas, :value [1 2], :time 9}
 {:process :nemesis, :type :info, :f :start, :value {:n1 #{:n2 :n3}}}
 {:process 1, :type :invoke, :f :read, :value nil}
 {:process 1, :type :fail, :f :read, :value nil, :error [:timeout "slow"]}]
""")
    ops = read_history(p, "edn")
    assert brief(ops) == [
        (0, "invoke", "cas", [1, 2]),
        (0, "ok", "cas", [1, 2]),
        ("nemesis", "info", "start", {"n1": ["n2", "n3"]}),
        (1, "invoke", "read", None),
        (1, "fail", "read", None),
    ]
    assert [o.index for o in ops] == [0, 1, 2, 3, 4]
    assert [o.time for o in ops[:2]] == [5, 9]
    assert ops[2].time == -1
    assert ops[4].error == ["timeout", "slow"]


def test_edn_list_and_unwrapped_maps_and_records(tmp_path: Path) -> None:
    as_list = write(tmp_path, "l.edn", "({:process 0 :type :invoke :f :write :value 3}\n"
                                       " {:process 0 :type :ok :f :write :value 3})")
    per_line = write(tmp_path, "m.edn", "{:index 7, :process 0 :type :invoke :f :write :value 3}\n"
                                        "{:index 8, :process 0 :type :ok :f :write :value 3}\n")
    records = write(tmp_path, "r.edn",
                    "#jepsen.history.Op{:process 0 :type :invoke :f :write :value 3}\n"
                    "#jepsen.history.Op{:process 0 :type :ok :f :write :value 3}\n")
    expected = [(0, "invoke", "write", 3), (0, "ok", "write", 3)]
    assert brief(read_history(as_list)) == expected
    assert brief(read_history(per_line)) == expected
    assert [o.index for o in read_history(per_line)] == [7, 8]
    assert brief(read_history(records)) == expected


def test_edn_keeps_extra_fields_with_plain_values(tmp_path: Path) -> None:
    p = write(tmp_path, "h.edn", '[{:process 0 :type :ok :f :txn :value [[:read :x 1]] '
                                 ':node "n1" :error :conn-lost}]')
    (op,) = read_history(p)
    assert op.value == [["read", "x", 1]]
    assert op.extra == {"node": "n1", "error": "conn-lost"}


# --------------------------------------------------------------- Jepsen log

def test_jepsen_log_old_and_new_styles(tmp_path: Path) -> None:
    p = write(tmp_path, "jepsen.log", "\n".join([
        "INFO  jepsen.core - Running test",
        "INFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]",
        "INFO  jepsen.util - 3   :ok     :cas    [3 0]",      # spaces, as some logs have
        "INFO [2018-02-02 11:49:05,263] jepsen worker 0 - jepsen.util 4\t:invoke\t:read\tnil",
        ("INFO [2018-02-02 11:49:05,270] jepsen worker 0 - jepsen.util 4\t:fail\t:read\tnil"
         "\t:timed-out"),
        "INFO  jepsen.util - :nemesis\t:info\t:start\t[:isolated {\"n1\" #{\"n2\"}}]",
        "WARN  some other line with jepsen in it",
        "",
    ]))
    ops = read_history(p, "jepsen-log")
    assert brief(ops) == [
        (3, "invoke", "cas", [3, 0]),
        (3, "ok", "cas", [3, 0]),
        (4, "invoke", "read", None),
        (4, "fail", "read", None),
        ("nemesis", "info", "start", ["isolated", {"n1": ["n2"]}]),
    ]
    assert ops[3].error == "timed-out"
    assert [o.index for o in ops] == list(range(5))


# --------------------------------------------------------------- Porcupine

def test_porcupine_kv_maps_to_kv_model_ops(tmp_path: Path) -> None:
    p = write(tmp_path, "c01.txt", "\n".join([
        '{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}',
        '{:process 0, :type :ok, :f :append, :key "4", :value "x 0 1 y"}',
        '{:process 1, :type :invoke, :f :get, :key "4", :value nil}',
        '{:process 1, :type :ok, :f :get, :key "4", :value "x 0 1 y"}',
        '{:process 2, :type :invoke, :f :put, :key "5", :value "z"}',
        "",
    ]))
    assert brief(read_history(p, "porcupine")) == [
        (0, "invoke", "append", ["4", "x 0 1 y"]),
        (0, "ok", "append", ["4", "x 0 1 y"]),
        (1, "invoke", "read", ["4", None]),
        (1, "ok", "read", ["4", "x 0 1 y"]),
        (2, "invoke", "write", ["5", "z"]),
    ]


def test_porcupine_rejects_unknown_ops(tmp_path: Path) -> None:
    p = write(tmp_path, "k.txt", '{:process 0, :type :invoke, :f :get, :key "1", :value nil}\n'
                                 '{:process 0, :type :invoke, :f :cas, :key "1", :value 1}\n')
    with pytest.raises(HistoryError, match=r"k\.txt:2: .*'cas'"):
        read_history(p, "porcupine")


# ------------------------------------------------------------ auto-detection

@pytest.mark.parametrize("name, text, fmt", [
    ("h.txt", '{"index":0,"type":"invoke","f":"add","value":1,"process":0}\n', "jsonl"),
    ("h.log", "[{:process 0 :type :invoke :f :read :value nil}]", "edn"),
    ("h.jsonl", "; comment\n({:process 0 :type :invoke :f :read :value nil})", "edn"),
    ("h.edn", '{:process 0, :type :invoke, :f :get, :key "1", :value nil}\n', "porcupine"),
    ("h.edn", "{:process 0, :type :invoke, :f :read, :value nil}\n", "edn"),
    ("h.edn", "INFO  jepsen.core - hi\nINFO  jepsen.util - 0\t:invoke\t:read\tnil\n",
     "jepsen-log"),
    ("h.log", "[2018-02-02 11:49:05] INFO jepsen.util - 0\t:invoke\t:read\tnil\n",
     "jepsen-log"),
    ("h.edn", "[\n{:process 0 :type :invoke :f :read :value nil}]", "edn"),
])
def test_auto_detects_from_content_not_extension(tmp_path: Path, name: str, text: str,
                                                 fmt: str) -> None:
    p = write(tmp_path, name, text)
    assert detect_format(text, p) == fmt
    assert len(read_history(p)) >= 1


def test_auto_reads_our_own_jsonl(tmp_path: Path) -> None:
    lines = [{"index": 0, "time": 1, "type": "invoke", "process": 0, "f": "add", "value": 2},
             {"index": 1, "time": 2, "type": "ok", "process": 0, "f": "add", "value": 2,
              "node": "n1"}]
    p = write(tmp_path, "history.jsonl", "".join(json.dumps(d) + "\n" for d in lines))
    ops = read_history(p)
    assert brief(ops) == [(0, "invoke", "add", 2), (0, "ok", "add", 2)]
    assert ops[1].extra == {"node": "n1"}


# ------------------------------------------------------------------ errors

GOOD_EDN = ["[{:process 0, :type :invoke, :f :read, :value nil}",
            " {:process 0, :type :ok, :f :read, :value 3}",
            " {:process 1, :type :invoke, :f :write, :value 4}",
            " {:process 1, :type :ok, :f :write, :value 4}]"]


@pytest.mark.parametrize("lines, fmt, where, what", [
    (GOOD_EDN[:2] + [" {:process 1, :type :invoke, :f :wr"], "edn", 3, "never closed"),
    (GOOD_EDN[:3], "edn", 3, "never closed"),
    (GOOD_EDN[:2] + [" {:process 1, :type :invoke, :f :write, :value 4]}"] + GOOD_EDN[3:],
     "edn", 3, "unbalanced brackets"),
    (GOOD_EDN[:2] + [' {:process 1, :type :invoke, :f :write, :value "4}'] + GOOD_EDN[3:],
     "edn", 3, "unterminated string"),
    (GOOD_EDN[:2] + [" {:process 1, :type :invoke, :f :write, :value}"] + GOOD_EDN[3:],
     "edn", 3, "Even number"),
    (GOOD_EDN[:2] + [" {:process 1, :type :invoked, :f :write, :value 4}"] + GOOD_EDN[3:],
     "edn", 3, "unknown op type"),
    (GOOD_EDN[:1] + [" {:process 0, :type :ok, :value 3}"] + GOOD_EDN[2:],
     "edn", 2, "without :f"),
    (GOOD_EDN[:2] + [" {:process 1, :type :invoke, :f :write, :value #my/thing 4}"]
     + GOOD_EDN[3:], "edn", 3, "unsupported EDN tag #my/thing"),
    (["INFO  jepsen.util - 0\t:invoke\t:cas\t[1 2]", "noise",
      "INFO  jepsen.util - 0\t:ok\t:cas\t[1 2", ""], "jepsen-log", 3, "malformed op value"),
    (["INFO  jepsen.util - 0\t:invoke\t:read\tnil", "INFO  jepsen.util - 0\t:ok\t:read\t4"],
     "jepsen-log", 2, "truncated op line"),
    (['{:process 0, :type :invoke, :f :get, :key "1", :value nil}',
      '{:process 0, :type :ok, :f :get, :key "1", :value "ab}'], "porcupine", 2,
     "unterminated string"),
    (['{"index":0,"type":"invoke","f":"add","value":1,"process":0}',
      '{"index":1,"type":"ok","f":"add","va'], "jsonl", 2, "truncated"),
])
def test_malformed_and_truncated_files_name_the_line(tmp_path: Path, lines: list[str],
                                                     fmt: str, where: int, what: str) -> None:
    p = write(tmp_path, "h.txt", "\n".join(lines))
    for f in (fmt, "auto"):
        with pytest.raises(HistoryError) as e:
            read_history(p, f)
        msg = str(e.value)
        assert msg.startswith(f"{p}:{where}: "), msg
        assert what in msg
        assert "\n" not in msg


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no such file"):
        read_history(tmp_path / "absent.edn")
    with pytest.raises(HistoryError, match="empty history"):
        read_history(write(tmp_path, "empty.edn", "\n  \n"))
    with pytest.raises(HistoryError, match="cannot tell the history format"):
        read_history(write(tmp_path, "prose.txt", "hello\nworld\n"))
    with pytest.raises(HistoryError, match="not UTF-8"):
        p = tmp_path / "bin.edn"
        p.write_bytes(b"[\xff\xfe]")
        read_history(p)
    with pytest.raises(HistoryError, match="unknown history format"):
        read_history(write(tmp_path, "h.edn", "[]"), "yaml")


# ------------------------------------------------------- property: round trip

_name = st.sampled_from(["read", "write", "cas", "add", "acquire", "start"])
_value = st.recursive(
    st.none() | st.integers(-10**12, 10**12) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4), max_leaves=8)
_ops = st.lists(st.tuples(st.integers(0, 20) | st.just("nemesis"),
                          st.sampled_from(["invoke", "ok", "fail", "info"]), _name, _value),
                max_size=30)


def _edn_value(v):
    return tuple(_edn_value(x) for x in v) if isinstance(v, list) else v


def _nil_read(v) -> bool:
    """A read's value that Knossos takes as unknown: nil, or ``[key nil]``."""
    return v is None or (isinstance(v, list) and len(v) == 2 and v[1] is None)


@settings(max_examples=60, deadline=None)
@given(_ops, st.booleans())
def test_edn_round_trip(tmp_path_factory, ops, wrapped: bool) -> None:
    """Whatever Jepsen-shaped ops edn_format writes, we read back unchanged, except
    Knossos's one convention: a read that returned nil completed with an unknown value."""
    maps = [edn_format.dumps({Keyword("process"): Keyword(p) if p == "nemesis" else p,
                              Keyword("type"): Keyword(t), Keyword("f"): Keyword(f),
                              Keyword("value"): _edn_value(v)}) for p, t, f, v in ops]
    text = ("[" + "\n ".join(maps) + "]") if wrapped else "\n".join(maps)
    if not maps:
        text = "[]"
    p = tmp_path_factory.mktemp("rt") / "h.edn"
    p.write_text(text)
    expected = [(p_, "info" if (t, f) == ("ok", "read") and _nil_read(v) else t, f, v)
                for p_, t, f, v in ops]
    assert brief(read_history(p, "edn")) == expected


@settings(max_examples=40, deadline=None)
@given(_ops.filter(bool))
def test_jepsen_log_round_trip(tmp_path_factory, ops) -> None:
    lines = ["INFO  jepsen.core - start"]
    for p, t, f, v in ops:
        proc = ":nemesis" if p == "nemesis" else str(p)
        lines.append(f"INFO  jepsen.util - {proc}\t:{t}\t:{f}\t{edn_format.dumps(_edn_value(v))}")
    path = tmp_path_factory.mktemp("rt") / "jepsen.log"
    path.write_text("\n".join(lines) + "\n")
    assert brief(read_history(path)) == [(p, t, f, v) for p, t, f, v in ops]


_kv_ops = st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["invoke", "ok", "info"]),
                             st.sampled_from(["get", "put", "append"]),
                             st.text(max_size=3), st.none() | st.text(max_size=6)),
                   max_size=25)


@settings(max_examples=80, deadline=None)
@given(_kv_ops)
def test_porcupine_round_trip(tmp_path_factory, ops) -> None:
    """Porcupine-shaped lines read the same whether they take the fast path (plain
    strings) or edn_format (strings with quotes or backslashes force it)."""
    lines = [f"{{:process {p}, :type :{t}, :f :{f}, :key {edn_format.dumps(k)}, "
             f":value {edn_format.dumps(v)}}}" for p, t, f, k, v in ops]
    path = tmp_path_factory.mktemp("rt") / "kv.txt"
    path.write_text("\n".join(lines) + "\n")
    names = {"get": "read", "put": "write", "append": "append"}
    expected = [(p, t, names[f], [k, v]) for p, t, f, k, v in ops]
    assert brief(read_history(path, "porcupine")) == expected


# ----------------------------------------------------------- knossos corpus

@pytest.mark.skipif(not (CORPUS / "knossos").is_dir(), reason="no ../shared/corpus")
@pytest.mark.parametrize("rel, n_ops, nemesis_ops", [
    ("cas-register/bad/rethink-fail-minimal.edn", 8, 0),  # a list, comments inside
    ("cas-register/bad/immediate-failure.edn", 4, 0),     # :error vectors
    ("mutex/bad/etcd.edn", 1135, 12),                     # :index, :time, nemesis ops
])
def test_knossos_corpus_files_read(rel: str, n_ops: int, nemesis_ops: int) -> None:
    """A few corpus files of each shape (the corpus suite reads every one)."""
    ops = read_history(CORPUS / "knossos" / rel)
    assert len(ops) == n_ops
    assert sum(o.process == "nemesis" for o in ops) == nemesis_ops
    assert all(o.type in ("invoke", "ok", "fail", "info") for o in ops)
    assert all(isinstance(o.process, int) or o.process == "nemesis" for o in ops)


@pytest.mark.skipif(not (CORPUS / "knossos").is_dir(), reason="no ../shared/corpus")
def test_knossos_multi_line_maps_read() -> None:
    (path,) = sorted((CORPUS / "knossos" / "multi-register" / "good").glob("*.edn"))[:1]
    ops = read_history(path)
    assert ops[0].f == "txn" and ops[0].value == [["read", "x", None]]
    assert all(isinstance(o.time, int) and o.time > 0 for o in ops)


def test_edn_nil_reads_have_an_unknown_value_but_jepsen_log_nils_are_values(tmp_path):
    edn = tmp_path / "h.edn"
    edn.write_text("[{:process 0 :type :invoke :f :read :value nil}\n"
                   " {:process 0 :type :ok :f :read :value nil}\n"
                   " {:process 1 :type :invoke :f :read :value nil}\n"
                   " {:process 1 :type :ok :f :read :value 3}]\n")
    ops = read_history(edn, "edn")
    assert [o.type for o in ops] == ["invoke", "info", "invoke", "ok"]
    assert "unknown" in ops[1].extra["error"]
    edn.write_text("[{:process 0 :type :invoke :f :read :value [5 nil]}\n"  # independent
                   " {:process 0 :type :ok :f :read :value [5 nil]}\n"
                   " {:process 1 :type :invoke :f :read :value [5 nil]}\n"
                   " {:process 1 :type :ok :f :read :value [5 3]}]\n")
    assert [o.type for o in read_history(edn, "edn")] == ["invoke", "info", "invoke", "ok"]
    log = tmp_path / "h.log"
    log.write_text("INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
                   "INFO  jepsen.util - 0\t:ok\t:read\tnil\n")
    assert [o.type for o in read_history(log, "jepsen-log")] == ["invoke", "ok"]
