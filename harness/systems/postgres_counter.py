"""PostgreSQL as a "likes" counter: one row, updated the ways applications do it.

A fresh cluster (``initdb``) runs on n1 as the ``postgres`` user, its data in the node's
workdir, listening on the node's address only (on ``port``, 5432 by default). The count
is the one row of ``likes``.
The options choose the design:

* ``client=update`` adds with ``UPDATE likes SET n = n + $1``: the row lock makes it
  safe at any isolation level. ``client=read-modify-write`` reads ``n`` and writes back
  ``n + delta`` in one transaction, which is safe only where the isolation level forbids
  the lost update (``repeatable-read`` and ``serializable`` abort one of two racing
  transactions); at ``read-committed``, PostgreSQL's default, it loses updates.
* ``synchronous-commit=off`` acknowledges a commit before its WAL record is flushed, so
  a crash of the server can lose acknowledged commits (PostgreSQL documents the window as
  up to three times ``wal_writer_delay``).

A ``kill`` leaves no trace of the server outside its data directory once the run is torn
down (:meth:`PostgresDB.teardown`), so a run's faults do not pile up on the machine.

Errors follow the shared rule (``harness.client``), as Jepsen's PostgreSQL clients do:
no connection, an error before COMMIT, or an aborted transaction (serialization failure,
deadlock) is ``fail``; anything else once the COMMIT (or the single UPDATE) may have been
sent is ``info``: a timeout, a lost connection, any other error.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import asyncpg
from pydantic import model_validator

from harness.client import Request
from harness.cluster.remote import apt_install, install_hint
from harness.daemon import stop_daemon
from harness.errors import EnvironmentFailure
from harness.history import Op
from harness.schema import no_effect
from harness.systems.daemon_db import DaemonDB, ServerPaths
from harness.systems.options import Install, Options, Port, Seconds, declares

if TYPE_CHECKING:
    from harness.context import Test

USER = "postgres"  # the operating-system user the server runs as, and the database role
ORPHANED_SEGMENT = """
set -- $(sed -n 7p "$1" 2>/dev/null)
[ $# -eq 2 ] || exit 0
awk -v key="$1" -v id="$2" '($1 == key || $1 + 4294967296 == key) && $2 == id && $7 == 0 \
    { found = 1 } END { exit !found }' /proc/sysvipc/shm && ipcrm -m "$2"
"""
"""Removes the System V segment that ``postmaster.pid`` ($1) names, if nothing is attached
to it (/proc prints the key signed, PostgreSQL unsigned)."""
ISOLATION = {"read-committed": "read_committed", "repeatable-read": "repeatable_read",
             "serializable": "serializable"}


class PostgresOptions(Options):
    """The ``-o KEY=VALUE`` options of the postgres system (``-`` and ``_`` alike)."""

    owner: ClassVar[str] = "postgres"

    client: Literal["update", "read-modify-write"] = "update"
    isolation: Literal["read-committed", "repeatable-read", "serializable"] = "read-committed"
    synchronous_commit: Literal["on", "off"] = "on"
    port: Port = 5432
    install: Install = "none"  # apt: a node without PostgreSQL gets postgresql
    timeout: Seconds = 2.0  # seconds per op

    @model_validator(mode="after")
    def _fits_the_client(self) -> PostgresOptions:
        if "isolation" in self.model_fields_set and self.client == "update":
            raise no_effect("isolation", "with client=update: its single UPDATE runs "
                            "outside a transaction of that level; use "
                            "client=read-modify-write")
        return self


def binaries(test: Test, node: str, install: str) -> str:
    """The directory of the newest PostgreSQL server's programs installed on ``node``;
    with ``install="apt"`` a node without any gets Debian's ``postgresql`` first."""
    found = _servers(test, node)
    if not found and install == "apt":
        apt_install(test.remote, node, ["postgresql"])
        found = _servers(test, node)
    if not found:
        raise EnvironmentFailure(f"node {node} lacks PostgreSQL "
                                 f"({install_hint('postgresql', install)})")
    return posixpath.dirname(found[-1])


def _servers(test: Test, node: str) -> list[str]:
    """The PostgreSQL servers installed on ``node`` (Debian's layout), oldest first."""
    listed = test.remote.run(node, ["sh", "-c", "ls -d /usr/lib/postgresql/*/bin/postgres"],
                             check=False).stdout.split()
    return sorted((p for p in listed if p.split("/")[4].isdigit()),
                  key=lambda p: int(p.split("/")[4]))


class PostgresDB(DaemonDB):
    """A PostgreSQL cluster on n1; Killable, Pausable, Primaries and LogFiles."""

    server = "postgres"

    def __init__(self, options: PostgresOptions) -> None:
        self.options = options
        self.bin_dir = ""  # found on the node in check_programs()

    def ports(self, test: Test) -> list[int]:
        return [self.options.port]

    def nodes(self, test: Test) -> list[str]:
        return test.nodes[:1]

    def primaries(self, test: Test) -> list[str]:
        return test.nodes[:1]

    def lock_files(self, test: Test, node: str, paths: ServerPaths) -> list[str]:
        return [posixpath.join(paths.data_dir, "postmaster.pid")]

    def check_programs(self, test: Test, node: str) -> None:
        self.bin_dir = binaries(test, node, self.options.install)

    def prepare(self, test: Test, node: str, paths: ServerPaths) -> None:
        run = test.remote.run
        run(node, ["chown", f"{USER}:{USER}", paths.data_dir])
        run(node, ["chmod", "700", paths.data_dir])
        run(node, self._as_user("initdb", "-D", paths.data_dir, "-U", USER, "--auth=trust",
                                "--no-sync", "--no-instructions"))
        # Clients come from the controller, through the bridge: let them in.
        hba = posixpath.join(paths.data_dir, "pg_hba.conf")
        run(node, ["sh", "-c", f"echo 'host all all 0.0.0.0/0 trust' >> '{hba}'"])

    def argv(self, test: Test, node: str, paths: ServerPaths) -> list[str]:
        """The server on the node's address only. Its dynamic shared memory segments
        (parallel query's, and one the postmaster keeps) are files in the data
        directory's ``pg_dynshmem/`` (``mmap``), not POSIX segments in /dev/shm, which
        a SIGKILLed postmaster never removes: they go with the data directory."""
        return self._as_user(
            "postgres", "-D", paths.data_dir,
            "-c", f"listen_addresses={test.remote.peer_address(node)}",
            "-c", f"port={self.options.port}", "-c", "unix_socket_directories=",
            "-c", "dynamic_shared_memory_type=mmap",
            "-c", f"synchronous_commit={self.options.synchronous_commit}")

    def teardown(self, test: Test, node: str) -> None:
        """Stops the server, then removes the System V segment a killed postmaster left.

        A postmaster always makes a small System V segment (as an interlock) and removes
        it on a clean shutdown; killed, it leaves it to the next start in the same data
        directory, which teardown is about to delete. ``postmaster.pid`` outlives a kill
        and names the segment (line 7: key and id); it is removed only if it still has
        that key and no process attached to it."""
        if node in self.nodes(test):
            paths = self.paths(test, node)
            stop_daemon(test.remote, node, paths.pidfile)
            pid_file = posixpath.join(paths.data_dir, "postmaster.pid")
            test.remote.run(node, ["sh", "-c", ORPHANED_SEGMENT, "sh", pid_file], check=False)
        super().teardown(test, node)

    def ready(self, test: Test, node: str) -> bool:
        found = test.remote.run(node, [posixpath.join(self.bin_dir, "pg_isready"), "-q", "-h",
                                       test.remote.peer_address(node), "-p",
                                       str(self.options.port)],
                                check=False)
        return found.returncode == 0

    def initialize(self, test: Test, node: str) -> None:
        from harness.systems.postgres_register import SCHEMA  # the other workloads' tables

        test.remote.run(node, self._as_user(
            "psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", test.remote.peer_address(node), "-p",
            str(self.options.port), "-U", USER, "-c",
            "CREATE TABLE likes (n bigint NOT NULL); INSERT INTO likes VALUES (0); " + SCHEMA))

    def _as_user(self, program: str, *args: str) -> list[str]:
        return ["runuser", "-u", USER, "--", posixpath.join(self.bin_dir, program), *args]


def definite(error: BaseException) -> str | None:
    """PostgreSQL's allowlist once the COMMIT (or the single UPDATE) may have been sent:
    a serialization failure (40001) or a deadlock (40P01) rolled the transaction back.
    Nothing else is definite there, not even a ``PostgresError``: asyncpg raises
    ``ConnectionDoesNotExistError`` (class 08) when the connection dies, which may be
    after the server committed."""
    if isinstance(error, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return f"aborted: {error}"
    return None


class PostgresClient:
    """A worker's connection to n1, opened when needed and dropped after any doubt.

    Classified by the shared rule (``harness.client``): an error before the COMMIT (or
    the single autocommit statement) was sent is ``fail``, since PostgreSQL commits
    nothing without it; after that only :func:`definite` errors are ``fail``, the rest
    ``info``. Subclasses say what they do with ``_run`` and which ops they know.
    """

    what = "postgres client"

    def __init__(self, options: PostgresOptions, endpoint: tuple[str, int]) -> None:
        self.options, self.endpoint = options, endpoint
        self.conn: asyncpg.Connection | None = None

    def knows(self, f: str) -> bool:
        raise NotImplementedError

    async def _run(self, op: Op, conn: asyncpg.Connection, request: Request) -> Op:
        raise NotImplementedError

    async def invoke(self, test: Test, op: Op) -> Op:
        if not self.knows(op.f):
            return op.fail(f"the {self.what} has no operation {op.f!r}")
        request = Request(op, definite, effects=op.f != "read")
        try:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(host=self.endpoint[0], port=self.endpoint[1],
                                                  user=USER, database=USER,
                                                  timeout=self.options.timeout / 2)
            async with asyncio.timeout(self.options.timeout):
                return await self._run(op, self.conn, request)
        except Exception as e:
            self._drop_unless_idle(e)
            return request.completion(e)

    async def _committed(self, op: Op, conn: asyncpg.Connection, request: Request,
                         statements: Callable[[], Awaitable[Op | None]]) -> Op:
        """Runs ``statements`` in one transaction at the system's isolation level and
        commits it, ``sending`` the request just before the COMMIT (nothing is applied
        without it). A ``fail`` the statements return (a cas whose value differed), or an
        error they raise, rolls the transaction back instead, keeping the connection."""
        transaction = conn.transaction(isolation=ISOLATION[self.options.isolation])
        await transaction.start()
        try:
            refused = await statements()
        except asyncpg.PostgresError:
            await transaction.rollback()
            raise
        if refused is not None:
            await transaction.rollback()
            return refused
        request.sending()
        await transaction.commit()
        return op.ok(op.value)

    def _drop_unless_idle(self, error: BaseException) -> None:
        """Keeps the connection only after a definite error that left it idle (an aborted
        transaction, rolled back); any other error may leave it mid-protocol."""
        conn = self.conn
        if conn is None or conn.is_closed():
            self.conn = None
        elif definite(error) is None or conn.is_in_transaction():
            conn.terminate()
            self.conn = None

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.terminate()


class PostgresCounterClient(PostgresClient):
    """The counter: one row, updated by ``UPDATE`` or read-modify-write."""

    what = "postgres counter"

    def knows(self, f: str) -> bool:
        return f in ("add", "read")

    async def _run(self, op: Op, conn: asyncpg.Connection, request: Request) -> Op:
        if op.f == "read":
            return op.ok(int(await conn.fetchval("SELECT n FROM likes")))
        if self.options.client == "update":
            request.sending()  # one statement: it commits as it runs
            await conn.execute("UPDATE likes SET n = n + $1", op.value)
            return op.ok(op.value)

        async def read_modify_write() -> None:
            n = await conn.fetchval("SELECT n FROM likes")
            await conn.execute("UPDATE likes SET n = $1", n + op.value)

        return await self._committed(op, conn, request, read_modify_write)


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

    @property
    def clients(self) -> dict[str, Any]:
        """A client per workload (``harness.pairing``): the counter's below, the
        register and set clients of ``postgres_register``."""
        from harness.systems import postgres_register  # it imports this module

        return {"counter": self.open_client, **postgres_register.clients(self)}

    async def open_client(self, test: Test, node: str) -> PostgresCounterClient:
        return PostgresCounterClient(self.options, test.remote.endpoint(node, self.options.port))


@declares(PostgresOptions)
def make_system(options: dict[str, Any]) -> PostgresSystem:
    """The registry's factory: ``-o`` options in, a validated system out."""
    return PostgresSystem(PostgresOptions.parse(options))
