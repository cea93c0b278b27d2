"""Bad input gets one line on stderr and exit 254, before any cluster exists."""

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
