"""Bad input gets one line on stderr and exit 254, before any cluster exists."""

import json
import os
import subprocess
import sys

import pytest

from harness.errors import UsageError
from harness.spec_loader import build_spec
from harness.store import new_run_dir


def splitbrain(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["run", "--system", "nosuch"], "unknown system 'nosuch'"),
    (["run", "--workload", "nosuch"], "unknown workload 'nosuch'"),
    (["run", "--nemesis", "meteor"], "meteor"),
    (["run", "-o", "variant"], "-o expects KEY=VALUE"),
    (["run", "--time-limit", "0"], "time-limit must be positive"),
    (["run", "--time-limit", "-3"], "time-limit must be positive"),
    (["run", "--concurrency", "0"], "concurrency must be at least 1"),
    (["run", "-o", "variant=bogus"], "bogus"),
    (["run", "--store", "/proc/forbidden"], "cannot write the store"),
    (["run", "--frobnicate"], "frobnicate"),
    (["check", "/nonexistent/history.jsonl"], "nonexistent"),
])
def test_bad_input_is_one_line_and_exit_254(args, message, tmp_path):
    if "--store" not in args and args[0] == "run":
        args = [*args, "--store", str(tmp_path / "store")]
    r = splitbrain(*args)
    assert r.returncode == 254, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


TOML_REPRODUCERS = {  # issue 7's hostile test files, each a traceback or a silent coercion
    "system = 5": "system must be a string",
    'nodes = "abc"': "nodes must be a number of nodes",
    'seed = "abc"': "seed must be an integer",
    "nodes = 1.5": "nodes must be a number of nodes",
    "seed = [1]": "seed must be an integer",
    "store = 5": "store must be a string",
    "[" + ".".join(["a"] * 900) + "]": "unknown key 'a'",
    "x = " + "[" * 900 + "]" * 900: "nested too deeply",
    "[options." + ".".join(["a"] * 900) + "]": "options.a must be a string, a number",
}


@pytest.mark.parametrize("text", TOML_REPRODUCERS, ids=lambda text: text[:24])
def test_hostile_test_files_are_one_line_and_exit_254(text, tmp_path):
    toml = tmp_path / "t.toml"
    toml.write_text(text + "\n")
    r = splitbrain("run", str(toml), "--store", str(tmp_path / "store"))
    assert r.returncode == 254, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and TOML_REPRODUCERS[text] in lines[0], r.stderr
    assert str(toml) in lines[0]
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("args, message", [
    (["run", "--time-limit", "NaN"], "--time-limit must be a finite number"),
    (["run", "--time-limit", "inf"], "--time-limit must be a finite number"),
    (["run", "-o", "timeout=1e308"], "timeout must be at most 300"),
    (["run", "--concurrency", "99999999999999999999999"], "--concurrency must be at most"),
    (["run", "-o", "varaint=naive"], "did you mean variant?"),
    (["run", "--system", "redis", "-o", "clinet=get-set"], "did you mean client?"),
    (["run", "--system", "postgres", "-o", "client=update", "-o", "isolation=serializable"],
     "isolation has no effect with client=update"),
    (["run", "--system", ":"], "bad system ':'"),
    (["run", "--system", ".x:y"], "bad system '.x:y'"),
    (["run", "--system", "builtins:dict"], "not a system factory"),
    (["run", "--seed", "abc"], "--seed must be an integer"),
    (["run", "--nodes", "1.5"], "--nodes must be an integer"),
    (["serve", "--port", "70000"], "70000 is not in the range"),
    (["check", "h.jsonl", "--time-limit", "nan"], "must be a finite number"),
    (["check", "h.jsonl", "--memory-limit", "1e400"], "must be an integer"),
])
def test_issue_reproducers_are_one_line_and_exit_254(args, message, tmp_path):
    if args[0] == "run":
        args = [*args, "--store", str(tmp_path / "store")]
    r = splitbrain(*args, cwd=tmp_path)
    assert r.returncode == 254, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "store").exists()


def test_check_refuses_a_5000_digit_initial_in_one_line(tmp_path):
    history = tmp_path / "h.jsonl"
    history.write_text('{"index": 0, "time": 0, "type": "invoke", "f": "read", '
                       '"process": 0, "value": null}\n')
    r = splitbrain("check", str(history), "--initial", "9" * 5000)
    assert r.returncode == 254, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--initial" in lines[0] and len(lines[0]) < 300, r.stderr


def test_flags_override_the_test_file(tmp_path):
    toml = tmp_path / "t.toml"
    toml.write_text('system = "counterd"\nconcurrency = 7\ntime_limit = 3\n'
                    'nemesis = ["kill"]\n[options]\nvariant = "atomic"\n')
    spec = build_spec(str(toml), {"timeout": "0.5"}, {"concurrency": "9", "nodes": "3"})
    assert spec.concurrency == 9 and spec.time_limit == 3.0 and spec.nemesis == ["kill"]
    assert spec.nodes == ["n1", "n2", "n3"]
    assert spec.options == {"variant": "atomic", "timeout": "0.5"}
    assert spec.name == "counterd-atomic-counter-kill"
    assert build_spec(None, {}, {"nemesis": "none"}).nemesis == []
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'red'\n")
    with pytest.raises(UsageError, match="unknown key"):
        build_spec(str(bad), {}, {})


def test_run_dirs_and_latest_links(tmp_path):
    a = new_run_dir(tmp_path, "t")
    b = new_run_dir(tmp_path, "t")
    assert a != b and (a / "nodes").is_dir()
    assert (tmp_path / "latest").resolve() == b.resolve()
    assert (tmp_path / "t" / "latest").resolve() == b.resolve()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="the local backend needs root")
@pytest.mark.parametrize("name_line, system", [
    ('name = "../../x[/]y [bold]"', "counterd"),
    ("", "harness.systems.counterd:make_system"),  # a package.module:factory system
])
def test_hostile_names_run_inside_the_store(name_line, system, tmp_path):
    toml = tmp_path / "t.toml"
    toml.write_text(f'{name_line}\nsystem = "{system}"\nnodes = 1\nnemesis = "none"\n'
                    'time_limit = 1\n[options]\nvariant = "atomic"\n')
    store = tmp_path / "a" / "b" / "store"
    r = splitbrain("run", str(toml), "--store", str(store), cwd=tmp_path)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    run_dir = (store / "latest").resolve()
    assert run_dir.is_relative_to(store.resolve()) and ":" not in run_dir.parent.name
    name = json.loads((run_dir / "test.json").read_text())["name"]
    assert name == ("../../x[/]y [bold]" if name_line else
                    "harness.systems.counterd:make_system-atomic-counter-none")
    assert name in r.stdout  # printed as text, not read as markup
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir() and p.name == "x") == []
