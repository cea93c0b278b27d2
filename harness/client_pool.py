"""The clients a run has open: opened with backoff, called off the hot path with a bound,
and closed at the end whatever state they are in.

A client is user code, and opening or closing one is a call into it like any other: each
runs as a task of its own bounded by the op timeout (``harness.stuck.bounded``), so a
node that accepts connections but never answers, or a client whose ``close`` hangs,
cannot keep the run going past its time limit. The pool keeps every client it opened
until it is closed, so that clients of workers the run abandoned are closed too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from harness.client import Client
from harness.stuck import ClientFailed, bounded

T = TypeVar("T")

_OPEN_BACKOFF = (0.05, 1.0)
"""First and longest wait before retrying a client that could not be opened."""


def error_text(e: BaseException) -> str:
    """What a client (or a nemesis) raised, as the error of its op: ``Type: message``."""
    if isinstance(e, ClientFailed):
        e = e.original
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class ClientPool:
    """The clients one interpreter opened and has not closed yet, and its calls into
    them that run as tasks of their own (the stall guard asks about those)."""

    def __init__(self, open_client: Callable[[str], Awaitable[Client]], op_timeout: float,
                 log: logging.Logger) -> None:
        self.open_client = open_client
        self.op_timeout = op_timeout
        self.log = log
        self._open: set[Client] = set()
        self._calls: set[asyncio.Task[Any]] = set()
        """Client calls running as tasks of their own (``harness.stuck.bounded``)."""

    def in_call(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` is one of this pool's bounded client calls."""
        return task in self._calls

    async def call(self, call: Awaitable[T]) -> T:
        """``call``'s result, bounded: ``TimeoutError`` when it ran past the op timeout
        or blocked the loop, ``ClientFailed`` for a BaseException it raised."""
        return await bounded(self._calls, self.op_timeout, call)

    async def open(self, node: str) -> Client:
        """A client to ``node``, in one bounded attempt (it raises what the attempt did)."""
        client = await self.call(self.open_client(node))
        self._open.add(client)
        return client

    async def open_by(self, node: str, deadline: float) -> Client | None:
        """A client to ``node``, retrying with backoff; None if the loop time
        ``deadline`` passes first."""
        loop = asyncio.get_running_loop()
        backoff, longest = _OPEN_BACKOFF
        while True:
            try:
                return await self.open(node)
            except Exception as e:
                self.log.debug("cannot open a client to %s: %s", node, error_text(e))
                if loop.time() + backoff >= deadline:
                    return None
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, longest)

    async def close(self, client: Client) -> None:
        """Closes a client, never letting a broken one stop the run."""
        self._open.discard(client)
        try:
            await self.call(client.close())
        except Exception as e:
            self.log.debug("closing a client failed: %s", error_text(e))

    async def close_all(self) -> None:
        """Closes every client still open (those of abandoned workers included)."""
        for client in list(self._open):
            await self.close(client)
