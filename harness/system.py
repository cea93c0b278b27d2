"""The System protocol: what a user implements to test their own service.

A system names the DB that installs it on nodes, the nodes that serve clients, and
how to open a client against one node. Systems are found by name in the registry
(``harness.registry``) or as ``package.module:Factory``; a factory takes the run's
``-o KEY=VALUE`` options and returns a System.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from harness.client import Client
    from harness.context import Test
    from harness.db import DB


@runtime_checkable
class System(Protocol):
    """``recovery_time`` (optional attribute, seconds, default 2): how long the run waits
    after healing every fault before the final reads, for the system to settle.

    ``clients`` (optional attribute): a mapping from each workload the system supports
    to ``async (test, node) -> Client`` (``harness.pairing``). Without it, the system
    serves the counter workload with ``open_client``."""

    name: str

    def db(self, test: Test) -> DB:
        """The DB that sets the system up on every node of the test."""

    def serving_nodes(self, test: Test) -> list[str]:
        """The nodes clients talk to (a single-node system serves from n1 only)."""

    async def open_client(self, test: Test, node: str) -> Client:
        """A client bound to ``node``. Raising here is retried by the interpreter."""
