"""The process's signal contract (harness.stop), with real signals sent to this process.

The case that once lost a SIGTERM: the signal lands while the event loop runs one of its
own callbacks (uvloop's resolver callback swallowed the KeyboardInterrupt raised there
and the run went on to the end). The handler must therefore never raise inside the loop;
it must cancel the main task instead. Whole runs interrupted at random moments are in
test_lifecycle.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from harness.interpreter import run_async
from harness.stop import StopRequests


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_a_loop_callback_cancels_the_main_task(sig):
    callback_finished = []
    cleaned_up = []

    def callback() -> None:
        signal.raise_signal(sig)
        callback_finished.append(True)  # not reached if the handler raised here

    async def main() -> None:
        asyncio.get_running_loop().call_soon(callback)
        try:
            await asyncio.sleep(30)
        finally:
            cleaned_up.append(True)

    stop = StopRequests()
    with stop.installed():
        with pytest.raises(KeyboardInterrupt), stop.event_loop():
            run_async(stop.cancelling(main()))
    assert stop.signals == [sig]
    assert callback_finished == [True]
    assert cleaned_up == [True]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_outside_the_loop_raises_and_the_next_do_not(sig):
    stop = StopRequests()
    with stop.installed():
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(sig)
        signal.raise_signal(sig)  # the unwinding it started is not cut short
    assert stop.signals == [sig, sig]


def test_while_something_must_finish_signals_are_remembered_and_the_work_completes():
    stop = StopRequests()
    finished = []
    with stop.installed():
        stop.finish_first("the teardown")
        signal.raise_signal(signal.SIGTERM)
        finished.append(True)
        stop.arm()  # e.g. the check: the next signal stops it
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert finished == [True]
    assert stop.describe() == "SIGTERM, SIGINT"


def test_a_signal_while_the_loop_starts_or_stops_ends_it_after_the_loop():
    stop = StopRequests()
    ran = []

    async def main() -> None:
        ran.append(True)
        await asyncio.sleep(0)

    async def starting() -> None:
        signal.raise_signal(signal.SIGTERM)  # no main task yet
        await stop.cancelling(main())

    with stop.installed():
        with pytest.raises(KeyboardInterrupt), stop.event_loop():
            run_async(starting())
    assert ran == []


def test_the_third_signal_exits_at_once_with_2_and_points_at_cleanup():
    script = textwrap.dedent("""
        import signal, time
        from harness.stop import STOP
        STOP.install()
        STOP.finish_first("the teardown")
        for _ in range(3):
            signal.raise_signal(signal.SIGINT)
        print("not reached")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r
    assert "not reached" not in r.stdout
    assert "finishing the teardown first" in r.stderr
    assert "splitbrain cleanup" in r.stderr.splitlines()[-1]
    assert "Traceback" not in r.stderr


def test_a_forked_child_stops_as_by_default_and_quietly():
    stop = StopRequests()
    with stop.installed():
        pid = os.fork()
        if pid == 0:  # the child: a signal must end it, not raise in it
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                os._exit(0)
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert stop.signals == []


def test_the_previous_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopRequests().installed():
        pass
    assert {s: signal.getsignal(s) for s in before} == before
