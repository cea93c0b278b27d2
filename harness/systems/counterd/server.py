"""counterd: a small HTTP/JSON counter service with deliberately different guarantees.

This file is shipped onto every node and run there with any Python 3.8+, so it uses the
standard library only. One process serves one node. A person can drive it with curl:

    GET  /health              -> 200 {"ok": true, "node": "n1", "variant": "durable",
                                      "role": "primary", "count": 12}
                                 (a replica adds "synced_ago": seconds since its last
                                  copy of the primary's count, null before the first)
    GET  /count               -> 200 {"count": 12}
    POST /add {"delta": 1}    -> 200 {"ok": true}

Errors are JSON objects ``{"error": "..."}``. The status code says whether the add may
have happened, which is what a test client needs to classify it:

    400  malformed request: nothing happened
    404  unknown path
    503  definitely not applied (a replica could not even connect to its primary)
    504  maybe applied (a replica's forwarded add got no answer from the primary)

Variants (``--variant``):

    naive          an add reads the count, sleeps ``--window`` seconds, then writes back
                   count + delta: two concurrent adds lose one (no fault needed)
    atomic         adds serialized by a lock; state in memory, so a crash loses it all
    durable        atomic, and every add is appended to ``DATA_DIR/counter.log`` and
                   fsynced before it is acknowledged; the log is replayed on start
    async-replica  the node without ``--primary`` is a durable primary; a node started with
                   ``--primary HOST:PORT`` is a replica: it forwards adds to the primary
                   (with ``--forward-timeout``, longer than a client's, so a partition makes
                   the client time out) and answers reads from its own copy, which it
                   refreshes from the primary every ``--sync-interval`` seconds. Reads on a
                   replica are therefore stale, and converge after a heal or a restart.

The replica pulls the primary's count rather than the primary pushing it: the effect on
staleness is the same, and the primary then needs no list of its replicas.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VARIANTS = ("naive", "atomic", "durable", "async-replica")
LOG_NAME = "counter.log"


class AddRejected(Exception):
    """An add that did not succeed; ``status`` tells the client whether it may have."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NaiveCounter:
    """Read, wait, write back: a lost update whenever two adds overlap."""

    role = "primary"

    def __init__(self, window: float) -> None:
        self.window = window
        self.count = 0

    def add(self, delta: int) -> None:
        seen = self.count
        time.sleep(self.window)
        self.count = seen + delta

    def read(self) -> int:
        return self.count


class AtomicCounter:
    """Serialized adds, kept in memory only."""

    role = "primary"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def add(self, delta: int) -> None:
        with self.lock:
            self.count += delta

    def read(self) -> int:
        return self.count


class DurableCounter(AtomicCounter):
    """Serialized adds, each fsynced to an append-only log before it is acknowledged.

    The log holds one delta per line. A line cut short by a kill in the middle of a
    write was never acknowledged, so replay drops it and truncates the file there;
    otherwise the next append would glue onto it and corrupt a later add.
    """

    def __init__(self, data_dir: str) -> None:
        super().__init__()
        os.makedirs(data_dir, exist_ok=True)
        path = os.path.join(data_dir, LOG_NAME)
        self.count = replay_log(path)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.fsync(self.fd)
        dir_fd = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the log's directory entry must survive too
        finally:
            os.close(dir_fd)

    def add(self, delta: int) -> None:
        with self.lock:
            os.write(self.fd, b"%d\n" % delta)
            os.fsync(self.fd)
            self.count += delta


def replay_log(path: str) -> int:
    """The sum of the log's complete lines; truncates a torn last line away."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        os.truncate(path, complete)
    return sum(int(line) for line in data[:complete].splitlines() if line.strip())


class ReplicaCounter:
    """Forwards adds to the primary; serves reads from a copy refreshed in the background."""

    role = "replica"

    def __init__(self, primary: str, forward_timeout: float, sync_interval: float) -> None:
        host, _, port = primary.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"counterd: --primary expects HOST:PORT, got {primary!r}")
        self.host, self.port = host, int(port)
        self.forward_timeout = forward_timeout
        self.sync_interval = sync_interval
        self.count = 0
        self.synced_at: float | None = None
        threading.Thread(target=self._sync_forever, name="sync", daemon=True).start()

    def add(self, delta: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.forward_timeout)
        try:
            try:
                conn.connect()
            except OSError as e:  # nothing reached the primary: definitely not applied
                raise AddRejected(503, f"primary unreachable: {e}") from None
            try:
                body = json.dumps({"delta": delta})
                conn.request("POST", "/add", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as e:  # sent: it may have applied
                raise AddRejected(504, f"primary did not answer: {e}") from None
        finally:
            conn.close()
        if response.status != 200:
            try:
                message = json.loads(payload)["error"]
            except (ValueError, KeyError, TypeError):
                message = payload.decode("utf-8", "replace")[:200]
            raise AddRejected(response.status, f"primary: {message}")

    def read(self) -> int:
        return self.count

    def health(self) -> dict:
        ago = None if self.synced_at is None else round(time.monotonic() - self.synced_at, 3)
        return {"synced_ago": ago}

    def _sync_forever(self) -> None:
        """Copies the primary's count, ignoring failures: a partition just leaves it stale."""
        timeout = max(0.2, min(1.0, 3 * self.sync_interval))
        while True:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                conn.request("GET", "/count")
                response = conn.getresponse()
                if response.status == 200:
                    self.count = int(json.loads(response.read())["count"])
                    self.synced_at = time.monotonic()
            except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
                pass
            finally:
                conn.close()
            time.sleep(self.sync_interval)


class Handler(BaseHTTPRequestHandler):
    """One request per connection (HTTP/1.0), so a client never reuses a dead socket."""

    server: CounterServer
    server_version = "counterd"

    def do_GET(self) -> None:
        counter = self.server.counter
        if self.path == "/count":
            self.reply(200, {"count": counter.read()})
        elif self.path == "/health":
            self.reply(200, {
                "ok": True, "node": self.server.node, "variant": self.server.variant,
                "role": counter.role, "count": counter.read(),
                **(counter.health() if isinstance(counter, ReplicaCounter) else {}),
            })
        else:
            self.reply(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/add":
            self.reply(404, {"error": f"no such path {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            delta = json.loads(self.rfile.read(length))["delta"]
        except (ValueError, KeyError, TypeError):
            self.reply(400, {"error": 'expected a JSON body {"delta": INTEGER}'})
            return
        if not isinstance(delta, int) or isinstance(delta, bool):
            self.reply(400, {"error": f"delta must be an integer, got {delta!r}"})
            return
        try:
            self.server.counter.add(delta)
        except AddRejected as e:
            self.reply(e.status, {"error": e.message})
            return
        except OSError as e:  # e.g. the disk refused the log write: maybe applied
            self.reply(500, {"error": f"add failed: {e}"})
            return
        self.reply(200, {"ok": True})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class CounterServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops SYNs under a few dozen concurrent clients, and a
    # dropped SYN costs the client a one-second retransmit: a spurious timeout.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], counter, node: str, variant: str,
                 verbose: bool) -> None:
        super().__init__(address, Handler)
        self.counter = counter
        self.node = node
        self.variant = variant
        self.verbose = verbose


def make_counter(args: argparse.Namespace):
    if args.variant == "naive":
        return NaiveCounter(args.window)
    if args.variant == "atomic":
        return AtomicCounter()
    if args.variant == "async-replica" and args.primary:
        return ReplicaCounter(args.primary, args.forward_timeout, args.sync_interval)
    return DurableCounter(args.data_dir)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="counterd", description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", choices=VARIANTS, required=True)
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, default=7070)
    p.add_argument("--data-dir", default="counterd-data", help="where durable logs live")
    p.add_argument("--node", default="", help="this node's name, for /health and logs")
    p.add_argument("--primary", metavar="HOST:PORT",
                   help="async-replica: run as a replica of this primary")
    p.add_argument("--window", type=float, default=0.005,
                   help="naive: seconds between reading and writing back the count")
    p.add_argument("--forward-timeout", type=float, default=5.0,
                   help="replica: seconds to wait for the primary on a forwarded add")
    p.add_argument("--sync-interval", type=float, default=0.15,
                   help="replica: seconds between copies of the primary's count")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    counter = make_counter(args)
    try:
        server = CounterServer((args.host, args.port), counter, args.node, args.variant,
                               args.verbose)
    except OSError as e:
        where = f"{args.host}:{args.port}"
        raise SystemExit(f"counterd: cannot listen on {where}: {e.strerror}") from None
    print(f"counterd {args.node or '-'} variant={args.variant} role={counter.role} "
          f"listening on {args.host}:{args.port} count={counter.read()}",
          file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
