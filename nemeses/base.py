"""The Nemesis protocol and its no-op implementation.

A nemesis performs fault operations (``start-partition``, ``kill``, ...) recorded in the
history under process ``"nemesis"``. ``teardown`` must heal everything the nemesis did,
whatever state it is in: it runs on every exit path, including Ctrl-C.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test


@runtime_checkable
class Nemesis(Protocol):
    fs: frozenset[str]
    """The fault operation names this nemesis performs."""

    def setup(self, test: Test) -> None: ...

    def invoke(self, test: Test, op: Op) -> Op:
        """Performs ``op`` and returns its ``info`` completion describing what was done."""

    def teardown(self, test: Test) -> None:
        """Heals every fault this nemesis may have left in place."""


class NoopNemesis:
    fs: frozenset[str] = frozenset()

    def setup(self, test: Test) -> None:
        pass

    def invoke(self, test: Test, op: Op) -> Op:
        return op.complete("info", op.value)

    def teardown(self, test: Test) -> None:
        pass
