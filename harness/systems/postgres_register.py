"""PostgreSQL's clients for the register and set workloads.

The register is the one row of ``register`` (``value jsonb``, null at first); the set is
the table ``elements``, one row per element (``e jsonb PRIMARY KEY``). Both are created
with the counter's table when the database is initialised. Each write runs in its own
transaction at the system's ``isolation`` level and commits under its
``synchronous-commit`` setting, as the counter's do:

* ``write v``: ``UPDATE register SET value = v``;
* ``cas [old, new]``: ``UPDATE register SET value = new WHERE value IS NOT DISTINCT FROM
  old``; an update of no row applied nothing (the transaction is rolled back), a ``fail``;
* ``add e``: ``INSERT INTO elements VALUES (e)``; ``read``: the whole table.

Errors follow the shared rule (``harness.client``) with the counter's allowlist: an
error before the COMMIT was sent is ``fail`` (nothing commits without it); after it only
a serialization failure or deadlock is ``fail``, anything else ``info``; every read
error is ``fail``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import asyncpg

from harness.client import Request
from harness.history import Op
from harness.systems.postgres_counter import PostgresClient, PostgresOptions

if TYPE_CHECKING:
    from harness.context import Test
    from harness.pairing import ClientFactory

SCHEMA = ("CREATE TABLE register (id int PRIMARY KEY, value jsonb); "
          "INSERT INTO register VALUES (0, NULL); "
          "CREATE TABLE elements (e jsonb PRIMARY KEY);")
"""Run once when the database is initialised (``PostgresDB.initialize``)."""

_WRITES = {
    ("register", "write"): "UPDATE register SET value = $1::jsonb WHERE id = 0",
    ("register", "cas"): ("UPDATE register SET value = $2::jsonb "
                          "WHERE id = 0 AND value IS NOT DISTINCT FROM $1::jsonb"),
    ("set", "add"): "INSERT INTO elements VALUES ($1::jsonb)",
}


class PostgresRegisterClient(PostgresClient):
    """The register (``kind`` "register") or the set (``kind`` "set")."""

    def __init__(self, kind: str, options: PostgresOptions, endpoint: tuple[str, int]) -> None:
        super().__init__(options, endpoint)
        self.kind = kind
        self.what = f"postgres {kind}"

    def knows(self, f: str) -> bool:
        return f == "read" or (self.kind, f) in _WRITES

    async def _run(self, op: Op, conn: asyncpg.Connection, request: Request) -> Op:
        if op.f == "read":
            return op.ok(await self._read(conn))
        return await self._write(op, conn, request)

    async def _read(self, conn: asyncpg.Connection) -> Any:
        if self.kind == "set":
            return sorted(json.loads(e) for e in await conn.fetchval(
                "SELECT coalesce(array_agg(e::text), '{}') FROM elements"))
        value = await conn.fetchval("SELECT value FROM register WHERE id = 0")
        return None if value is None else json.loads(value)

    async def _write(self, op: Op, conn: asyncpg.Connection, request: Request) -> Op:
        # null is SQL NULL (the register's initial value), not JSON's null.
        args = [None if v is None else json.dumps(v)
                for v in (op.value if op.f == "cas" else [op.value])]

        async def write() -> Op | None:
            status = await conn.execute(_WRITES[self.kind, op.f], *args)
            if op.f == "cas" and status == "UPDATE 0":
                return op.fail("cas: the value differed")
            return None

        return await self._committed(op, conn, request, write)


def clients(system: Any) -> dict[str, ClientFactory]:
    """The register and set clients of a postgres system (its ``options`` are
    postgres's)."""

    def factory(kind: str) -> ClientFactory:
        async def open_client(test: Test, node: str) -> PostgresRegisterClient:
            endpoint = test.remote.endpoint(node, system.options.port)
            return PostgresRegisterClient(kind, system.options, endpoint)
        return open_client

    return {"register": factory("register"), "set": factory("set")}
