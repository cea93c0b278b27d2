"""User systems whose clients misbehave, for tests (``--system tests.misbehaving:NAME``).

Each runs nothing on the nodes (``NoopDB``) and serves from n1; its adds misbehave in
one way, its reads answer. They are real clients in every way the interpreter can see.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from harness.db import NoopDB
from harness.history import Op


class MisbehavingClient:
    def __init__(self, way: str) -> None:
        self.way = way

    async def invoke(self, test: Any, op: Op) -> Op:
        if op.f == "read":
            if self.way == "ill-typed" and not op.extra.get("final"):
                return op.ok("abc")
            return op.ok(0)
        if self.way == "swallow":  # catches the watchdog's cancellation, and waits on
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass
        if self.way == "block":  # holds the event loop
            time.sleep(1000)
        if self.way == "exit":
            raise SystemExit(3)
        return op.fail("refused")  # ill-typed: adds never happen, so reads of 0 are right

    async def close(self) -> None:
        if self.way == "block-close":
            time.sleep(1000)


class MisbehavingSystem:
    recovery_time = 0.2

    def __init__(self, way: str) -> None:
        self.name = f"misbehaving-{way}"
        self.way = way

    def db(self, test: Any) -> NoopDB:
        return NoopDB()

    def serving_nodes(self, test: Any) -> list[str]:
        return test.nodes[:1]

    async def open_client(self, test: Any, node: str) -> MisbehavingClient:
        return MisbehavingClient(self.way)


def swallowing(options: dict[str, str]) -> MisbehavingSystem:
    return MisbehavingSystem("swallow")


def blocking(options: dict[str, str]) -> MisbehavingSystem:
    return MisbehavingSystem("block")


def exiting(options: dict[str, str]) -> MisbehavingSystem:
    return MisbehavingSystem("exit")


def ill_typed(options: dict[str, str]) -> MisbehavingSystem:
    return MisbehavingSystem("ill-typed")


class InterruptingCounter(MisbehavingSystem):
    """A counter in memory, shared by its clients; the first add raises
    KeyboardInterrupt from the client's own code (before applying), every other op
    works. No signal is involved: the run must take it as that op's crash."""

    def __init__(self) -> None:
        super().__init__("interrupt")
        self.value = 0
        self.interrupted = False

    async def open_client(self, test: Any, node: str) -> InterruptingCounter:  # type: ignore[override]
        return self

    async def invoke(self, test: Any, op: Op) -> Op:
        if op.f == "read":
            return op.ok(self.value)
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt("raised by the client")
        self.value += op.value
        return op.ok(op.value)

    async def close(self) -> None:
        pass


def interrupting(options: dict[str, str]) -> InterruptingCounter:
    return InterruptingCounter()
