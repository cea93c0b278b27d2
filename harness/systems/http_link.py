"""HTTP/JSON requests for the bundled clients, each on a connection of its own.

aiohttp connects and sends in one call, so the moment a request may leave the client
is taken from aiohttp itself: a trace callback marks the :class:`~harness.client.Request`
as sent as soon as its connection is up, before a byte of the request is written. An
error before that (refused, unreachable, connect timed out) is then a ``fail``; any error
after it is judged by the client's allowlist, ``info`` by default.

Every request opens a fresh connection (``force_close``) that the server closes after
answering, and is sent once (aiohttp's resending of idempotent requests is switched off),
so an error belongs to exactly one request.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import aiohttp

from harness.client import ErrorReply, Request


class HttpError(ErrorReply):
    """A reply with a status other than 200; a client's allowlist decides whether it
    proves the request was not applied."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status, self.message = status, message

    def __str__(self) -> str:
        return f"http-{self.status}: {self.message}"


class HttpLink:
    """Requests to one server at ``base_url`` (``http://ADDRESS:PORT``)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(_connected)
        trace.on_connection_reuseconn.append(_connected)
        # Connecting gets half the budget: a connect that times out sent nothing and is a
        # definite failure, while one that succeeds late still leaves time to answer.
        self.session = aiohttp.ClientSession(
            base_url, connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=timeout / 2),
            trace_configs=[trace])
        # aiohttp resends an idempotent request (a GET) once when its connection drops:
        # one op, one request, so that an error is that request's own.
        self.session._retry_connection = False

    async def request(self, request: Request, method: str, path: str,
                      payload: Any = None) -> Any:
        """The decoded JSON body of a 200 reply; raises :class:`HttpError` for another
        status, and aiohttp's (or a timeout's) errors as they come."""
        async with self.session.request(method, path, json=payload,
                                        trace_request_ctx=request) as response:
            text = await response.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        if response.status != 200:
            message = body.get("error", body) if isinstance(body, dict) else body
            raise HttpError(response.status, str(message)[:200])
        return body

    async def close(self) -> None:
        await self.session.close()


async def _connected(session: aiohttp.ClientSession, context: SimpleNamespace,
                     params: object) -> None:
    request = context.trace_request_ctx
    if isinstance(request, Request):
        request.sending()
