"""Client code that will not give control back: how the run still ends on time.

A client is user code, and two kinds of it can hold a run forever:

* **It swallows cancellation** (catches ``CancelledError`` and awaits again). The
  interpreter's watchdog cancels it, and nothing happens. Such a task can only be
  *abandoned*: the interpreter stops waiting for it at a hard deadline, records its op
  as ``info``, and ``abandon`` keeps it away from everything that would wait for it
  again. ``asyncio.run`` would: at shutdown it cancels every task left and waits for all
  of them, without a bound, so ``run_loop`` replaces it with a shutdown that waits a
  bounded time and then leaves the stragglers behind (they are kept referenced, so the
  garbage collector never runs their code after the loop is gone).
* **It blocks the event loop** (``time.sleep(1000)`` inside ``invoke``). Then no
  coroutine runs at all: not the watchdog, not the signal handling of the runner. Only
  another thread can notice, so ``StallGuard`` runs one. A heartbeat task on the loop
  stamps the time every twentieth of the limit (the op timeout); when the stamp is
  older than the limit,
  the thread sends a signal to the main thread with ``signal.pthread_kill`` (a signal
  sent to the process might be delivered to another thread, which would not interrupt
  the main thread's blocking call). The Python handler runs in the main thread between
  two bytecodes, or when a blocking call such as ``time.sleep`` is interrupted, and
  raises ``LoopBlocked`` there, but only if the task running is in a client call
  (``in_client``): raising anywhere else could break the interpreter or the loop itself.
  ``LoopBlocked`` is a ``BaseException``, so a client's ``except Exception`` does not eat
  it; a client that catches even that and blocks again is interrupted again. The
  interrupted op is recorded as ``info`` "timeout". While the loop is blocked a Ctrl-C
  only queues the cancellation of the run, which takes effect once the guard has broken
  the stall (and those of the workers queued to block next: after a first stall the
  guard is strict, see ``StallGuard``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from harness.stop import from_signal

T = TypeVar("T")

log = logging.getLogger("splitbrain")

_SIGNAL = signal.SIGUSR2
"""Sent by the guard's thread to the main thread; splitbrain uses it for nothing else."""
GRACE = 2.0
"""Seconds client code gets, past its timeout, to unwind from its cancellation."""
INTERRUPT_GRACE = 1.0
"""Seconds client code gets to unwind on Ctrl-C."""
_LEFTOVER_GRACE = 1.0
"""Seconds the loop's shutdown waits for cancelled tasks before abandoning them."""
_ABANDONED: set[asyncio.Task[Any]] = set()
"""Tasks that ignored cancellation: referenced for the life of the process, so that
their code never runs again (the garbage collector would close their coroutines)."""


class LoopBlocked(BaseException):
    """Raised inside a client call that kept the event loop from running for too long."""


class ClientFailed(Exception):
    """A client call run by ``bounded`` raised ``original`` (possibly a BaseException
    such as SystemExit, which must not escape the loop)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original


async def bounded(running: set[asyncio.Task[Any]], timeout: float, call: Awaitable[T]) -> T:
    """Awaits a client's ``call`` for at most ``timeout`` seconds, as a task of its own,
    kept in ``running`` while it runs (so a stall guard knows it is client code).

    Off the hot path (opening, closing, final ops) a task per call is cheap, and it
    buys two things: a call that ignores its cancellation is abandoned after ``GRACE``
    more seconds instead of awaited forever, and a ``BaseException`` it raises
    (``SystemExit``) comes back as ``ClientFailed`` instead of escaping the loop (asyncio
    re-raises ``SystemExit`` from a task out of the whole loop). Raises ``TimeoutError``
    when the call took too long or blocked the loop.
    """
    task = asyncio.ensure_future(_caught(call))
    running.add(task)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=GRACE)
            if not done:
                abandon(task)
            raise TimeoutError
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait({task}, timeout=INTERRUPT_GRACE)
        if not task.done():
            abandon(task)
        raise
    finally:
        running.discard(task)
    ok, value = task.result()
    if ok:
        return cast(T, value)
    if isinstance(value, LoopBlocked):
        raise TimeoutError
    raise ClientFailed(cast(BaseException, value))


async def _caught(call: Awaitable[T]) -> tuple[bool, T | BaseException]:
    """``(True, result)``, or ``(False, what it raised)`` for anything but the run's end
    (a KeyboardInterrupt the client raised itself is its outcome, a signal's is not)."""
    try:
        return True, await call
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except KeyboardInterrupt as e:
        if from_signal(e):
            raise
        return False, e
    except BaseException as e:  # noqa: B036 - a client's SystemExit is its op's outcome
        return False, e


def abandon(task: asyncio.Task[Any]) -> None:
    """Stops caring about ``task``, which ignored its cancellation: nobody awaits it, and
    its destruction while pending is not reported (it is expected)."""
    task._log_destroy_pending = False  # type: ignore[attr-defined]
    _ABANDONED.add(task)


class StallGuard:
    """While entered (on the loop, in the main thread), interrupts a client call that
    keeps the loop from running for ``limit`` seconds by raising ``LoopBlocked`` in it.

    Once it has broken a stall, the guard is strict: the system's client is known to
    block the loop, and every further stall of a fifth of ``limit`` is broken too. Each
    stall freezes everything (the watchdog, the nemesis, Ctrl-C), and several workers
    may be queued to block in turn: a Ctrl-C during such a run takes effect within one
    strict limit per worker, not one op timeout per worker. An interpreter keeps one
    guard and enters it for each phase, so strictness lasts the whole run.

    ``in_client`` is asked in the main thread, inside the signal handler, whether the
    task now running is in a client call. Outside the main thread (where signal
    handlers cannot be installed) the guard does nothing and says so in the log.
    """

    def __init__(self, limit: float, in_client: Callable[[], bool]) -> None:
        self.limit = limit
        self.in_client = in_client
        self.strict = False
        """A stall was broken: the client blocks the loop; further stalls are shorter."""
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heart: asyncio.Task[None] | None = None
        self._saved: Any = None

    async def __aenter__(self) -> StallGuard:
        if threading.current_thread() is not threading.main_thread():
            log.debug("not in the main thread: a client blocking the loop cannot be stopped")
            return self
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._saved = signal.signal(_SIGNAL, self._interrupt)
        self._heart = asyncio.ensure_future(self._heartbeat())
        main = threading.main_thread().ident
        assert main is not None
        self._thread = threading.Thread(target=self._watch, args=(main,), daemon=True,
                                        name="splitbrain-stall-guard")
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()  # its last signal, if any, was delivered before this returns
        self._thread = None
        assert self._heart is not None
        self._heart.cancel()
        signal.signal(_SIGNAL, self._saved)

    def _threshold(self) -> float:
        return self.limit / 5 if self.strict else self.limit

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self.limit / 20)

    def _stalled(self) -> bool:
        return time.monotonic() - self._beat > self._threshold()

    def _watch(self, main: int) -> None:
        """The guard's thread: signals the main thread once per threshold of stall."""
        last_kick = 0.0
        while not self._stop.wait(self.limit / 20):
            now = time.monotonic()
            if self._stalled() and now - last_kick > self._threshold():
                last_kick = now
                signal.pthread_kill(main, _SIGNAL)

    def _interrupt(self, signum: int, frame: object) -> None:
        if not self._stop.is_set() and self._stalled() and self.in_client():
            self.strict = True
            self._beat = time.monotonic()  # the next kick comes a whole threshold later
            raise LoopBlocked(f"the client held the event loop for over "
                              f"{self._threshold():g} s")


def run_loop(main: Coroutine[Any, Any, T], new_loop: Callable[[], asyncio.AbstractEventLoop]
             ) -> T:
    """``asyncio.run`` with a bounded shutdown: tasks still running when ``main`` ends
    are cancelled and given ``_LEFTOVER_GRACE`` seconds, then abandoned."""
    loop = new_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop) - _ABANDONED  # those were given their chance
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=_LEFTOVER_GRACE))
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.debug("a task failed while the loop shut down: %r", task.exception())
    for task in pending:
        abandon(task)
    if pending:
        log.warning("abandoned %d task(s) that ignored cancellation", len(pending))
