"""bench/porcupine_compare.py: reading Go's benchmark output, naming our history for each
Go benchmark, and a whole run on histories written here by hand in Porcupine's layout and
log formats (no Porcupine data or code), with Porcupine figures chosen so that each target
must come out met or missed."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "porcupine_compare.py"


@pytest.fixture(scope="module")
def pc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("porcupine_compare", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["porcupine_compare"] = module   # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_each_go_benchmark_names_our_set_and_file(pc: ModuleType) -> None:
    assert pc.history_of("EtcdJepsen007") == ("etcd", "etcd_007.log")
    assert pc.history_of("Kv1ClientOk") == ("kv-c01", "c01-ok.txt")
    assert pc.history_of("Kv10ClientsBad") == ("kv-c10", "c10-bad.txt")
    assert pc.history_of("Kv50ClientsOk") == ("kv-c50", "c50-ok.txt")
    assert pc.history_of("KvNoPartition1ClientBad") == ("kv-c01-no-partition", "c01-bad.txt")
    assert pc.history_of("KvNoPartition10ClientsOk") == ("kv-c10-no-partition", "c10-ok.txt")
    assert pc.history_of("KvNoPartition50ClientsOk") is None     # no such set of ours
    assert pc.history_of("SetModel") is None


def test_go_bench_output_on_one_core(pc: ModuleType) -> None:
    text = ("goos: linux\npkg: example\n"
            "BenchmarkEtcdJepsen003   \t       5\t    250000 ns/op\n"
            "BenchmarkKv10ClientsOk   \t      12\t   1500000 ns/op\t  800 B/op\n"
            "BenchmarkKv10ClientsOk   \t      12\t   1100000 ns/op\n"   # -count 3: median
            "BenchmarkKv10ClientsOk   \t      12\t   9000000 ns/op\n"
            "BenchmarkSomethingElse   \t     100\t        42 ns/op\n"
            "--- FAIL: BenchmarkKv1ClientOk\nPASS\nok  \texample\t3.1s\n")
    go = pc.parse_go_bench(text)
    assert go.procs == 1
    assert go.seconds == {("etcd", "etcd_003.log"): 0.00025,
                          ("kv-c10", "c10-ok.txt"): 0.0015}


def test_go_bench_output_on_several_cores(pc: ModuleType) -> None:
    several = "BenchmarkKv1ClientOk-2 \t 5\t 80000 ns/op\nBenchmarkKv1ClientBad-2 5 40000.5 ns/op\n"
    go = pc.parse_go_bench(several)
    assert go.procs == 2
    assert go.seconds == {("kv-c01", "c01-ok.txt"): 8e-05, ("kv-c01", "c01-bad.txt"): 4.00005e-05}
    # -cpu 1,2: only the one-core lines count
    go = pc.parse_go_bench(several + "BenchmarkKv1ClientOk \t 5\t 70000 ns/op\n")
    assert (go.procs, go.seconds) == (1, {("kv-c01", "c01-ok.txt"): 7e-05})
    with pytest.raises(ValueError, match="no Porcupine benchmark lines"):
        pc.parse_go_bench("PASS\nBenchmarkOther 5 10 ns/op\n")


LOG = "INFO  jepsen.util - {p}\t:{t}\t:{f}\t{v}\n"
KV = '{{:process {p}, :type :{t}, :f :{f}, :key "{k}", :value {v}}}\n'


def kv_log(rows: list[tuple[int, str, str, str, str]]) -> str:
    return "".join(KV.format(p=p, t=t, f=f, k=k, v=v) for p, t, f, k, v in rows)


def write_test_data(root: Path) -> Path:
    """Two etcd logs (one valid, one reading a value never written), and kv logs of one
    and two clients, each an ok and a bad one."""
    data = root / "test_data"
    (data / "jepsen").mkdir(parents=True)
    (data / "kv").mkdir()
    (data / "jepsen" / "etcd_000.log").write_text(
        LOG.format(p=0, t="invoke", f="write", v=3) + LOG.format(p=1, t="invoke", f="read", v="nil")
        + LOG.format(p=0, t="ok", f="write", v=3) + LOG.format(p=1, t="ok", f="read", v=3)
        + LOG.format(p=2, t="invoke", f="cas", v="[3 4]")
        + LOG.format(p=2, t="ok", f="cas", v="[3 4]"))
    (data / "jepsen" / "etcd_001.log").write_text(
        LOG.format(p=0, t="invoke", f="write", v=1) + LOG.format(p=0, t="ok", f="write", v=1)
        + LOG.format(p=1, t="invoke", f="read", v="nil") + LOG.format(p=1, t="ok", f="read", v=2))
    one_ok = [(0, "invoke", "append", "a", '"x"'), (0, "ok", "append", "a", '"x"'),
              (0, "invoke", "put", "b", '"y"'), (0, "ok", "put", "b", '"y"'),
              (0, "invoke", "get", "a", "nil"), (0, "ok", "get", "a", '"x"'),
              (0, "invoke", "get", "b", "nil"), (0, "ok", "get", "b", '"y"')]
    one_bad = one_ok[:-1] + [(0, "ok", "get", "b", '"z"')]
    # two clients: 1's get overlaps 0's append, so "" and "x" are both right
    two_ok = [(0, "invoke", "append", "a", '"x"'), (1, "invoke", "get", "a", "nil"),
              (1, "ok", "get", "a", '""'), (0, "ok", "append", "a", '"x"'),
              (1, "invoke", "get", "a", "nil"), (1, "ok", "get", "a", '"x"')]
    two_bad = two_ok[:-1] + [(1, "ok", "get", "a", '""')]   # after the append ended
    for name, rows in [("c01-ok", one_ok), ("c01-bad", one_bad),
                       ("c10-ok", two_ok), ("c10-bad", two_bad)]:
        (data / "kv" / f"{name}.txt").write_text(kv_log(rows))
    (root / "porcupine_test.go").write_text(
        "func TestA(t *testing.T) {\n\tcheckJepsen(t, 0, true)\n}\n"
        "func TestB(t *testing.T) {\n\tcheckJepsen(t, 1, false)\n}\n"
        + "".join(f'\tcheckKv(t, "c{n}-{k}", {str(k == "ok").lower()}, {part})\n'
                  for n in ("01", "10") for k in ("ok", "bad") for part in ("true", "false")))
    return data


def totals(out: str, name: str) -> str:
    [line] = [ln for ln in out.splitlines() if re.match(rf"  {re.escape(name)} +\d+ files", ln)]
    return line


def target(out: str, name: str) -> str:
    section = out.split("== targets (issue 11)\n")[1].split("\n\n")[0]
    [line] = [ln for ln in section.splitlines() if ln.startswith(f"  {name} ")]
    return line


def test_a_run_against_one_core_figures(pc: ModuleType, tmp_path: Path, capsys) -> None:
    data = write_test_data(tmp_path)
    bench = tmp_path / "go-bench.txt"
    bench.write_text(   # etcd: 1000 s in all, so our ratio is ~0; c10 without partition: 2 ns
        "BenchmarkEtcdJepsen000 \t 5\t 500000000000 ns/op\n"
        "BenchmarkEtcdJepsen001 \t 5\t 500000000000 ns/op\n"
        "BenchmarkKv1ClientOk \t 5\t 61000 ns/op\n"
        "BenchmarkKvNoPartition10ClientsOk \t 5\t 1 ns/op\n"
        "BenchmarkKvNoPartition10ClientsBad \t 5\t 1 ns/op\n")
    code = pc.main([str(data), "--porcupine", str(bench), "--repeat", "2", "--min-time", "0",
                    "--sets", "etcd,kv-c01,kv-c10,kv-c10-no-partition"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 disagreement(s)" in out and "not CPU" not in out
    runs = re.findall(r"check +([\d.]+) ms CPU +([\d.]+) ms wall +(\d+) runs", out)
    assert len(runs) == 8 and all(n == "2" and float(c) > 0 for c, _, n in runs)
    for s in ("etcd", "kv-c01", "kv-c10", "kv-c10-no-partition"):
        assert "valid/invalid/unknown 1/1/0" in totals(out, s)
    etcd = totals(out, "etcd")
    assert "porcupine 1000.0000 s" in etcd and "(2/2)" in etcd
    ours = float(re.search(r"ours +([\d.]+) s CPU", etcd)[1])    # type: ignore[index]
    ratio = float(re.search(r"ratio +([\d.]+)", etcd)[1])        # type: ignore[index]
    assert 0 < ours < 1 and ratio == pytest.approx(ours / 1000, abs=5e-4)
    assert "(1/2)" in totals(out, "kv-c01")     # Porcupine timed only c01-ok
    assert re.search(r"CPU ratio 0\.000 <= 0\.5: met$", target(out, "etcd"))
    assert re.search(r"CPU ratio \d+\.\d+ > 0\.5: MISSED$", target(out, "kv-c10-no-partition"))
    for s in ("kv-c01", "kv-c10"):  # a few ops: far below 2 ms of CPU
        assert re.search(r"max 0\.\d+ ms per history < 2 ms: met$", target(out, s))
        assert re.search(r"per history: median [\d.]+ ms, max [\d.]+ ms CPU",
                         out.split(totals(out, s))[1])


def test_a_run_against_figures_of_two_cores_and_a_disagreement(
        pc: ModuleType, tmp_path: Path, capsys) -> None:
    data = write_test_data(tmp_path)
    go_test = tmp_path / "porcupine_test.go"
    go_test.write_text(go_test.read_text().replace("checkJepsen(t, 1, false)",
                                                   "checkJepsen(t, 1, true)"))
    bench = tmp_path / "go-bench.txt"
    bench.write_text("BenchmarkEtcdJepsen000-2 5 500000000000 ns/op\n")
    code = pc.main([str(data), "--porcupine", str(bench), "--repeat", "1", "--min-time", "0",
                    "--sets", "etcd,kv-c50"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("warning: ") and "names end in -2" in out
    assert "ratios compare our CPU with its wall time" in out
    assert "(kv-c50: no " in out                 # no c50 logs in this test data
    assert "(1/2)" in totals(out, "etcd")
    assert target(out, "etcd").endswith("met (Porcupine's figures are wall time on 2 cores)")
    assert "1 disagreement(s)" in out and "etcd etcd_001.log: ours False, porcupine True" in out


def test_a_run_without_porcupine_figures_says_no_ratio(pc: ModuleType, tmp_path: Path,
                                                        capsys) -> None:
    data = write_test_data(tmp_path)
    assert pc.main([str(data), "--repeat", "1", "--min-time", "0", "--sets", "etcd",
                    "--workers", "1"]) == 0
    assert "CPU ratio not measured" in target(capsys.readouterr().out, "etcd")


def test_a_file_that_is_no_go_bench_output_is_one_line(pc: ModuleType, tmp_path: Path,
                                                       capsys) -> None:
    data = write_test_data(tmp_path)
    (tmp_path / "notes.txt").write_text("nothing here\n")
    with pytest.raises(SystemExit) as e:
        pc.main([str(data), "--porcupine", str(tmp_path / "notes.txt")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no Porcupine benchmark lines" in err
    with pytest.raises(SystemExit) as e:
        pc.main([str(data), "--workers", "0"])
    assert e.value.code == 2
    assert "--workers must be 1 or more" in capsys.readouterr().err
