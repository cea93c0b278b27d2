"""One signal contract for the whole process: SIGINT and SIGTERM always end in exit 2.

A person who presses Ctrl-C, or a supervisor that sends SIGTERM, asks splitbrain to
stop. That request is never lost and never costs what must not be skipped:

- While nothing needs finishing (reading the spec, setting up, clients running, a check
  running), the first signal stops the work at once. Outside the event loop it raises
  KeyboardInterrupt, as Ctrl-C always does; while the loop runs it cancels the loop's
  main task instead, because an exception raised inside an event-loop callback (uvloop's
  resolver, for one) is swallowed and the signal would be lost.
- While something must finish (the teardown, writing the results and the report), a
  signal is remembered and that work completes; a second is still only remembered.
- A third signal, whatever is running, exits at once (exit 2), pointing at
  ``splitbrain cleanup`` for whatever the run could not remove.
- Every signal is counted, so the command ends with exit 2 whatever it was doing, and a
  verdict reached before the signal is kept, marked as interrupted.

The first signal in a phase acts at most once: after it, the work unwinds to its
``finally`` blocks without a second KeyboardInterrupt cutting them short.

The KeyboardInterrupt a signal causes is a ``SignalInterrupt``, so that code running
other people's code (the interpreter, around a client) can tell it from a
KeyboardInterrupt that code raised itself, which is that code's crash (``from_signal``).

``STOP`` is the process's one instance; the command line installs it first thing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import EXIT_UNKNOWN

if TYPE_CHECKING:  # asyncio is imported where it is used: this module loads first of all
    import asyncio

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
FORCE_AFTER = 3
"""The signal that exits at once, even in the middle of a teardown."""


class SignalInterrupt(KeyboardInterrupt):
    """The KeyboardInterrupt raised for a signal by a ``StopRequests``."""


def from_signal(error: KeyboardInterrupt) -> bool:
    """Whether ``error`` may come from a signal rather than from the code that raised it.

    Under a ``StopRequests``'s handler a signal's is a ``SignalInterrupt``, and inside
    the event loop a signal raises nothing at all (it cancels the main task). Under any
    other handler (Python's default raises a plain KeyboardInterrupt on Ctrl-C) the two
    cannot be told apart, and the error is taken as a signal's: ending a run that a
    client's own KeyboardInterrupt crashed is better than a run that ignores Ctrl-C.
    """
    if isinstance(error, SignalInterrupt):
        return True
    handler = signal.getsignal(signal.SIGINT)
    return not isinstance(getattr(handler, "__self__", None), StopRequests)


def _say(line: str) -> None:
    """Writes a line to stderr from a signal handler: straight to the file descriptor,
    since the interrupted code may be half-way through writing to ``sys.stderr``."""
    with suppress(OSError):
        os.write(2, (line + "\n").encode())


class StopRequests:
    """The signals received so far, and what the next one does."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self._depth = 0
        self._pid = 0
        self._saved: dict[int, Any] = {}
        self._armed = True
        """The next signal stops the work (raises, or cancels the loop's main task)."""
        self._finishing: str | None = None
        """What must complete before the process stops (e.g. "the teardown")."""
        self._task: asyncio.Task[Any] | None = None
        self._in_loop = False
        self._missed = False
        """A signal came while the event loop ran with no main task to cancel."""
        self._exiting = False
        self._starting = False

    @property
    def received(self) -> int | None:
        """The first signal received, if any."""
        return self.signals[0] if self.signals else None

    def describe(self) -> str:
        """The signals received, for messages: "SIGTERM", "SIGINT, SIGINT"."""
        return ", ".join(signal.Signals(s).name for s in self.signals)

    @contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Handles SIGINT and SIGTERM inside the block (nested blocks share the outer
        one); the previous handlers come back after it. A no-op off the main thread,
        where Python cannot set handlers."""
        if self._depth == 0 and threading.current_thread() is not threading.main_thread():
            yield self
            return
        if self._depth == 0:
            self.signals = []
            self._armed, self._finishing, self._missed = True, None, False
            self._pid = os.getpid()
            self._saved = {s: signal.signal(s, self._handle) for s in SIGNALS}
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                for s, handler in self._saved.items():
                    signal.signal(s, handler)

    def install(self, *, starting: bool = False) -> None:
        """Handles SIGINT and SIGTERM from now until the process exits. ``starting``:
        the process is still loading the command line's code, so a signal is only
        remembered until ``install()`` is called again, from ``main``."""
        self._starting = starting
        if self._depth == 0:
            self._depth = 1
            self._pid = os.getpid()
            for s in SIGNALS:
                signal.signal(s, self._handle)

    def exiting(self) -> None:
        """The process is about to exit with a code chosen from ``signals``: a signal now
        exits at once with 2, as the contract says, instead of changing nothing."""
        self._exiting = True

    def arm(self) -> None:
        """From now on the next signal stops the work (a check, say)."""
        self._finishing = None
        self._armed = True

    def finish_first(self, what: str) -> None:
        """From now on signals are remembered and ``what`` completes; call it first thing
        in the ``finally`` that must not be cut short."""
        self._finishing = what

    def _handle(self, signum: int, frame: object) -> None:
        if os.getpid() != self._pid:
            # A forked child (a checker's worker) inherited this handler: it stops as it
            # would by default, and its parent, which got the signal too, does the rest.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signals.append(signum)
        name = signal.Signals(signum).name
        if self._exiting:
            for stream in (sys.stdout, sys.stderr):
                with suppress(Exception):
                    stream.flush()
            os._exit(EXIT_UNKNOWN)
        if len(self.signals) >= FORCE_AFTER:
            _say(f"splitbrain: {name} again: exiting at once; if a run was under way, "
                 "`splitbrain cleanup` removes what it left behind")
            os._exit(EXIT_UNKNOWN)
        if self._starting:
            return
        if self._finishing is not None:
            _say(f"splitbrain: {name}: finishing {self._finishing} first "
                 f"(signal {FORCE_AFTER} times to exit at once)")
            return
        if not self._armed:
            return
        self._armed = False
        if self._in_loop:
            task = self._task
            if task is None or task.done():
                self._missed = True
            else:
                task.get_loop().call_soon_threadsafe(task.cancel)
            return
        raise SignalInterrupt

    @contextmanager
    def event_loop(self) -> Iterator[None]:
        """Wraps running an event loop whose main coroutine is ``cancelling(...)``: a
        signal cancels that task instead of raising inside the loop, and the block ends
        with a ``SignalInterrupt`` as it would outside a loop."""
        import asyncio

        self._in_loop, self._missed = True, False
        try:
            yield
        except asyncio.CancelledError:
            if not self.signals:
                raise
            raise SignalInterrupt from None
        finally:
            self._in_loop = False
        if self._missed:
            raise SignalInterrupt

    async def cancelling(self, main: Coroutine[Any, Any, T]) -> T:
        """Runs ``main`` as the task a signal cancels."""
        import asyncio

        self._task = asyncio.current_task()
        try:
            if self._missed:  # a signal came while the loop was starting
                raise asyncio.CancelledError
            return await main
        finally:
            self._task = None
            main.close()


STOP = StopRequests()
"""The process's signal contract."""


def started_as_command() -> bool:
    """Whether this process is the ``splitbrain`` command (its console script, or
    ``python -c "from harness.cli import main; main()"``) rather than a program that
    imports splitbrain: only then does the contract begin before ``main`` runs."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 == "-c" or os.path.basename(argv0) == "splitbrain"
