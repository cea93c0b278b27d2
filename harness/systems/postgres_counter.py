"""PostgreSQL as a "likes" counter: one row, updated the ways applications do it.

A fresh cluster (``initdb``) runs on n1 as the ``postgres`` user, its data in the node's
workdir, listening on the node's address only. The count is the one row of ``likes``.
The options choose the design:

* ``client=update`` adds with ``UPDATE likes SET n = n + $1``: the row lock makes it
  safe at any isolation level. ``client=read-modify-write`` reads ``n`` and writes back
  ``n + delta`` in one transaction, which is safe only where the isolation level forbids
  the lost update (``repeatable-read`` and ``serializable`` abort one of two racing
  transactions); at ``read-committed``, PostgreSQL's default, it loses updates.
* ``synchronous-commit=off`` acknowledges a commit before its WAL record is flushed, so
  a crash of the server can lose acknowledged commits (PostgreSQL documents the window as
  up to three times ``wal_writer_delay``).

Errors are classified as Jepsen's PostgreSQL clients do: no connection, an error before
COMMIT, or an aborted transaction (serialization failure) is ``fail``; a timeout or a
lost connection while the COMMIT (or the single UPDATE) may have run is ``info``.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from harness.errors import EnvironmentFailure
from harness.history import Op
from harness.systems.daemon_db import DaemonDB, ServerPaths
from harness.systems.options import choices, seconds

if TYPE_CHECKING:
    from harness.context import Test

PORT = 5432
USER = "postgres"  # the operating-system user the server runs as, and the database role
ISOLATION = {"read-committed": "read_committed", "repeatable-read": "repeatable_read",
             "serializable": "serializable"}
CHOICES = {"client": ("update", "read-modify-write"), "isolation": tuple(ISOLATION),
           "synchronous_commit": ("on", "off")}


@dataclass(frozen=True)
class PostgresOptions:
    client: str = "update"
    isolation: str = "read-committed"
    synchronous_commit: str = "on"
    timeout: float = 2.0  # seconds per op

    @classmethod
    def parse(cls, options: dict[str, str]) -> PostgresOptions:
        """Validates the options; other keys are left to the parts that own them."""
        given = {key.replace("-", "_"): value for key, value in options.items()}
        values: dict[str, Any] = choices("postgres", given, CHOICES)
        if "timeout" in given:
            values["timeout"] = seconds("postgres", "timeout", given["timeout"])
        return cls(**values)


def binaries(test: Test, node: str) -> str:
    """The directory of the newest PostgreSQL server's programs installed on ``node``."""
    listed = test.remote.run(node, ["sh", "-c", "ls -d /usr/lib/postgresql/*/bin/postgres"],
                             check=False).stdout.split()
    found = sorted((p for p in listed if p.split("/")[4].isdigit()),
                   key=lambda p: int(p.split("/")[4]))
    if not found:
        raise EnvironmentFailure(f"node {node} lacks PostgreSQL (apt-get install postgresql)")
    return posixpath.dirname(found[-1])


class PostgresDB(DaemonDB):
    """A PostgreSQL cluster on n1; Killable, Pausable, Primaries and LogFiles."""

    server = "postgres"

    def __init__(self, options: PostgresOptions) -> None:
        self.options = options
        self.bin_dir = ""  # found on the node in prepare()

    def ports(self, test: Test) -> list[int]:
        return [PORT]

    def nodes(self, test: Test) -> list[str]:
        return test.nodes[:1]

    def primaries(self, test: Test) -> list[str]:
        return test.nodes[:1]

    def prepare(self, test: Test, node: str, paths: ServerPaths) -> None:
        run = test.remote.run
        self.bin_dir = binaries(test, node)
        run(node, ["chown", f"{USER}:{USER}", paths.data_dir])
        run(node, ["chmod", "700", paths.data_dir])
        run(node, self._as_user("initdb", "-D", paths.data_dir, "-U", USER, "--auth=trust",
                                "--no-sync", "--no-instructions"))
        # Clients come from the controller, through the bridge: let them in.
        hba = posixpath.join(paths.data_dir, "pg_hba.conf")
        run(node, ["sh", "-c", f"echo 'host all all 0.0.0.0/0 trust' >> '{hba}'"])

    def argv(self, test: Test, node: str, paths: ServerPaths) -> list[str]:
        return self._as_user(
            "postgres", "-D", paths.data_dir,
            "-c", f"listen_addresses={test.remote.peer_address(node)}",
            "-c", f"port={PORT}", "-c", "unix_socket_directories=",
            "-c", f"synchronous_commit={self.options.synchronous_commit}")

    def ready(self, test: Test, node: str) -> bool:
        found = test.remote.run(node, [posixpath.join(self.bin_dir, "pg_isready"), "-q", "-h",
                                       test.remote.peer_address(node), "-p", str(PORT)],
                                check=False)
        return found.returncode == 0

    def initialize(self, test: Test, node: str) -> None:
        test.remote.run(node, self._as_user(
            "psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", test.remote.peer_address(node), "-p",
            str(PORT), "-U", USER, "-c",
            "CREATE TABLE likes (n bigint NOT NULL); INSERT INTO likes VALUES (0);"))

    def _as_user(self, program: str, *args: str) -> list[str]:
        return ["runuser", "-u", USER, "--", posixpath.join(self.bin_dir, program), *args]


class PostgresCounterClient:
    """A worker's connection to n1, opened when needed and dropped after any doubt."""

    def __init__(self, options: PostgresOptions, endpoint: tuple[str, int]) -> None:
        self.options, self.endpoint = options, endpoint
        self.conn: asyncpg.Connection | None = None

    async def invoke(self, test: Test, op: Op) -> Op:
        if op.f not in ("add", "read"):
            return op.fail(f"the postgres counter has no operation {op.f!r}")
        try:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(host=self.endpoint[0], port=self.endpoint[1],
                                                  user=USER,
                                                  database=USER,
                                                  timeout=self.options.timeout / 2)
        except (TimeoutError, OSError, asyncpg.PostgresError) as e:
            return op.fail(f"no connection: {type(e).__name__}: {e}")
        state = {"may_have_committed": False}
        try:
            return await asyncio.wait_for(self._run(op, self.conn, state), self.options.timeout)
        except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError) as e:
            return op.fail(f"aborted: {e}")  # rolled back: nothing happened
        except asyncpg.PostgresError as e:
            return op.fail(f"{type(e).__name__}: {e}")
        except (TimeoutError, OSError, asyncpg.InterfaceError) as e:
            self.conn.terminate()
            self.conn = None
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            return op.info(why) if op.f == "add" and state["may_have_committed"] \
                else op.fail(why)

    async def _run(self, op: Op, conn: asyncpg.Connection, state: dict[str, bool]) -> Op:
        if op.f == "read":
            return op.ok(int(await conn.fetchval("SELECT n FROM likes")))
        if self.options.client == "update":
            state["may_have_committed"] = True  # one statement: it commits as it runs
            await conn.execute("UPDATE likes SET n = n + $1", op.value)
            return op.ok(op.value)
        transaction = conn.transaction(isolation=ISOLATION[self.options.isolation])
        await transaction.start()
        try:
            n = await conn.fetchval("SELECT n FROM likes")
            await conn.execute("UPDATE likes SET n = $1", n + op.value)
        except asyncpg.PostgresError:
            await transaction.rollback()
            raise
        state["may_have_committed"] = True
        await transaction.commit()
        return op.ok(op.value)

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.terminate()


class PostgresSystem:
    name = "postgres"
    recovery_time = 1.0

    def __init__(self, options: PostgresOptions) -> None:
        self.options = options
        self._db = PostgresDB(options)

    def db(self, test: Test) -> PostgresDB:
        return self._db

    def serving_nodes(self, test: Test) -> list[str]:
        return self._db.nodes(test)

    async def open_client(self, test: Test, node: str) -> PostgresCounterClient:
        return PostgresCounterClient(self.options, test.remote.endpoint(node, PORT))


def make_system(options: dict[str, str]) -> PostgresSystem:
    """The registry's factory: ``-o`` options in, a validated system out."""
    return PostgresSystem(PostgresOptions.parse(options))
