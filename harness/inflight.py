"""Each worker's op in flight, and the interpreter's hold on how long it may run.

Every worker of a run has a slot (``InFlight``) saying which op it has in flight and
since when. Three things read the slots: the **watchdog**, which cancels a worker whose
op has run for ``op_timeout`` (one sweep every tenth of it costs far less than a timer
per op); the **hard deadline** (time limit + ``op_timeout`` + ``GRACE``), past which the
workers still busy are abandoned; and the stall guard, which asks whether the task
running is in a client call. A worker the run stops or abandons has its op in flight
recorded here as ``info``, so the history stays well formed whatever the client does;
the worker's own loop (``harness.interpreter``) records everything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from harness.history import INFO, HistoryWriter, Op
from harness.stuck import GRACE, INTERRUPT_GRACE, abandon


@dataclass(slots=True)
class InFlight:
    """One worker's op in flight, as the watchdog sees it."""

    since: float | None = None
    """``time.monotonic()`` at which the op was invoked; None between ops. (Not the
    loop's clock: uvloop's stands still while a callback blocks the loop.)"""
    op: Op | None = None
    """The invocation in flight, for the run to complete if it abandons the worker."""
    expired: bool = False
    """The watchdog cancelled the worker because of this op."""
    stopped: str | None = None
    """Why the run cancelled this worker (``interrupted``, or ``timeout`` at the hard
    deadline): the error its op in flight gets."""
    abandoned: bool = False
    """The run gave up on this worker and recorded its op: it must record nothing."""


def timed_out(invoke: Op, completion: Op) -> Op:
    """The completion of an op that ran past its timeout and did not end ``ok``: it may
    still land, whatever the client said, so it is ``info``; the client's word is kept."""
    if completion.type == INFO and completion.error == "timeout":
        return completion
    said = completion.type + (f": {completion.error}" if completion.error else "")
    return invoke.info("timeout", client_said=said)


class Crew:
    """The workers of one run and their slots: watched, awaited, stopped."""

    def __init__(self, slots: dict[asyncio.Task[None], InFlight], history: HistoryWriter,
                 op_timeout: float, log: logging.Logger) -> None:
        self.slots = slots
        self.history = history
        self.op_timeout = op_timeout
        self.log = log

    def in_op(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` is a worker with an op in flight (in its client's code)."""
        slot = self.slots.get(task)
        return slot is not None and slot.since is not None

    async def watchdog(self) -> None:
        """Cancels every worker whose op has been in flight for ``op_timeout``; the
        worker tells this cancellation from the run's end by its slot's ``expired`` and
        ``stopped`` fields."""
        while True:
            await asyncio.sleep(self.op_timeout / 10)
            overdue = time.monotonic() - self.op_timeout
            for worker, slot in self.slots.items():
                if slot.since is not None and slot.since <= overdue and not slot.expired:
                    slot.expired = True
                    worker.cancel()

    async def wait(self, hard: float) -> None:
        """Waits for the workers until the loop time ``hard``, then abandons the rest.

        The first worker to fail stops the others and its error is raised (a bug in a
        generator: a UsageError stays a UsageError). On cancellation the workers are
        cancelled, given ``INTERRUPT_GRACE`` seconds, and the rest abandoned.
        """
        loop = asyncio.get_running_loop()
        pending = set(self.slots)
        try:
            while pending and (left := hard - loop.time()) > 0:
                done, pending = await asyncio.wait(
                    pending, timeout=left, return_when=asyncio.FIRST_EXCEPTION)
                failed = [t for t in done if not t.cancelled() and t.exception()]
                if failed:
                    await self.stop(pending, "interrupted")
                    error = failed[0].exception()
                    assert error is not None
                    raise error
        except asyncio.CancelledError:
            await self.stop(pending, "interrupted")
            raise
        if pending:
            self.log.warning(
                "%d client(s) still busy %g s after the time limit: abandoned, their ops "
                "recorded as info", len(pending), self.op_timeout + GRACE)
            await self.stop(pending, "timeout")

    async def stop(self, workers: set[asyncio.Task[None]], error: str) -> None:
        """Cancels ``workers`` and waits a little for them; records the op of each one
        still running as ``info`` ``error`` and abandons it."""
        for task in workers:
            self.slots[task].stopped = error
            task.cancel()
        if workers:
            _, stuck = await asyncio.wait(workers, timeout=INTERRUPT_GRACE)
            for task in stuck:
                slot = self.slots[task]
                if slot.op is not None and not slot.abandoned:
                    self.history.append(slot.op.info(
                        error, node=slot.op.extra.get("node"),
                        stuck="the client ignored its cancellation"))
                slot.abandoned = True
                abandon(task)
