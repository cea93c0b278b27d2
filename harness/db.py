"""The DB protocol (how a system is installed on a node) and its optional capabilities.

As in Jepsen, capabilities such as kill/start or pause/resume are separate protocols
checked at run time with ``isinstance``: a nemesis uses a capability only where the
system has it, and says so when a requested fault is unsupported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from harness.context import Test


@runtime_checkable
class DB(Protocol):
    def setup(self, test: Test, node: str) -> None:
        """Installs and starts the system on ``node``; returns once it serves."""

    def teardown(self, test: Test, node: str) -> None:
        """Stops the system and removes its state on ``node``."""


@runtime_checkable
class Killable(Protocol):
    def kill(self, test: Test, node: str) -> None:
        """Kills the system's processes on ``node`` abruptly (SIGKILL)."""

    def start(self, test: Test, node: str) -> None:
        """Starts the system on ``node`` again after a kill; a no-op if it runs."""


@runtime_checkable
class Pausable(Protocol):
    def pause(self, test: Test, node: str) -> None: ...

    def resume(self, test: Test, node: str) -> None: ...


@runtime_checkable
class Primaries(Protocol):
    def primaries(self, test: Test) -> list[str]:
        """The nodes that currently believe they lead."""


@runtime_checkable
class LogFiles(Protocol):
    def log_files(self, test: Test, node: str) -> list[str]:
        """Paths on ``node`` to copy into ``store/.../nodes/<node>/`` at teardown."""


class NoopDB:
    """A DB with nothing to install: for tests of the controller and pure clients."""

    def setup(self, test: Test, node: str) -> None:
        pass

    def teardown(self, test: Test, node: str) -> None:
        pass
