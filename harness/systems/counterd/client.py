"""The counterd client: one request per op, on a connection of its own.

Classified by the shared rule (``harness.client``): a connection that could not be
opened is ``fail``; after that an ``add`` is ``fail`` only on counterd's definite
errors, a 4xx reply (the request was refused as it stood) or a 503 (a replica could not
reach the primary and says it did not forward the add). A timeout, a reset or a close
after sending, and any other 5xx (a 504 is a forward that may have landed) are ``info``.
A read has no effect, so every read error is a ``fail``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.client import Request
from harness.history import Op
from harness.systems.http_link import HttpError, HttpLink

if TYPE_CHECKING:
    from harness.context import Test


def definite(error: BaseException) -> str | None:
    """counterd's allowlist: the replies it sends only for adds it did not apply."""
    if isinstance(error, HttpError) and (400 <= error.status < 500 or error.status == 503):
        return str(error)
    return None


class CounterdClient:
    """A client of one counterd node, at ``base_url`` (``http://ADDRESS:PORT``)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.link = HttpLink(base_url, timeout)

    async def invoke(self, test: Test, op: Op) -> Op:
        if op.f == "add":
            return await self._add(op)
        if op.f == "read":
            return await self._read(op)
        return op.fail(f"counterd has no operation {op.f!r}")

    async def close(self) -> None:
        await self.link.close()

    async def _add(self, op: Op) -> Op:
        request = Request(op, definite)
        try:
            await self.link.request(request, "POST", "/add", {"delta": op.value})
        except Exception as e:
            return request.completion(e)
        return op.ok(op.value)

    async def _read(self, op: Op) -> Op:
        request = Request(op, effects=False)
        try:
            body = await self.link.request(request, "GET", "/count")
        except Exception as e:
            return request.completion(e)
        count = body.get("count") if isinstance(body, dict) else None
        if isinstance(count, int) and not isinstance(count, bool):
            return op.ok(count)
        return op.fail(f"unexpected reply: {str(body)[:200]}")
