"""How a run reacts to SIGINT and SIGTERM (harness.runner._Interrupts).

A real signal is sent to this very process. The case that once lost a SIGTERM: the signal
lands while the event loop runs one of its own callbacks (uvloop's resolver callback
swallowed the KeyboardInterrupt raised there and the run went on to the end). The handler
must therefore never raise inside the loop; it must cancel the main task instead.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from harness.interpreter import run_async
from harness.runner import _Interrupts


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

    with _Interrupts() as interrupts:
        with pytest.raises(asyncio.CancelledError):
            run_async(interrupts.cancelling(main()))
    assert interrupts.received == sig
    assert callback_finished == [True]
    assert cleaned_up == [True]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_outside_the_loop_raises_keyboard_interrupt(sig):
    with _Interrupts() as interrupts:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(sig)
    assert interrupts.received == sig


def test_a_signal_before_the_loop_starts_still_cancels_it():
    started = []

    async def main() -> None:
        started.append(True)

    with _Interrupts() as interrupts:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        with pytest.raises(asyncio.CancelledError):
            run_async(interrupts.cancelling(main()))
    assert started == []


def test_the_previous_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with _Interrupts():
        pass
    assert {s: signal.getsignal(s) for s in before} == before
