"""The real servers behind the proxy, each with a direct read of its true count.

Each runs in the sandbox's namespace on its usual port (nothing else is there), with
its data in a temporary directory, and is stopped (and its directory removed) on close.
``read()`` asks the server itself, never through the proxy or the client under test.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio

from harness.systems.counterd.adapter import SERVER_SOURCE
from harness.systems.etcd_counter import KEY as ETCD_KEY
from harness.systems.postgres_counter import USER as PG_USER
from harness.systems.redis_counter import KEY as REDIS_KEY

HOST = "127.0.0.1"
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
"""Data directories in memory: fsyncs (etcd's, counterd's) cost nothing on a busy disk."""
STARTUP = 60.0  # seconds: a loaded machine may be slow to start etcd or PostgreSQL


class Server:
    """One server process; subclasses say how to start it and read its count."""

    name = ""
    port = 0
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"conformance-{self.name}-", dir=SCRATCH))
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    async def prepare(self) -> None:
        """Before the process starts (PostgreSQL's initdb)."""

    async def initialize(self) -> None:
        """After it answers (PostgreSQL's table)."""

    async def read(self) -> int:
        raise NotImplementedError

    async def start(self) -> Server:
        await self.prepare()
        with open(self.log, "ab") as log:
            # The kernel kills the server when the thread that started it ends, even
            # if the test process is killed: none can outlive its sandbox.
            self.proc = subprocess.Popen(["setpriv", *self.setpriv(), "--pdeathsig=KILL",
                                          "--", *self.argv()], stdout=log, stderr=log)
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                await self.initialize()
                await self.read()
                return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start:\n"
                                       f"{self.log.read_text()[-2000:]}") from None
                await asyncio.sleep(0.1)

    def setpriv(self) -> list[str]:
        """Who the server runs as (``setpriv`` options); root unless said."""
        return []

    async def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _http_json(port: int, method: str, path: str, body: Any = None) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None)
        response = conn.getresponse()
        data = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data}")
        return data
    finally:
        conn.close()


class Counterd(Server):
    name, port = "counterd", 7070

    def argv(self) -> list[str]:
        return [sys.executable, str(SERVER_SOURCE), "--variant", "durable", "--host", HOST,
                "--port", str(self.port), "--data-dir", str(self.dir / "data")]

    async def read(self) -> int:
        return int(_http_json(self.port, "GET", "/count")["count"])


class Redis(Server):
    name, port = "redis", 6379

    def argv(self) -> list[str]:
        return ["redis-server", "--bind", HOST, "--port", str(self.port), "--dir",
                str(self.dir), "--save", "", "--appendonly", "no", "--daemonize", "no"]

    async def read(self) -> int:
        client = redis.asyncio.Redis(host=HOST, port=self.port, socket_timeout=5)
        try:
            return int(await client.get(REDIS_KEY) or 0)
        finally:
            await client.aclose()


class Etcd(Server):
    name, port = "etcd", 2379

    def argv(self) -> list[str]:
        client, peer = f"http://{HOST}:{self.port}", f"http://{HOST}:{self.port + 1}"
        return ["etcd", "--name", "n1", "--data-dir", str(self.dir / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"n1={peer}"]

    async def read(self) -> int:
        reply = _http_json(self.port, "POST", "/v3/kv/range", {"key": ETCD_KEY})
        kvs = reply.get("kvs") or []
        return int(base64.b64decode(kvs[0]["value"])) if kvs else 0


def _pg_binaries() -> str:
    """The newest PostgreSQL server's programs on this machine (the test's own server)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return os.path.dirname(found[-1])


class Postgres(Server):
    name, port = "postgres", 5432
    stop_signal = signal.SIGINT  # fast shutdown: it does not wait for clients to leave

    def __init__(self) -> None:
        super().__init__()
        self.bin = _pg_binaries()
        self.data = self.dir / "data"
        self.conn: asyncpg.Connection | None = None

    def setpriv(self) -> list[str]:
        return [f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups"]

    async def prepare(self) -> None:
        shutil.chown(self.dir, PG_USER, PG_USER)
        subprocess.run([f"{self.bin}/initdb", "-D", str(self.data), "-U", PG_USER,
                        "--auth=trust", "--no-sync", "--no-instructions"],
                       user=PG_USER, group=PG_USER, check=True, capture_output=True)

    def argv(self) -> list[str]:
        return [f"{self.bin}/postgres", "-D", str(self.data), "-c", f"listen_addresses={HOST}",
                "-c", f"port={self.port}", "-c", "unix_socket_directories=",
                "-c", "fsync=off"]

    async def initialize(self) -> None:
        if self.conn is None:
            conn = await asyncpg.connect(host=HOST, port=self.port, user=PG_USER,
                                         database=PG_USER, timeout=5)
            await conn.execute("CREATE TABLE likes (n bigint NOT NULL); "
                               "INSERT INTO likes VALUES (0);")
            self.conn = conn

    async def read(self) -> int:
        assert self.conn is not None
        return int(await self.conn.fetchval("SELECT n FROM likes"))

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        await super().close()


SERVERS: dict[str, Callable[[], Server]] = {
    "counterd": Counterd, "redis": Redis, "etcd": Etcd, "postgres": Postgres}

