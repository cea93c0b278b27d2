"""``splitbrain check``: exit codes 0/1/2/254 on real histories, through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checkers.models import MODELS
from harness.check_command import build_model, check_file, check_fit, parse_initial
from harness.errors import UsageError
from harness.formats import read_history

CORPUS = Path(os.environ.get("SPLITBRAIN_CORPUS", "")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus") / "knossos"


def splitbrain(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                           "check", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, check=False)


def jsonl(tmp_path: Path, name: str, ops: list[tuple]) -> Path:
    """ops: (process, type, f, value) in recording order."""
    p = tmp_path / name
    p.write_text("".join(json.dumps({"index": i, "time": i, "type": t, "process": pr,
                                     "f": f, "value": v}) + "\n"
                         for i, (pr, t, f, v) in enumerate(ops)))
    return p


COUNTER_OK = [(0, "invoke", "add", 1), (1, "invoke", "read", None), (0, "ok", "add", 1),
              (1, "ok", "read", 0), (1, "invoke", "read", None), (1, "ok", "read", 1)]
COUNTER_LOST = COUNTER_OK[:4] + [(1, "invoke", "read", None), (1, "ok", "read", 0)]


def test_valid_history_exits_0(tmp_path: Path) -> None:
    r = splitbrain(jsonl(tmp_path, "h.jsonl", COUNTER_OK), "--model", "counter")
    assert r.returncode == 0, r.stderr
    assert "linearizable (counter, 3 ops" in r.stdout


def test_invalid_history_exits_1_and_explains(tmp_path: Path) -> None:
    r = splitbrain(jsonl(tmp_path, "h.jsonl", COUNTER_LOST))
    assert r.returncode == 1, r.stderr
    assert "read" in r.stdout and r.stdout.count("\n") >= 2


def crashed_writes_then_unreachable_read(n: int) -> list[tuple]:
    """n crashed writes of distinct values and a crashed cas 100 -> 200 that can never
    apply, then a read of 200. Invalid, but a search must try every subset and order of
    the writes to see it: exponential in n."""
    return ([(p, "invoke", "write", p) for p in range(n)] + [(n, "invoke", "cas", [100, 200])]
            + [(p, "info", "write", p) for p in range(n)] + [(n, "info", "cas", [100, 200])]
            + [(99, "invoke", "read", None), (99, "ok", "read", 200)])


def test_search_over_budget_exits_2(tmp_path: Path, capsys) -> None:
    small = jsonl(tmp_path, "small.jsonl", crashed_writes_then_unreachable_read(6))
    assert check_file(small, model="cas-register")["valid"] is False
    hard = jsonl(tmp_path, "hard.jsonl", crashed_writes_then_unreachable_read(24))
    r = splitbrain(hard, "--model", "cas-register", "--time-limit", "0.2")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "unknown" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["absent.jsonl"], "no such file"),
    (["h.jsonl", "--model", "nope"], "unknown model 'nope' (known: "),
    (["h.jsonl", "--initial", "{bad"], "--initial is not valid JSON"),
    (["h.jsonl", "--model", "register"], "the register model cannot take this history"),
    (["broken.edn"], "broken.edn:2: "),
    (["h.jsonl", "--format", "yaml"], "Invalid value for '--format'"),
    (["h.jsonl", "--initial", '"zero"'], "the initial state does not suit the counter model"),
    (["h.jsonl", "--time-limit", "-1"], "--time-limit must be positive"),
    (["independent.edn", "--model", "cas-register"], "use --model kv"),
])
def test_bad_usage_or_input_exits_254_with_one_line(tmp_path: Path, args: list[str],
                                                    message: str) -> None:
    jsonl(tmp_path, "h.jsonl", COUNTER_OK)
    (tmp_path / "broken.edn").write_text("[{:process 0 :type :invoke :f :read :value nil}\n"
                                         " {:process 0 :type :ok :f :read :value [1 2}]\n")
    (tmp_path / "independent.edn").write_text(  # Jepsen's independent [key value] tuples
        "[{:process 0 :type :invoke :f :write :value [7 1]}\n"
        " {:process 0 :type :ok :f :write :value [7 1]}\n"
        " {:process 1 :type :invoke :f :read :value [7 nil]}\n"
        " {:process 1 :type :ok :f :read :value [7 1]}]\n")
    r = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                        "check", *args], capture_output=True, text=True, cwd=tmp_path,
                       timeout=60, check=False)
    assert r.returncode == 254, (r.stdout, r.stderr)
    assert message in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------- in-process

def test_parse_initial() -> None:
    assert parse_initial(None) is None
    assert parse_initial("0") == 0
    assert parse_initial('""') == ""
    assert parse_initial('{"x": 0, "y": 0}') == {"x": 0, "y": 0}
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_initial("'x'")


def test_build_model_errors_list_the_known_models() -> None:
    with pytest.raises(UsageError) as e:
        build_model("linked-list")
    assert all(name in str(e.value) for name in MODELS)


USER_MODEL = """
class Toggle:
    \"\"\"A light switch: flip changes it, look reads it.\"\"\"
    name = "toggle"

    def __init__(self, initial=False):
        self.initial = initial

    def init(self):
        return self.initial

    def step(self, state, f, arg, result):
        if f == "flip":
            return not state
        if f == "look":
            return state if result == state else INCONSISTENT
        raise ValueError(f"toggle has no operation {f!r}")

    def describe(self, state):
        return "on" if state else "off"


from checkers.models import INCONSISTENT
NOT_A_MODEL = object
"""


@pytest.mark.parametrize("history, initial, code", [
    ([(0, "invoke", "flip", None), (0, "ok", "flip", None),
      (1, "invoke", "look", None), (1, "ok", "look", True)], None, 0),
    ([(0, "invoke", "flip", None), (0, "ok", "flip", None),
      (1, "invoke", "look", None), (1, "ok", "look", False)], None, 1),
    ([(0, "invoke", "flip", None), (0, "ok", "flip", None),
      (1, "invoke", "look", None), (1, "ok", "look", False)], "true", 0),
])
def test_a_users_own_model_plugs_in_as_module_colon_factory(
        tmp_path: Path, history: list[tuple], initial: str | None, code: int) -> None:
    (tmp_path / "toggle_model.py").write_text(USER_MODEL)
    h = jsonl(tmp_path, "h.jsonl", history)
    args = ["check", str(h), "--model", "toggle_model:Toggle"]
    if initial is not None:
        args += ["--initial", initial]
    r = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", *args],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=False)
    assert r.returncode == code, (r.stdout, r.stderr)
    if code == 1:
        assert "look False on process 1" in r.stdout
        assert "state after the longest linearizable prefix: on" in r.stdout


def test_a_module_colon_name_that_is_no_model_is_a_usage_error(tmp_path: Path,
                                                                monkeypatch) -> None:
    (tmp_path / "toggle_model.py").write_text(USER_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError, match="is not a model"):
        build_model("toggle_model:NOT_A_MODEL")
    with pytest.raises(UsageError, match="cannot import model"):
        build_model("no_such_module_here:Model")
    with pytest.raises(UsageError, match="has no 'Nope'"):
        build_model("toggle_model:Nope")


def test_misfit_suggests_the_models_that_fit(tmp_path: Path) -> None:
    p = jsonl(tmp_path, "h.jsonl", [(0, "invoke", "cas", [1, 2]), (0, "ok", "cas", [1, 2])])
    with pytest.raises(UsageError, match="try --model cas-register"):
        check_fit(build_model("register"), read_history(p))


def test_porcupine_kv_defaults_to_empty_string_initial(tmp_path: Path, capsys) -> None:
    p = tmp_path / "kv.txt"
    p.write_text('{:process 0, :type :invoke, :f :get, :key "1", :value nil}\n'
                 '{:process 0, :type :ok, :f :get, :key "1", :value ""}\n'
                 '{:process 0, :type :invoke, :f :append, :key "1", :value "ab"}\n'
                 '{:process 0, :type :ok, :f :append, :key "1", :value "ab"}\n'
                 '{:process 1, :type :invoke, :f :get, :key "1", :value nil}\n'
                 '{:process 1, :type :ok, :f :get, :key "1", :value "ab"}\n')
    assert check_file(p, model="kv")["valid"] is True
    assert 'initial ""' in capsys.readouterr().out
    assert check_file(p, model="kv", initial="null")["valid"] is False


# ----------------------------------------------------------- knossos corpus

@pytest.mark.skipif(not CORPUS.is_dir(), reason="no ../shared/corpus")
@pytest.mark.parametrize("rel, model, initial, code", [
    ("cas-register/good/cas-register-bug.edn", "cas-register", None, 0),
    ("cas-register/bad/bad-analysis.edn", "cas-register", None, 1),
    ("cas-register/bad/rethink-fail-minimal.edn", "cas-register", None, 1),
    ("mutex/bad/etcd.edn", "mutex", None, 1),
])
def test_knossos_corpus_verdicts(rel: str, model: str, initial: str | None,
                                 code: int) -> None:
    args = ["--model", model] + (["--initial", initial] if initial else [])
    r = splitbrain(CORPUS / rel, *args)
    assert r.returncode == code, (r.stdout, r.stderr)


# ------------------------------------------------- bench/porcupine_compare.py

def test_porcupine_compare_reports_verdicts_and_disagreements(tmp_path: Path) -> None:
    """The benchmark script on tiny histories in Porcupine's layout (made up here, no
    Porcupine data), with expected verdicts in Porcupine's test-file style."""
    data = tmp_path / "test_data"
    (data / "jepsen").mkdir(parents=True)
    (data / "kv").mkdir()
    log = "INFO  jepsen.util - {p}\t:{t}\t:{f}\t{v}\n"
    (data / "jepsen" / "etcd_000.log").write_text(
        log.format(p=0, t="invoke", f="write", v=1) + log.format(p=0, t="ok", f="write", v=1)
        + log.format(p=1, t="invoke", f="read", v="nil")
        + log.format(p=1, t="ok", f="read", v=2))                       # never written
    (data / "jepsen" / "etcd_001.log").write_text(
        log.format(p=0, t="invoke", f="read", v="nil") + log.format(p=0, t="ok", f="read", v="nil")
        + log.format(p=1, t="invoke", f="cas", v="[1 2]")
        + log.format(p=1, t="fail", f="cas", v="[1 2]"))
    kv = '{{:process {p}, :type :{t}, :f :{f}, :key "k", :value {v}}}\n'
    good = "".join(kv.format(p=p, t=t, f=f, v=v) for p, t, f, v in [
        (0, "invoke", "append", '"a"'), (0, "ok", "append", '"a"'),
        (1, "invoke", "get", "nil"), (1, "ok", "get", '"a"')])
    bad = good.replace(':ok, :f :get, :key "k", :value "a"', ':ok, :f :get, :key "k", :value "b"')
    for clients in ("c50", "c10"):
        (data / "kv" / f"{clients}-ok.txt").write_text(good)
        (data / "kv" / f"{clients}-bad.txt").write_text(bad)
    (tmp_path / "porcupine_test.go").write_text(
        "checkJepsen(t, 0, false)\ncheckJepsen(t, 1, false)\n"   # 1 is wrong on purpose
        'checkKv(t, "c50-ok", true, true)\ncheckKv(t, "c50-bad", false, true)\n'
        'checkKv(t, "c10-ok", true, false)\ncheckKv(t, "c10-bad", false, false)\n')
    script = Path(__file__).resolve().parents[1] / "bench" / "porcupine_compare.py"
    r = subprocess.run([sys.executable, str(script), str(data)], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "1 disagreement(s)" in r.stdout
    assert "etcd etcd_001.log: ours True, porcupine False" in r.stdout
    assert "kv-c50                    2 files" in r.stdout
    assert "valid/invalid/unknown 1/1/0" in r.stdout


def test_a_jepsen_independent_history_checks_key_by_key_with_kv(tmp_path: Path) -> None:
    p = tmp_path / "independent.edn"
    p.write_text("[{:process 0 :type :invoke :f :write :value [7 1]}\n"
                 " {:process 0 :type :ok :f :write :value [7 1]}\n"
                 " {:process 1 :type :invoke :f :cas :value [8 [nil 2]]}\n"
                 " {:process 1 :type :ok :f :cas :value [8 [nil 2]]}\n"
                 " {:process 2 :type :invoke :f :read :value [7 nil]}\n"
                 " {:process 2 :type :ok :f :read :value [7 1]}\n"
                 " {:process 2 :type :invoke :f :read :value [8 nil]}\n"
                 " {:process 2 :type :ok :f :read :value [8 2]}]\n")
    assert splitbrain(p, "--model", "kv").returncode == 0
    p.write_text(p.read_text().replace(":value [8 2]", ":value [8 1]"))
    r = splitbrain(p, "--model", "kv")
    assert r.returncode == 1 and "key 8" in r.stdout, r.stdout


# ------------------------------------------------ hostile histories (issue 7)

ADD2_READ = [(0, "invoke", "add", 2), (0, "ok", "add", 2), (0, "invoke", "read", None)]


@pytest.mark.parametrize("read, code", [(2.0, 0), (2, 0), (2.5, 1), (3, 1)])
def test_a_float_counter_read_compares_as_a_number(tmp_path: Path, read, code) -> None:
    """add 2 then read 2.0 is a read of 2 (JSON has one number type); the bounds fast
    path and the search used to disagree on it ("internal error")."""
    r = splitbrain(jsonl(tmp_path, "h.jsonl", [*ADD2_READ, (0, "ok", "read", read)]))
    assert r.returncode == code, (r.stdout, r.stderr)


@pytest.mark.parametrize("delta", [1, 2])   # 1: the streaming proof's path first
@pytest.mark.parametrize("read", ["abc", True, [2], {"n": 2}, None])
def test_a_non_number_counter_read_is_an_error_at_its_line(tmp_path: Path, read,
                                                           delta) -> None:
    ops = [(0, "invoke", "add", delta), (0, "ok", "add", delta),
           (0, "invoke", "read", None), (0, "ok", "read", read)]
    path = jsonl(tmp_path, "h.jsonl", ops)
    r = splitbrain(path)
    assert r.returncode == 254, (r.stdout, r.stderr)
    assert f"{path}:4: a counter read value must be a number" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("line, message", [
    ('{"type":"invoke","f":"add","process":[1],"value":1}', "process must be"),
    ('{"type":["invoke"],"f":"add","process":1,"value":1}', "unknown type"),
    ('{"type":"invoke","f":["add"],"process":1,"value":1}', "f must be a string"),
    ('{"type":"invoke","f":"add","process":1,"value":1,"index":"3"}', "index must be"),
    ('{"type":"invoke","f":"add","process":1,"value":' + "[" * 900 + "]" * 900 + "}",
     "nested more than"),
    ('{"type":"invoke","f":"add","process":1,"value":' + "9" * 5000 + "}", "too large"),
    ("[" * 900 + "]" * 900, "expected a JSON object"),
])
def test_ill_typed_jsonl_is_one_line_naming_the_line(tmp_path: Path, line, message) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"type":"invoke","f":"read","process":0,"value":null}\n' + line + "\n")
    r = splitbrain(path, "--format", "jsonl")
    assert r.returncode == 254, (r.stdout, r.stderr)
    assert f"{path}:2: " in r.stderr and message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("value, message", [
    ("1/0", "zero denominator"), ("9" * 5000, "too long"),
    ("[" * 900 + "]" * 900, "nested"), ("#foo 1", "unsupported EDN tag")])
def test_hostile_edn_is_one_line_naming_the_line(tmp_path: Path, value, message) -> None:
    path = tmp_path / "h.edn"
    path.write_text("[{:type :invoke, :f :read, :process 0, :value nil}\n"
                    f" {{:type :invoke, :f :add, :process 1, :value {value}}}]\n")
    r = splitbrain(path)
    assert r.returncode == 254, (r.stdout, r.stderr)
    assert f"{path}:2: " in r.stderr and message in r.stderr, r.stderr


@pytest.mark.parametrize("limit", ["nan", "inf", "0"])
def test_a_time_limit_must_be_finite_and_positive(tmp_path: Path, limit) -> None:
    r = splitbrain(jsonl(tmp_path, "h.jsonl", COUNTER_OK), "--time-limit", limit)
    assert r.returncode == 254, r.stderr
    assert re.search(r"--time-limit must be (positive|a finite number), got", r.stderr), r.stderr


@pytest.mark.slow
def test_the_time_limit_bounds_reading(tmp_path: Path) -> None:
    """A history too long to read within the limit is unknown (exit 2), and says that
    reading is what ran out of time."""
    path = tmp_path / "h.edn"
    op = "{:type :invoke, :f :read, :process 0, :value nil}\n" \
         "{:type :ok, :f :read, :process 0, :value 0}\n"
    path.write_text("[" + op * 200_000 + "]")
    began = time.monotonic()
    r = splitbrain(path, "--time-limit", "0.05")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "while reading the history" in r.stdout
    assert time.monotonic() - began < 60


def test_a_linearizable_unit_counter_is_proved_streaming(tmp_path: Path) -> None:
    """check proves a valid unit-counter history.jsonl in one pass; an invalid one is
    read whole and explained, as before."""
    ok = check_file(jsonl(tmp_path, "ok.jsonl", COUNTER_OK), model="counter")
    assert ok["valid"] is True and ok["ops"] == 3
    lost = check_file(jsonl(tmp_path, "lost.jsonl", COUNTER_LOST), model="counter")
    assert lost["valid"] is False and lost["counterexample"]["explanation"]


def test_the_memory_limit_bounds_reading(tmp_path: Path) -> None:
    """A memory limit below what the process already holds stops the read at once:
    unknown (exit 2), never a machine driven into swap by a huge history."""
    path = jsonl(tmp_path, "h.jsonl", COUNTER_OK * 10)
    r = splitbrain(path, "--memory-limit", "1")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "memory limit of 1 MiB reached while reading the history" in r.stdout
