"""The Client protocol: one worker's connection to one node.

``invoke`` takes an invocation and returns its completion (``op.ok(v)``, ``op.fail(e)``
or ``op.info(e)``). A definite error, such as a connection refused before anything was
sent, is ``fail``: the operation did not happen. An indefinite one (a timeout, a
connection lost mid-request) is ``info``: it may have happened. A client that raises
instead gets an ``info`` recorded by the interpreter, which is always safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test


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
