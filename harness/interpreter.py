"""The interpreter: concurrent workers drive clients and record every op in the history.

Worker *i* is bound to node ``nodes[i % len(nodes)]`` and starts as process *i*, as in
Jepsen. Each worker draws ``(f, value)`` from the generator, records the invocation,
awaits its client, and records the completion. A completion of type ``info`` (or a
client that raised, which is recorded as ``info``) means the operation may still take
effect at any later time, so that process is never used again: the worker reopens its
client and continues as process ``process + concurrency``. A nemesis task runs the fault
schedule alongside, recording its ops under process ``"nemesis"``.

Everything runs on one asyncio loop; use ``run_async`` to get uvloop when installed.
Per op the hot path (``_worker``) does one generator call, one client await and two
history appends (JSON encoding and a flush per line: about half of the CPU an op
costs). The ``op_timeout`` backstop is a watchdog sweeping every worker's op in flight
ten times per ``op_timeout``, rather than a timer per op (``asyncio.timeout`` alone
cost a quarter of an op): ``harness.inflight``. Clients are opened, called off the hot
path and closed by a ``harness.client_pool``.

The interpreter's timeout is final: any completion other than ``ok`` of an op that ran
past ``op_timeout`` is recorded as ``info`` "timeout", whatever the client claimed (a
client that turns the watchdog's cancellation into ``fail`` cannot know the request did
not land). Client code that will not give control back cannot hold the run: workers
still busy at the hard deadline (time limit + ``op_timeout`` + a grace period) are
abandoned with their op recorded as ``info`` (``harness.inflight``), and a client call
that blocks the event loop is interrupted by a ``StallGuard`` (see ``harness.stuck``
for both mechanisms).
A client raising any ``BaseException`` (``SystemExit`` included) gets an ``info``, as for
any other exception; only cancellation and a signal's ``KeyboardInterrupt`` end the run
(one the client raised itself is its crash: ``harness.stop.from_signal``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from harness.client import Client
from harness.client_pool import ClientPool, error_text
from harness.generator_core import GenContext, Generator, Wait, worker_rng
from harness.history import FAIL, INFO, INVOKE, NEMESIS, OK, HistoryWriter, Op
from harness.inflight import Crew, InFlight, timed_out
from harness.stop import from_signal
from harness.stuck import (
    GRACE,
    LoopBlocked,
    StallGuard,
    run_loop,
)

if TYPE_CHECKING:
    from harness.context import Test
    from nemeses.base import Nemesis

T = TypeVar("T")

_COMPLETIONS = frozenset((OK, FAIL, INFO))
_NO_SUSPENSION = 50e-6
"""Seconds: an op that took less did not wait for I/O (uvloop's clock has 1 ms steps)."""


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Runs ``main`` on uvloop when installed (it takes about a third less CPU per op),
    like ``asyncio.run`` but never waiting forever for a task that ignores cancellation.
    """
    try:
        import uvloop
    except ImportError:
        return run_loop(main, asyncio.new_event_loop)
    return run_loop(main, uvloop.new_event_loop)


class Interpreter:
    def __init__(
        self, test: Test, history: HistoryWriter,
        open_client: Callable[[str], Awaitable[Client]], nodes: list[str],
        concurrency: int, *, op_timeout: float = 5.0,
    ) -> None:
        if not nodes:
            raise ValueError("the interpreter needs at least one node")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.test = test
        self.history = history
        self.nodes = list(nodes)
        self.concurrency = concurrency
        self.op_timeout = op_timeout
        self._clients = ClientPool(open_client, op_timeout, test.log)
        self._max_process = concurrency - 1
        self._crew: Crew | None = None
        """The workers of the run under way: the stall guard asks who is running."""
        self._guard = StallGuard(op_timeout, self._in_client)

    async def run(
        self, generator: Generator, *, time_limit: float, seed: int,
        rate: float | None = None, nemesis: Nemesis | None = None,
        schedule: Iterable[tuple[float, Op]] = (),
    ) -> None:
        """Runs the workers (and the nemesis schedule) until ``time_limit`` seconds.

        Call it once per interpreter: workers start again as processes 0..C-1.

        No op is invoked after the time limit; ops in flight then finish (bounded by
        ``op_timeout``). A worker still busy ``op_timeout`` + ``GRACE`` seconds after the
        time limit (its client ignored the watchdog's cancellation) is abandoned and
        its op recorded as ``info`` "timeout". ``schedule`` (``(delay, invocation)``
        pairs, each delay from when the previous op was due; possibly endless) runs only
        when a ``nemesis`` is given; a fault due after the time limit is not started, one
        in progress is allowed to finish. On cancellation every op in flight is recorded
        as ``info`` "interrupted" before this returns (within ``INTERRUPT_GRACE``
        seconds, whatever the clients do), so the history stays well formed.

        ``rate`` is in ops/s over all workers: between two ops each worker waits a
        uniform random time in [0, 2 * concurrency / rate) (Jepsen's stagger), so the
        workers do not fire in lockstep.
        """
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for unlimited)")
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + time_limit
        stop_at = time.monotonic() + time_limit  # the same, on a clock that never lags
        interval = None if rate is None else self.concurrency / rate
        slots = [InFlight() for _ in range(self.concurrency)]
        workers = [asyncio.ensure_future(self._worker(
            worker, slots[worker], generator, seed, start, deadline, stop_at, interval))
            for worker in range(self.concurrency)]
        self._crew = crew = Crew(dict(zip(workers, slots)), self.history, self.op_timeout,
                                 self.test.log)
        faults = (asyncio.ensure_future(self._run_schedule(nemesis, schedule, deadline))
                  if nemesis is not None else None)
        watchdog = asyncio.ensure_future(crew.watchdog())
        try:
            async with self._guard:
                try:
                    await crew.wait(deadline + self.op_timeout + GRACE)
                except BaseException:
                    if faults is not None:  # a fault in progress finishes (nemesis_op)
                        faults.cancel()
                        await asyncio.wait({faults})
                    raise
                finally:
                    watchdog.cancel()
                if faults is not None:
                    await faults
        finally:
            self._crew = None

    def _in_client(self) -> bool:
        """Whether the task running now is in a client call (asked by the stall guard)."""
        task = asyncio.current_task()
        if task is None:
            return False
        return (self._crew is not None and self._crew.in_op(task)) or self._clients.in_call(task)

    async def _worker(
        self, worker: int, slot: InFlight, generator: Generator, seed: int,
        start: float, deadline: float, stop_at: float, interval: float | None,
    ) -> None:
        """One worker's loop. ``deadline`` is in the loop's time; ``stop_at`` is the same
        moment in ``time.monotonic()``, checked before every invocation because uvloop's
        clock stands still while a callback blocks the loop (after a client blocked it,
        the loop's time is behind until the next iteration)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        monotonic = time.monotonic
        node = self.nodes[worker % len(self.nodes)]
        ctx = GenContext(worker_rng(seed, worker), worker, node, 0.0, worker, self.concurrency)
        update = getattr(generator, "update", None)  # completions, for until_ok
        # Stagger draws from its own stream so the op sequence does not depend on rate.
        stagger = random.Random(f"stagger:{seed}:{worker}").uniform
        append = self.history.append
        test, concurrency, sleep = self.test, self.concurrency, asyncio.sleep
        process = worker
        client: Client | None = None
        now = start
        next_at = start if interval is None else start + stagger(0, interval)
        try:
            while True:
                if interval is not None:
                    if next_at >= deadline:
                        return
                    delay = next_at - loop.time()
                    if delay > 0:
                        await sleep(delay)
                elif loop.time() - now < _NO_SUSPENSION:
                    # The last op did not suspend (an in-process or failing client):
                    # yield, or this worker would starve every other one. After an op
                    # that did suspend an extra turn would only delay the next op.
                    await sleep(0)
                now = loop.time()
                if now >= deadline or monotonic() >= stop_at:
                    return
                if client is None:
                    client = await self._clients.open_by(node, deadline)
                    if client is None or monotonic() >= stop_at:
                        return
                    now = loop.time()
                ctx.process = process
                ctx.elapsed = now - start
                spec = generator.op(ctx)
                if spec is None:
                    return
                if isinstance(spec, Wait):  # a barrier or a stagger: ask again later
                    await sleep(max(0.0, min(spec.seconds, deadline - loop.time())))
                    continue
                invoke = Op(INVOKE, spec[0], spec[1], process, extra={"node": node})
                append(invoke)
                # Like _invoke, but timed out by the watchdog instead of asyncio.timeout,
                # whose timer would be a quarter of the cost of an op.
                slot.op = invoke
                slot.since = began = monotonic()
                try:
                    completion = await client.invoke(test, invoke)
                    if type(completion) is not Op or completion.type not in _COMPLETIONS:
                        completion = invoke.info(f"client returned {completion!r}")
                except asyncio.CancelledError:
                    if slot.stopped is not None or not slot.expired:  # not the watchdog
                        if not slot.abandoned:
                            append(invoke.info(slot.stopped or "interrupted", node=node))
                        raise
                    completion = invoke.info("timeout")
                except (KeyboardInterrupt, GeneratorExit) as e:
                    if isinstance(e, KeyboardInterrupt) and not from_signal(e):
                        completion = invoke.info(error_text(e))  # the client's own
                    else:
                        if not slot.abandoned:
                            append(invoke.info("interrupted", node=node))
                        raise
                except LoopBlocked:
                    completion = invoke.info("timeout", stuck="the client blocked the loop")
                except BaseException as e:  # noqa: B036 - SystemExit from a client too
                    completion = invoke.info(error_text(e))
                slot.since = slot.op = None
                if slot.abandoned:  # the run recorded this op already and went on
                    return
                if slot.expired:  # consume the watchdog's cancel, even if the client ate it
                    slot.expired = False
                    task.uncancel()
                    if completion.type != OK:
                        completion = timed_out(invoke, completion)
                elif completion.type != OK and monotonic() - began >= self.op_timeout:
                    completion = timed_out(invoke, completion)
                completion.process = process
                completion.extra["node"] = node
                append(completion)
                if update is not None:
                    update(ctx, completion)
                if completion.type == INFO:
                    process += concurrency
                    if process > self._max_process:
                        self._max_process = process
                    await self._clients.close(client)
                    client = None
                if interval is not None:
                    next_at = max(next_at, now) + stagger(0, 2 * interval)
        finally:
            if client is not None and not slot.abandoned:  # the run closes those
                await self._clients.close(client)

    async def _run_schedule(
        self, nemesis: Nemesis, schedule: Iterable[tuple[float, Op]], deadline: float,
    ) -> None:
        """Each op ``delay`` seconds after the previous one was due, so the plan's offsets
        hold however long a fault takes to inject (``nemeses.schedule`` plans overlapping
        faults on one timeline). An op that comes due while an earlier one still runs
        goes as soon as that returns, and the plan after it shifts by the delay: the
        faults keep their lengths rather than firing in a burst to catch up."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        for delay, op in schedule:
            due = max(due + delay, loop.time())
            if due >= deadline:
                return
            await asyncio.sleep(due - loop.time())
            await self.nemesis_op(nemesis, Op(INVOKE, op.f, op.value, extra=dict(op.extra)))

    async def nemesis_op(self, nemesis: Nemesis, op: Op) -> Op:
        """Records ``op``'s invocation, performs it in a thread, records its ``info``.

        A nemesis that raises gets an ``info`` with the error; the run carries on. On
        cancellation (Ctrl-C) the fault is still allowed to finish, so that teardown
        does not race a half-applied fault; a second cancellation abandons it.
        """
        op.process = NEMESIS
        self.history.append(op)
        work = asyncio.ensure_future(asyncio.to_thread(nemesis.invoke, self.test, op))
        cancelled = False
        try:
            try:
                result = await asyncio.shield(work)
            except asyncio.CancelledError:
                cancelled = True
                result = await work
            completion = Op(INFO, op.f, result.value, NEMESIS, extra=dict(result.extra))
        except asyncio.CancelledError:
            self.history.append(op.info("interrupted"))
            raise
        except Exception as e:
            completion = op.info(error_text(e))
        self.history.append(completion)
        if cancelled:
            raise asyncio.CancelledError
        return completion

    async def final_ops(
        self, ops: list[tuple[str, str, Any]], *, attempts: int = 5,
        retry_delay: float = 1.0, extra: dict[str, Any] | None = None,
    ) -> list[Op]:
        """Runs ``(node, f, value)`` ops concurrently, each with a fresh client.

        Every attempt is recorded with ``extra`` on invoke and completion. A ``fail`` or
        ``info`` is retried up to ``attempts`` times in all, under a fresh process after
        ``info``; a client that cannot be opened counts as a ``fail`` attempt (nothing
        was sent). Returns the last completion of each op, in order.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        async with self._guard:
            return list(await asyncio.gather(*(
                self._final_op(node, f, value, attempts, retry_delay, extra or {})
                for node, f, value in ops)))

    async def _final_op(
        self, node: str, f: str, value: Any, attempts: int, retry_delay: float,
        extra: dict[str, Any],
    ) -> Op:
        process = self._fresh_process()
        client: Client | None = None
        try:
            for attempt in range(attempts):
                if attempt:
                    await asyncio.sleep(retry_delay)
                invoke = Op(INVOKE, f, value, process, extra={"node": node, **extra})
                self.history.append(invoke)
                if client is None:
                    try:
                        client = await self._clients.open(node)
                    except Exception as e:
                        completion = invoke.fail(f"cannot open a client: {error_text(e)}")
                if client is not None:
                    completion = await self._invoke(client, invoke)
                completion.process = process
                completion.extra.update(node=node, **extra)
                self.history.append(completion)
                if completion.type == OK:
                    break
                if completion.type == INFO and client is not None:
                    process = self._fresh_process()
                    await self._clients.close(client)
                    client = None
            return completion
        finally:
            if client is not None:
                await self._clients.close(client)

    async def _invoke(self, client: Client, invoke: Op) -> Op:
        """The client's completion of ``invoke``; ``info`` on timeout or exception."""
        try:
            completion = await self._clients.call(client.invoke(self.test, invoke))
        except TimeoutError:
            return invoke.info("timeout")
        except Exception as e:
            return invoke.info(error_text(e))
        if type(completion) is not Op or completion.type not in _COMPLETIONS:
            return invoke.info(f"client returned {completion!r}")
        return completion

    def _fresh_process(self) -> int:
        self._max_process += 1
        return self._max_process

    async def close(self) -> None:
        """Closes every client still open (those of abandoned workers included)."""
        async with self._guard:
            await self._clients.close_all()
