"""``splitbrain serve``: browse a store's runs and their reports from a web browser.

A plain threaded HTTP server from the standard library, bound to the loopback address
only: a store holds histories and node logs that are nobody else's business. ``/`` is an
index of every run, newest first, with its verdict; everything else is a file of the
store, and a run's ``report.html`` is drawn on first request when the run has none yet
(runs recorded before reports existed, or killed before the end).

The server runs as whoever started it (often root), so one function, ``resolve``, decides
what a request path names: it decodes the path strictly, resolves every symlink, and
refuses anything that does not lie inside the store. The file is then opened without
following a last symlink and checked again through ``/proc/self/fd``, so a link swapped
in between cannot lead out either. Every request gets an answer: a bad path is a 4xx, and
an unexpected failure a 500, never a dropped connection.
"""

from __future__ import annotations

import html
import mimetypes
import os
import stat
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from harness.errors import UsageError
from harness.report import (
    TEMPLATES,
    read_json_object,
    relative_href,
    render_report,
    save_report,
)
from harness.report_history import short

HOST = "127.0.0.1"
MAX_PATH = 4096
"""Longest request path accepted (bytes, still percent-encoded); Linux's PATH_MAX."""
MAX_RUNS = 2000
"""Runs listed in the index at most (the newest)."""
MAX_ENTRIES = 2000
"""Entries of a directory listing at most."""
SMALL_JSON = 1 << 20
"""test.json and results.json are read for the index only up to this size."""
HEADERS = {
    # Nothing splitbrain serves needs a script; this keeps a hostile file from running one.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src data:",
    "X-Content-Type-Options": "nosniff",
}
TEXT_SUFFIXES = (".jsonl", ".log", ".edn", ".txt", ".toml")


class Refused(Exception):
    """A request path that names nothing the server may send, with its HTTP status."""

    def __init__(self, status: HTTPStatus, why: str) -> None:
        super().__init__(why)
        self.status = status


def resolve(store: Path, request_path: str) -> Path:
    """The real path inside ``store`` (itself already resolved) that a request names.

    Raises Refused for a path that is too long, badly percent-encoded, holds a NUL or a
    ``..``, or that leads outside the store once symlinks are resolved. Bytes that are
    not UTF-8 name files as the file system does (``os.fsdecode``).
    """
    path = request_path.split("?", 1)[0].split("#", 1)[0]
    if len(path) > MAX_PATH:
        raise Refused(HTTPStatus.REQUEST_URI_TOO_LONG, "the path is too long")
    if not _well_encoded(path):
        raise Refused(HTTPStatus.BAD_REQUEST, "malformed percent-encoding")
    text = unquote_to_bytes(path).decode("utf-8", "surrogateescape")  # as os.fsdecode
    if "\0" in text:
        raise Refused(HTTPStatus.BAD_REQUEST, "the path holds a NUL byte")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused(HTTPStatus.NOT_FOUND, "no such file in the store")
    joined = os.path.join(store, *parts)
    try:
        try:
            real = Path(os.path.realpath(joined, strict=True))
        except FileNotFoundError:  # a file yet to be made (a report): its directory exists
            if os.path.lexists(joined):
                raise  # a dangling symlink
            real = Path(os.path.realpath(os.path.dirname(joined), strict=True),
                        os.path.basename(joined))
    except (OSError, ValueError):  # absent, a symlink loop, a name too long
        raise Refused(HTTPStatus.NOT_FOUND, "no such file in the store") from None
    if not _inside(real, store):
        raise Refused(HTTPStatus.FORBIDDEN, "outside the store")
    return real


def _well_encoded(path: str) -> bool:
    """Every ``%`` starts a two-digit hex escape."""
    hexdigits = "0123456789abcdefABCDEF"
    i = path.find("%")
    while i >= 0:
        if len(path) < i + 3 or path[i + 1] not in hexdigits or path[i + 2] not in hexdigits:
            return False
        i = path.find("%", i + 3)
    return True


def _inside(real: Path | str, store: Path) -> bool:
    return os.path.commonpath([str(real), str(store)]) == str(store)


@dataclass
class RunEntry:
    """One run of the store as the index lists it."""

    test: str
    run: str
    path: str  # relative to the store, with forward slashes
    valid: Any  # True, False, "unknown", or None when the run has no readable verdict

    @property
    def href(self) -> str:
        return relative_href(self.path)


def list_runs(store: Path) -> list[RunEntry]:
    """Every run directory of ``store`` (one with a test.json), newest first. A run whose
    files cannot be read is still listed, without a verdict."""
    runs = []
    for test_json in store.glob("*/*/test.json"):
        run_dir = test_json.parent
        if run_dir.is_symlink() or run_dir.parent.is_symlink():
            continue  # the "latest" links name runs listed already
        if not test_json.is_file():
            continue
        name = _field(run_dir / "test.json", "name")
        valid = _field(run_dir / "results.json", "valid")
        runs.append(RunEntry(short(name if isinstance(name, str) else run_dir.parent.name,
                                   200),
                             run_dir.name, run_dir.relative_to(store).as_posix(),
                             valid if valid in (True, False, "unknown") else None))
    return sorted(runs, key=lambda r: r.run, reverse=True)


def _field(path: Path, key: str) -> Any:
    try:
        return read_json_object(path, limit=SMALL_JSON).get(key)
    except UsageError:
        return None


class _StoreHandler(BaseHTTPRequestHandler):
    """Files of the store, plus the index at ``/`` and reports drawn on demand."""

    timeout = 60  # a client that sends nothing does not hold a thread forever

    def __init__(self, *args: Any, store: Path, **kwargs: Any) -> None:
        self.store = store
        self.real_store = store.resolve()
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        try:
            self._route(body)
        except Refused as e:
            self._error(e.status, str(e))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away
        except Exception as e:  # a bug: still an answer, never a dropped connection
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR,
                        f"internal error: {type(e).__name__}")

    def _route(self, body: bool) -> None:
        real = resolve(self.real_store, self.path)
        bare = self.path.split("?", 1)[0].split("#", 1)[0]
        if real == self.real_store and bare.rstrip("/") in ("", "/index.html"):
            runs = list_runs(self.store)
            page = TEMPLATES.get_template("index.html.j2").render(
                store=str(self.store), runs=runs[:MAX_RUNS], hidden=len(runs) - MAX_RUNS)
            self._send_bytes(page.encode("utf-8", "replace"), "text/html; charset=utf-8",
                            body)
            return
        if real.name == "report.html" and not real.exists():
            drawn = self._draw_report(real.parent)
            if drawn is not None:  # the store is read-only: sent without being kept
                self._send_bytes(drawn, "text/html; charset=utf-8", body)
                return
        if real.is_dir():
            if not bare.endswith("/"):
                parts = real.relative_to(self.real_store).parts
                self._redirect("/" + "".join(quote(p, safe="", errors="surrogateescape")
                                             + "/" for p in parts))
                return
            self._send_bytes(self._listing(real, bare), "text/html; charset=utf-8", body)
            return
        self._send_file(real, body)

    def _draw_report(self, run_dir: Path) -> bytes | None:
        """Draws a run's missing report into the run directory; the page itself when
        it cannot be written there."""
        if not (run_dir / "test.json").is_file():
            raise Refused(HTTPStatus.NOT_FOUND, "no such file in the store")
        try:
            html = render_report(run_dir)
        except UsageError as e:
            raise Refused(HTTPStatus.NOT_FOUND, f"no report: {e}") from None
        try:
            save_report(run_dir, html)
        except UsageError:
            return html.encode("utf-8", "replace")
        return None

    def _send_file(self, real: Path, body: bool) -> None:
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Refused(HTTPStatus.NOT_FOUND, "no such file in the store") from None
        except OSError:
            raise Refused(HTTPStatus.FORBIDDEN, "cannot open that file") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise Refused(HTTPStatus.FORBIDDEN, "not a regular file")
        with open(fd, "rb") as f:
            if not _inside(os.path.realpath(f"/proc/self/fd/{fd}"), self.real_store):
                raise Refused(HTTPStatus.FORBIDDEN, "outside the store")
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", _content_type(real))
            self.send_header("Content-Length", str(st.st_size))
            self._end_headers()
            if body:
                _copy(f, self.wfile, st.st_size)

    def _listing(self, real: Path, url_path: str) -> bytes:
        """A directory's entries as links relative to it, each name percent-encoded."""
        try:
            names = sorted(os.listdir(real))
        except OSError:
            raise Refused(HTTPStatus.FORBIDDEN, "cannot list that directory") from None
        rows = []
        for name in names[:MAX_ENTRIES]:
            slash = "/" if (real / name).is_dir() else ""
            href = quote(name, safe="", errors="surrogateescape")
            rows.append(f'<li><a href="./{href}{slash}">{html.escape(name)}{slash}</a></li>')
        if len(names) > MAX_ENTRIES:
            rows.append(f"<li>… and {len(names) - MAX_ENTRIES:,} more</li>")
        title = html.escape(unquote_to_bytes(url_path).decode("utf-8", "replace"))
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>'
                f"{title}</title></head><body><h1>{title}</h1>"
                f'<p><a href="../">..</a></p><ul>{"".join(rows)}</ul></body></html>\n'
                ).encode("utf-8", "replace")

    def _send_bytes(self, data: bytes, content_type: str, body: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self._end_headers()
        if body:
            self.wfile.write(data)

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self._end_headers()

    def _error(self, status: HTTPStatus, why: str) -> None:
        # The reason phrase is the standard one: only the escaped body carries ``why``.
        try:
            self.send_error(status, None, why[:300])
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _end_headers(self) -> None:
        for k, v in HEADERS.items():
            self.send_header(k, v)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a quiet terminal; the browser shows what was asked for


def _content_type(path: Path) -> str:
    if path.suffix in TEXT_SUFFIXES:
        return "text/plain; charset=utf-8"
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed is None:
        return "application/octet-stream"
    return guessed + ("; charset=utf-8" if guessed.startswith("text/") else "")


def _copy(src: Any, dst: Any, size: int) -> None:
    """Copies at most ``size`` bytes: a file growing while it is sent (a live history)
    must not outrun its Content-Length."""
    remaining = size
    while remaining > 0:
        chunk = src.read(min(remaining, 1 << 16))
        if not chunk:
            break
        dst.write(chunk)
        remaining -= len(chunk)


def make_server(store: Path | str, port: int) -> ThreadingHTTPServer:
    """A server for ``store`` on the loopback address (port 0 picks a free one)."""
    store = Path(store)
    if not store.is_dir():
        raise UsageError(f"{store}: no such store directory")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is a number from 0 to 65535")
    try:
        return ThreadingHTTPServer((HOST, port), partial(_StoreHandler, store=store))
    except OSError as e:
        raise UsageError(f"cannot listen on {HOST}:{port}: {e.strerror}") from None

