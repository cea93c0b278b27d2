"""The counterd client: one aiohttp session per worker, one TCP connection per request.

Every request opens a fresh connection (``force_close``) and the server closes it after
answering, so an error always belongs to exactly one request, and a failure to connect
proves nothing was sent. That is what lets ``add`` errors be classified exactly:

    connection refused, unreachable, or connect timed out   -> fail (never sent)
    400-499, or 503 (the server says it did not apply it)   -> fail
    a timeout, a reset or close after sending, other 5xx    -> info (it may have applied)

aiohttp never resends a POST; it may resend a GET once when the connection drops, which
is harmless for a read. A read has no effect, so every read error is a ``fail``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aiohttp

from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test


class CounterdClient:
    """A client of one counterd node, at ``base_url`` (``http://ADDRESS:PORT``)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url
        # Connecting gets half the budget: a connect that times out sent nothing and is a
        # definite failure, while one that succeeds late still leaves time to answer.
        self.session = aiohttp.ClientSession(
            base_url,
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=timeout / 2),
        )

    async def invoke(self, test: Test, op: Op) -> Op:
        if op.f == "add":
            return await self._add(op)
        if op.f == "read":
            return await self._read(op)
        return op.fail(f"counterd has no operation {op.f!r}")

    async def close(self) -> None:
        await self.session.close()

    async def _add(self, op: Op) -> Op:
        try:
            status, body = await self._request("POST", "/add", {"delta": op.value})
        except aiohttp.ClientConnectorError as e:
            return op.fail(_connect_error(e))
        except aiohttp.ConnectionTimeoutError:  # a TimeoutError too: must come first
            return op.fail("connect-timeout")
        except TimeoutError:
            return op.info("timeout")
        except aiohttp.ClientError as e:
            return op.info(f"connection-lost: {type(e).__name__}")
        if status == 200:
            return op.ok(op.value)
        error = f"http-{status}: {_message(body)}"
        if 400 <= status < 500 or status == 503:
            return op.fail(error)
        return op.info(error)

    async def _read(self, op: Op) -> Op:
        try:
            status, body = await self._request("GET", "/count", None)
        except aiohttp.ClientConnectorError as e:
            return op.fail(_connect_error(e))
        except aiohttp.ConnectionTimeoutError:
            return op.fail("connect-timeout")
        except TimeoutError:
            return op.fail("timeout")
        except aiohttp.ClientError as e:
            return op.fail(f"connection-lost: {type(e).__name__}")
        count = body.get("count") if isinstance(body, dict) else None
        if status == 200 and isinstance(count, int) and not isinstance(count, bool):
            return op.ok(count)
        return op.fail(f"http-{status}: {_message(body)}")

    async def _request(self, method: str, path: str, payload: Any) -> tuple[int, Any]:
        """The status and decoded JSON body (the raw text if it is not JSON)."""
        async with self.session.request(method, path, json=payload) as response:
            text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def _connect_error(e: aiohttp.ClientConnectorError) -> str:
    if isinstance(e.os_error, ConnectionRefusedError):
        return "connection-refused"
    return f"connect-failed: {e.os_error.strerror or type(e.os_error).__name__}"


def _message(body: Any) -> str:
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return str(body)[:200]

