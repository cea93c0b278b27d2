"""The Client protocol, and the one rule that decides ``ok``, ``fail`` or ``info``.

``invoke`` takes an invocation and returns its completion. A checker believes a ``fail``
absolutely: the operation did not happen. So a client may say ``fail`` only when it
*knows* that, and a wrong ``fail`` makes a correct system look broken. The rule, for the
bundled clients and for your own:

* ``ok``: the reply says the operation happened (a read: with its value).
* ``fail``, before the request can have left the client: no connection could be opened
  (refused, unreachable, the connect timed out), or anything raised before the first
  byte of the request could be written. Nothing reached the server.
* once a request with effects may have left the client, ``fail`` only for an error on
  the client's explicit **allowlist of definite errors**: replies in which the server
  says it did not apply the request (PostgreSQL's serialization failure and deadlock,
  an HTTP 503 that means "not applied", Redis's error replies). Everything else is
  ``info``: timeouts, resets, closed connections, unexpected replies, and errors a
  library merely *calls* failures (asyncpg's ``ConnectionDoesNotExistError`` is a
  ``PostgresError``, raised when the connection dies after the server may have
  committed).
* a request without effects (a read) fails on any error: whatever happened to it, it
  changed nothing, so "it did not happen" is true. Recording it as ``info`` would only
  leave the linearizability checker an op that stays open forever.

In code: make one :class:`Request` per request, call ``request.sending()`` just before
anything of a request with effects may be written (for a connection library that
connects and sends in one call, when the connection is up), and turn any exception
into the completion with ``request.completion(error)``. Catch ``Exception`` only, never
``asyncio.CancelledError``: the interpreter cancels an op it timed out and records it
as ``info`` itself. A client that raises also gets an ``info``, which is always safe.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test

Allowlist = Callable[[BaseException], str | None]
"""A client's definite errors: the error text for one that proves the request was not
applied, or None for any other error (which then makes the op ``info``)."""


@runtime_checkable
class Client(Protocol):
    async def invoke(self, test: Test, op: Op) -> Op: ...

    async def close(self) -> None: ...


class NoopClient:
    """Acknowledges every operation at once; reads return None."""

    async def invoke(self, test: Test, op: Op) -> Op:
        return op.ok(op.value)

    async def close(self) -> None:
        pass


class ErrorReply(Exception):
    """The server answered, with an error; its text is the error recorded. Whether it is
    definite is still the allowlist's call: some errors are sent after applying."""


def nothing_is_definite(error: BaseException) -> str | None:
    """The allowlist of a client whose server never says "not applied"."""
    return None


@dataclass
class Request:
    """One request made for ``op``, and whether it may have left the client.

    ``effects`` is False for a request that changes nothing (a read, or the read half of
    a read-modify-write); ``definite`` is the client's allowlist.
    """

    op: Op
    definite: Allowlist = nothing_is_definite
    effects: bool = True
    may_have_left: bool = False

    def sending(self) -> None:
        """From now on the request may have reached the server."""
        self.may_have_left = True

    def completion(self, error: BaseException) -> Op:
        return classify(self.op, error, may_have_left=self.may_have_left,
                        effects=self.effects, definite=self.definite)


def classify(op: Op, error: BaseException, *, may_have_left: bool, effects: bool = True,
             definite: Allowlist = nothing_is_definite) -> Op:
    """The completion of ``op`` whose request ended in ``error``: the rule above."""
    reason = definite(error)  # the allowlist's words, whenever the error is on it
    if not effects or not may_have_left:
        return op.fail(reason or describe(error, connecting=not may_have_left))
    if reason is not None:
        return op.fail(reason)
    return op.info(describe(error))


def describe(error: BaseException, *, connecting: bool = False) -> str:
    """A short error text that groups well in summaries: ``connection-refused``,
    ``timeout`` (``connect-timeout`` while connecting), or ``Type: message``."""
    chain = _chain(error)
    if any(isinstance(e, OSError) and e.errno == errno.ECONNREFUSED for e in chain):
        return "connection-refused"
    if isinstance(error, TimeoutError):
        return "connect-timeout" if connecting else "timeout"
    if isinstance(error, ErrorReply):
        return str(error)[:200]
    message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _chain(error: BaseException) -> list[BaseException]:
    """The error and what caused it (libraries wrap the OSError that says "refused")."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
