"""Client code that will not give control back, or raises what it should not: the run
still ends on time, records those ops as ``info``, and Ctrl-C still works.

The interpreter tests drive it directly with real misbehaving clients (in-process
coroutines: nothing is mocked); the end-to-end tests run ``splitbrain run`` on the local
backend with a user system (``tests.misbehaving``) and look for a verdict.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import context
from harness.cluster.remote import NoopRemote
from harness.generator import constant, mix
from harness.history import HistoryWriter, pairs, read_jsonl
from harness.interpreter import Interpreter, run_async
from harness.stop import StopRequests
from tests.misbehaving import InterruptingCounter, MisbehavingClient

pytestmark = pytest.mark.timeout(60, method="thread")  # a hang must fail, not stall CI

OP_TIMEOUT = 0.4


def make(tmp_path: Path, way: str | InterruptingCounter, concurrency: int = 2):
    """An interpreter over node n1 whose clients misbehave ``way``, or are clients of
    the in-memory ``InterruptingCounter`` given."""
    history = HistoryWriter(tmp_path / "history.jsonl")
    test = context.Test(context.Spec(nodes=["n1"]), NoopRemote(), tmp_path)

    async def open_client(node):
        return MisbehavingClient(way)

    opener = (open_client if isinstance(way, str)
              else lambda node: way.open_client(test, node))
    interp = Interpreter(test, history, opener, ["n1"], concurrency, op_timeout=OP_TIMEOUT)
    return interp, history


def timed_run(interp, gen, time_limit: float) -> float:
    async def main():
        await interp.run(gen, time_limit=time_limit, seed=0)
        await interp.final_ops([("n1", "read", None)], extra={"final": True})
        await interp.close()
    began = time.monotonic()
    run_async(main())
    return time.monotonic() - began


def completions(history):
    history.close()
    ps = pairs(read_jsonl(history.path))
    assert all(p.completion is not None for p in ps)  # well formed, nothing left open
    return ps


def test_a_client_that_swallows_cancellation_is_abandoned_at_the_hard_deadline(tmp_path):
    interp, history = make(tmp_path, "swallow")
    elapsed = timed_run(interp, constant("add", 1), time_limit=0.3)
    # time limit + op timeout + 2 s grace + 1 s to unwind, and the loop's exit waited
    # for none of the abandoned tasks
    assert 0.3 + OP_TIMEOUT + 2 <= elapsed < 0.3 + OP_TIMEOUT + 2 + 1 + 2
    ps = completions(history)
    adds = [p for p in ps if p.invoke.f == "add"]
    assert len(adds) == 2
    assert {(p.type, p.completion.error) for p in adds} == {("info", "timeout")}
    assert all("ignored its cancellation" in p.completion.extra["stuck"] for p in adds)
    assert [p.completion.value for p in ps if p.invoke.f == "read"] == [0]


def test_a_client_that_blocks_the_event_loop_is_interrupted(tmp_path):
    interp, history = make(tmp_path, "block")
    gen = mix([(1, constant("add", 1)), (1, constant("read", None))])
    elapsed = timed_run(interp, gen, time_limit=0.2)
    assert elapsed < 0.2 + 4 * OP_TIMEOUT + 3  # each blocked add costs one op timeout
    ps = completions(history)
    adds = [p for p in ps if p.invoke.f == "add"]
    assert adds and {(p.type, p.completion.error) for p in adds} == {("info", "timeout")}
    assert all(p.completion.extra["stuck"] == "the client blocked the loop" for p in adds)
    # the loop's clock lags after a stall; no op may be invoked after the time limit
    assert max(p.invoke.time for p in ps if not p.invoke.extra.get("final")) < 0.25e9
    assert [p.completion.value for p in ps if p.invoke.extra.get("final")] == [0]


def test_a_client_whose_close_blocks_the_loop_does_not_hold_the_final_reads(tmp_path):
    interp, history = make(tmp_path, "block-close")
    began = time.monotonic()
    run_async(interp.final_ops([("n1", "read", None)]))  # opens, reads, closes
    assert OP_TIMEOUT <= time.monotonic() - began < OP_TIMEOUT + 2
    assert [p.completion.value for p in completions(history)] == [0]


def test_a_client_raising_system_exit_gets_info_and_the_run_goes_on(tmp_path):
    interp, history = make(tmp_path, "exit")
    timed_run(interp, mix([(1, constant("add", 1)), (1, constant("read", None))]),
              time_limit=0.3)
    ps = completions(history)
    adds = [p for p in ps if p.invoke.f == "add"]
    assert len(adds) > 10  # every add retired its process, and the workers went on
    assert {(p.type, p.completion.error) for p in adds} == {("info", "SystemExit: 3")}
    assert any(p.invoke.f == "read" and p.type == "ok" for p in ps)


def test_system_exit_in_a_final_op_is_info_too(tmp_path):
    interp, history = make(tmp_path, "exit")
    [done] = run_async(interp.final_ops([("n1", "add", 1)], attempts=2, retry_delay=0))
    assert (done.type, done.error) == ("info", "SystemExit: 3")


def test_a_keyboard_interrupt_raised_by_a_client_is_its_crash_not_ctrl_c(tmp_path):
    """No signal comes: the client's own KeyboardInterrupt gets its op an ``info`` and
    the run goes on, under the signal handling the runner uses."""
    counter = InterruptingCounter()
    interp, history = make(tmp_path, counter)
    stop = StopRequests()
    with stop.installed(), stop.event_loop():
        timed_run(interp, mix([(3, constant("add", 1)), (1, constant("read", None))]),
                  time_limit=0.3)
    assert not stop.signals
    ps = completions(history)
    [crashed] = [p for p in ps if p.type == "info"]
    assert (crashed.invoke.f, crashed.completion.error) == (
        "add", "KeyboardInterrupt: raised by the client")
    oks = [p for p in ps if p.type == "ok" and p.invoke.f == "add"]
    assert len(oks) > 10 and ps[-1].completion.value == len(oks) == counter.value


def test_a_keyboard_interrupt_raised_in_a_final_op_is_info(tmp_path):
    counter = InterruptingCounter()
    interp, history = make(tmp_path, counter, concurrency=1)
    stop = StopRequests()
    with stop.installed(), stop.event_loop():
        done = run_async(interp.final_ops([("n1", "add", 1)], attempts=2, retry_delay=0))
    history.close()
    first = [op.error for op in read_jsonl(history.path) if op.type == "info"]
    assert first == ["KeyboardInterrupt: raised by the client"]
    assert [op.type for op in done] == ["ok"]


@pytest.mark.parametrize("way", ["swallow", "block"])
def test_ctrl_c_ends_a_run_held_by_a_stuck_client(tmp_path, way):
    """A real SIGINT, handled as the runner handles it, while the client holds the run."""
    interp, history = make(tmp_path, way, concurrency=3)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    began = time.monotonic()
    stop = StopRequests()
    with stop.installed():
        with pytest.raises(KeyboardInterrupt), stop.event_loop():
            run_async(stop.cancelling(
                interp.run(constant("add", 1), time_limit=60, seed=0)))
    elapsed = time.monotonic() - began
    assert stop.received == signal.SIGINT
    assert elapsed < 0.3 + OP_TIMEOUT + 1 + 2  # a stall is broken within an op timeout
    ps = completions(history)
    assert ps and {p.type for p in ps} == {"info"}
    assert {p.completion.error for p in ps} <= {"interrupted", "timeout"}


# --- end to end: `splitbrain run --system tests.misbehaving:NAME` -------------------

CLI = [sys.executable, "-c", "from harness.cli import main; main()"]


def splitbrain_run(tmp_path: Path, system: str, time_limit: float = 2
                   ) -> tuple[subprocess.CompletedProcess[str], float, dict]:
    store = tmp_path / "store"
    began = time.monotonic()
    r = subprocess.run([*CLI, "run", "--system", f"tests.misbehaving:{system}", "--nodes",
                        "1", "--nemesis", "none", "--concurrency", "3", "--time-limit",
                        str(time_limit), "--store", str(store)],
                       capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - began
    results = json.loads((store / "latest" / "results.json").read_text())
    return r, elapsed, results


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("system", ["swallowing", "blocking"])
def test_a_run_held_by_a_stuck_client_still_ends_in_a_verdict(tmp_path, system):
    r, elapsed, results = splitbrain_run(tmp_path, system)
    assert r.returncode == 2, r.stderr  # unknown: no add succeeded, which is not VALID
    assert "Traceback" not in r.stderr
    # time limit, one op timeout (5 s), the grace, recovery and two rounds of final reads
    assert elapsed < 2 + 5 + 2 + 1 + 15
    assert results["valid"] == "unknown"
    assert results["stats"]["summary"].startswith("no add succeeded: ")
    assert "timeout" in results["stats"]["summary"]
    assert results["counter"]["final_reads"] == {"n1": 0}


@pytest.mark.slow
@pytest.mark.root
def test_a_client_raising_system_exit_is_recorded_and_the_run_reaches_a_verdict(tmp_path):
    r, _, results = splitbrain_run(tmp_path, "exiting", time_limit=1)
    assert r.returncode == 2, r.stderr
    assert results["stats"]["by_f"]["add"]["info"] > 0
    assert "SystemExit: 3" in results["stats"]["summary"]


@pytest.mark.slow
@pytest.mark.root
def test_a_client_raising_keyboard_interrupt_is_not_taken_for_ctrl_c(tmp_path):
    """The run is not "interrupted ()": the op is info, the run ends with a verdict
    (VALID: the add that crashed never applied), exit 0 rather than the interrupt's 2."""
    r, _, results = splitbrain_run(tmp_path, "interrupting", time_limit=1)
    assert r.returncode == 0, r.stderr
    assert "interrupted" not in r.stderr and "Traceback" not in r.stderr
    assert results["valid"] is True and "interrupted" not in results
    crashed = [op for op in read_jsonl(tmp_path / "store" / "latest" / "history.jsonl")
               if op.type == "info"]
    assert [(op.f, op.error) for op in crashed] == [
        ("add", "KeyboardInterrupt: raised by the client")]


@pytest.mark.slow
@pytest.mark.root
def test_a_read_of_no_number_is_an_anomaly_not_a_lost_run(tmp_path):
    r, _, results = splitbrain_run(tmp_path, "ill_typed", time_limit=1)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    [anomaly] = [a for a in results["anomalies"] if a["type"] == "ill-typed-read"]
    assert anomaly["count"] > 0 and anomaly["examples"][0]["value"] == "abc"
    assert results["linearizable"]["valid"] is True  # it never saw the string
    assert (tmp_path / "store" / "latest" / "report.html").exists()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("system", ["swallowing", "blocking"])
def test_ctrl_c_ends_a_cli_run_held_by_a_stuck_client(tmp_path, system):
    store = tmp_path / "store"
    proc = subprocess.Popen([*CLI, "run", "--system", f"tests.misbehaving:{system}",
                             "--nodes", "1", "--nemesis", "none", "--concurrency", "3",
                             "--time-limit", "60", "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    history = store / "latest" / "history.jsonl"
    deadline = time.monotonic() + 30
    while not (history.exists() and '"add"' in history.read_text()):
        assert time.monotonic() < deadline, "the run never invoked an add"
        time.sleep(0.1)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert time.monotonic() - began < 5 + 3 + 5  # one op timeout, then strict stalls
    assert "Traceback" not in err and "Warning" not in err
    results = json.loads((store / "latest" / "results.json").read_text())
    assert results["valid"] == "unknown"
