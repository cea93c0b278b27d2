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
cost a quarter of an op).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from harness.client import Client
from harness.generator import GenContext, Generator, Wait, worker_rng
from harness.history import FAIL, INFO, INVOKE, NEMESIS, OK, HistoryWriter, Op

if TYPE_CHECKING:
    from harness.context import Test
    from nemeses.base import Nemesis

T = TypeVar("T")

_COMPLETIONS = frozenset((OK, FAIL, INFO))
_NO_SUSPENSION = 50e-6
"""Seconds: an op that took less did not wait for I/O (uvloop's clock has 1 ms steps)."""
_OPEN_BACKOFF = (0.05, 1.0)
"""First and longest wait before retrying a client that could not be opened."""


@dataclass(slots=True)
class _InFlight:
    """One worker's op in flight, as the watchdog sees it."""

    since: float | None = None
    """Loop time at which the op was invoked; None between ops."""
    expired: bool = False
    """The watchdog cancelled the worker because of this op."""


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Runs ``main`` on uvloop when installed: it takes about a third less CPU per op."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _error_text(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


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
        self.open_client = open_client
        self.nodes = list(nodes)
        self.concurrency = concurrency
        self.op_timeout = op_timeout
        self._clients: set[Client] = set()
        self._max_process = concurrency - 1

    async def run(
        self, generator: Generator, *, time_limit: float, seed: int,
        rate: float | None = None, nemesis: Nemesis | None = None,
        schedule: Iterable[tuple[float, Op]] = (),
    ) -> None:
        """Runs the workers (and the nemesis schedule) until ``time_limit`` seconds.

        Call it once per interpreter: workers start again as processes 0..C-1.

        No op is invoked after the time limit; ops in flight then finish (bounded by
        ``op_timeout``). ``schedule`` (``(delay, invocation)`` pairs, possibly endless)
        runs only when a ``nemesis`` is given; a fault due after the time limit is not
        started. On cancellation every op in flight is recorded as ``info``
        "interrupted" before this returns, so the history stays well formed.

        ``rate`` is in ops/s over all workers: between two ops each worker waits a
        uniform random time in [0, 2 * concurrency / rate) (Jepsen's stagger), so the
        workers do not fire in lockstep.
        """
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for unlimited)")
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + time_limit
        interval = None if rate is None else self.concurrency / rate
        slots = [_InFlight() for _ in range(self.concurrency)]
        try:
            async with asyncio.TaskGroup() as tasks:
                workers = [
                    tasks.create_task(self._worker(
                        worker, slots[worker], generator, seed, start, deadline, interval))
                    for worker in range(self.concurrency)]
                if nemesis is not None:
                    tasks.create_task(self._run_schedule(nemesis, schedule, deadline))
                watchdog = tasks.create_task(self._watchdog(slots, workers))
                await asyncio.wait(workers)
                watchdog.cancel()
        except ExceptionGroup as group:
            # A bug in a generator or client code: the first error is the one to show
            # (a UsageError stays a UsageError); the task group already stopped the rest.
            raise group.exceptions[0] from None

    async def _worker(
        self, worker: int, slot: _InFlight, generator: Generator, seed: int,
        start: float, deadline: float, interval: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
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
                if now >= deadline:
                    return
                if client is None:
                    client = await self._open(node, deadline)
                    if client is None:
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
                slot.since = now
                try:
                    completion = await client.invoke(test, invoke)
                    if type(completion) is not Op or completion.type not in _COMPLETIONS:
                        completion = invoke.info(f"client returned {completion!r}")
                except asyncio.CancelledError:
                    if not slot.expired or task.cancelling() > 1:  # Ctrl-C, not a timeout
                        append(invoke.info("interrupted", node=node))
                        raise
                    completion = invoke.info("timeout")
                except Exception as e:
                    completion = invoke.info(_error_text(e))
                slot.since = None
                if slot.expired:  # consume the watchdog's cancel, even if the client ate it
                    slot.expired = False
                    task.uncancel()
                completion.process = process
                completion.extra["node"] = node
                append(completion)
                if update is not None:
                    update(ctx, completion)
                if completion.type == INFO:
                    process += concurrency
                    if process > self._max_process:
                        self._max_process = process
                    await self._close(client)
                    client = None
                if interval is not None:
                    next_at = max(next_at, now) + stagger(0, 2 * interval)
        finally:
            if client is not None:
                await self._close(client)

    async def _watchdog(self, slots: list[_InFlight], workers: list[asyncio.Task]) -> None:
        """Cancels every worker whose op has been in flight for ``op_timeout``.

        One sweep every tenth of ``op_timeout`` costs far less than a timer per op; the
        worker tells this cancellation from Ctrl-C by its slot's ``expired`` flag.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.op_timeout / 10)
            overdue = loop.time() - self.op_timeout
            for slot, worker in zip(slots, workers):
                if slot.since is not None and slot.since <= overdue and not slot.expired:
                    slot.expired = True
                    worker.cancel()

    async def _open(self, node: str, deadline: float) -> Client | None:
        """Opens a client, retrying with backoff; None if ``deadline`` passes first.

        Each attempt is bounded by ``op_timeout``: a node that accepts connections but
        never answers must not keep the run going past its time limit.
        """
        loop = asyncio.get_running_loop()
        backoff, longest = _OPEN_BACKOFF
        while True:
            try:
                async with asyncio.timeout(self.op_timeout):
                    client = await self.open_client(node)
            except Exception as e:
                self.test.log.debug("cannot open a client to %s: %s", node, _error_text(e))
                if loop.time() + backoff >= deadline:
                    return None
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, longest)
            else:
                self._clients.add(client)
                return client

    async def _close(self, client: Client) -> None:
        """Closes a client, never letting a broken one stop the run."""
        self._clients.discard(client)
        try:
            async with asyncio.timeout(self.op_timeout):
                await client.close()
        except Exception as e:
            self.test.log.debug("closing a client failed: %s", _error_text(e))

    async def _run_schedule(
        self, nemesis: Nemesis, schedule: Iterable[tuple[float, Op]], deadline: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        for delay, op in schedule:
            if loop.time() + delay >= deadline:
                return
            await asyncio.sleep(delay)
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
            completion = op.info(_error_text(e))
        self.history.append(completion)
        if cancelled:
            raise asyncio.CancelledError
        return completion

    async def final_ops(
        self, ops: list[tuple[str, str, Any]], *, attempts: int = 5,
        retry_delay: float = 1.0, extra: dict | None = None,
    ) -> list[Op]:
        """Runs ``(node, f, value)`` ops concurrently, each with a fresh client.

        Every attempt is recorded with ``extra`` on invoke and completion. A ``fail`` or
        ``info`` is retried up to ``attempts`` times in all, under a fresh process after
        ``info``; a client that cannot be opened counts as a ``fail`` attempt (nothing
        was sent). Returns the last completion of each op, in order.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        return list(await asyncio.gather(*(
            self._final_op(node, f, value, attempts, retry_delay, extra or {})
            for node, f, value in ops)))

    async def _final_op(
        self, node: str, f: str, value: Any, attempts: int, retry_delay: float,
        extra: dict,
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
                        async with asyncio.timeout(self.op_timeout):
                            client = await self.open_client(node)
                    except Exception as e:
                        completion = invoke.fail(f"cannot open a client: {_error_text(e)}")
                    else:
                        self._clients.add(client)
                if client is not None:
                    completion = await self._invoke(client, invoke)
                completion.process = process
                completion.extra.update(node=node, **extra)
                self.history.append(completion)
                if completion.type == OK:
                    break
                if completion.type == INFO:
                    process = self._fresh_process()
                    await self._close(client)
                    client = None
            return completion
        finally:
            if client is not None:
                await self._close(client)

    async def _invoke(self, client: Client, invoke: Op) -> Op:
        """The client's completion of ``invoke``; ``info`` on timeout or exception."""
        try:
            async with asyncio.timeout(self.op_timeout):
                completion = await client.invoke(self.test, invoke)
        except TimeoutError:
            return invoke.info("timeout")
        except Exception as e:
            return invoke.info(_error_text(e))
        if type(completion) is not Op or completion.type not in _COMPLETIONS:
            return invoke.info(f"client returned {completion!r}")
        return completion

    def _fresh_process(self) -> int:
        self._max_process += 1
        return self._max_process

    async def close(self) -> None:
        """Closes every client still open."""
        for client in list(self._clients):
            await self._close(client)
