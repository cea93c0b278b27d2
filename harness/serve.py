"""``splitbrain serve``: browse a store's runs and their reports from a web browser.

A plain threaded HTTP server from the standard library, bound to the loopback address
only: a store holds histories and node logs that are nobody else's business. ``/`` is an
index of every run, newest first, with its verdict; everything else is a file of the
store, and a run's ``report.html`` is drawn on first request when the run has none yet
(runs recorded before reports existed, or killed before the end).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from harness.errors import UsageError
from harness.report import TEMPLATES, write_report

HOST = "127.0.0.1"


@dataclass
class RunEntry:
    """One run of the store as the index lists it."""

    test: str
    run: str
    path: str  # relative to the store, with forward slashes
    valid: Any  # True, False, "unknown", or None when the run has no results.json


def list_runs(store: Path) -> list[RunEntry]:
    """Every run directory of ``store`` (one with a test.json), newest first."""
    runs = []
    for test_json in store.glob("*/*/test.json"):
        run_dir = test_json.parent
        if run_dir.is_symlink() or run_dir.parent.is_symlink():
            continue  # the "latest" links name runs listed already
        valid = None
        try:
            valid = json.loads((run_dir / "results.json").read_text()).get("valid")
        except (OSError, ValueError, AttributeError):
            pass
        runs.append(RunEntry(run_dir.parent.name, run_dir.name,
                             run_dir.relative_to(store).as_posix(), valid))
    return sorted(runs, key=lambda r: r.run, reverse=True)


class _StoreHandler(SimpleHTTPRequestHandler):
    """Files of the store, plus the index at ``/`` and reports drawn on demand."""

    def __init__(self, *args: Any, store: Path, **kwargs: Any) -> None:
        self.store = store
        super().__init__(*args, directory=str(store), **kwargs)

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            self._send_index()
            return
        if path.endswith("/report.html"):
            run_dir = (self.store / path.strip("/")).parent.resolve()
            if (run_dir.is_relative_to(self.store.resolve())
                    and (run_dir / "test.json").exists()
                    and not (run_dir / "report.html").exists()):
                try:
                    write_report(run_dir)
                except UsageError as e:
                    self.send_error(404, str(e))
                    return
        super().do_GET()

    def _send_index(self) -> None:
        html = TEMPLATES.get_template("index.html.j2").render(store=str(self.store),
                                                              runs=list_runs(self.store))
        body = html.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a quiet terminal; the browser shows what was asked for


def make_server(store: Path | str, port: int) -> ThreadingHTTPServer:
    """A server for ``store`` on the loopback address (port 0 picks a free one)."""
    store = Path(store)
    if not store.is_dir():
        raise UsageError(f"{store}: no such store directory")
    try:
        return ThreadingHTTPServer((HOST, port), partial(_StoreHandler, store=store))
    except OSError as e:
        raise UsageError(f"cannot listen on {HOST}:{port}: {e.strerror}") from None
