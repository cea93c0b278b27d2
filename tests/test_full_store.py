"""A store on a tiny tmpfs, full at the start, filled by the history, or filled just
before results.json: one line names the store and what could not be written, the
cluster is torn down, a verdict that was reached is printed with its exit code, and no
``.tmp`` file is left. Real runs, a real filesystem that really fills up."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import StoreError
from harness.history import HistoryWriter, Op
from tests.test_lifecycle import SHORT_RUN, RunWatch

pytestmark = [pytest.mark.slow, pytest.mark.root]


def _mount(directory: Path, size: str) -> Iterator[Path]:
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                   check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.fixture
def tiny_store(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "store", "64k")


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "store", "2m")


def _fill(directory: Path) -> None:
    """Takes every free byte of the filesystem at once."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError:
            pass


def _tmp_files(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.name.endswith(".tmp")]


def test_a_full_store_is_refused_before_any_cluster_exists(tiny_store, tmp_path):
    _fill(tiny_store)
    started = time.monotonic()
    watch = RunWatch(tmp_path, *SHORT_RUN)
    code, out, err = watch.finish()
    assert code == 2, out + err
    assert err.strip() == (f"splitbrain: the store at {tiny_store} is full "
                           "(No space left on device): no room for a run's records"), err
    assert not watch.run_ids, "a cluster was set up"
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in tiny_store.iterdir()) == ["filler"]  # nothing half made


def test_a_history_that_fills_the_store_stops_the_run_and_tears_down(tiny_store, tmp_path):
    watch = RunWatch(tmp_path, "-o", "variant=async-replica", "--nemesis", "partition,kill",
                     "--nodes", "3", "--time-limit", "60")
    code, out, err = watch.finish()
    assert code == 2, out + err
    assert "Traceback" not in err and "Logging error" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"splitbrain: the store at {tiny_store} is full"), err
    assert "history.jsonl" in line and "the run ends unknown" in line, line
    assert "could not be recorded" in out, out  # the history says where it stops
    assert "UNKNOWN" in out
    assert watch.run_ids and not watch.leftovers()
    assert not _tmp_files(tiny_store)
    assert watch.run_dir is not None and (watch.run_dir / "history.jsonl").stat().st_size > 0


def test_a_verdict_without_room_for_results_json_is_printed_with_its_exit_code(
        small_store, tmp_path):
    watch = RunWatch(tmp_path, *SHORT_RUN, "--rate", "50")
    deadline = time.monotonic() + 60
    # Teardown has begun (the node's log is being collected): the history is complete.
    while watch.run_dir is None or not any((watch.run_dir / "nodes").glob("*/*.log")):
        assert time.monotonic() < deadline and watch.proc.poll() is None, watch.finish()
        time.sleep(0.002)
    _fill(small_store)
    code, out, err = watch.finish()
    assert code == 0, out + err
    assert "VALID" in out and "Traceback" not in err, out + err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"splitbrain: the store at {small_store} is full"), err
    assert "results.json" in line and "the verdict above stands" in line, line
    assert watch.run_dir is not None and not (watch.run_dir / "results.json").exists()
    assert not _tmp_files(small_store)
    assert not watch.leftovers()


def test_the_history_writer_never_fails_silently(small_store):
    """Once a write fails, every later append fails too, naming the file: a history with
    a hole in it would be checked as if the missing ops never happened."""
    writer = HistoryWriter(small_store / "history.jsonl")
    _fill(small_store)
    with pytest.raises(StoreError) as first:
        for i in range(100_000):
            writer.append(Op("invoke", "add", "x" * 200, i))
    assert "history.jsonl" in str(first.value) and "could not be recorded" in str(first.value)
    (small_store / "filler").unlink()  # room again: the hole must not be papered over
    with pytest.raises(StoreError) as later:
        writer.append(Op("invoke", "add", 1, 0))
    assert later.value is first.value
    writer.close()
