"""``splitbrain serve`` against hostile requests and hostile stores: a real server on the
loopback address, spoken to with raw sockets so that no client library tidies the path.

What must hold: not one byte from outside the store is ever sent (symlinks included),
every request gets a status line (never a dropped connection), and every link the index
and the reports hold is relative and percent-encoded.
"""

from __future__ import annotations

import json
import os
import re
import socket
import string
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.serve import Refused, make_server, resolve
from tests.test_report import _run_dir

SECRET = "splitbrain-outside-secret-7f3a"


def _raw(port: int, target: str | bytes, method: str = "GET") -> tuple[int, bytes]:
    """Sends one request line as given; returns the status and the whole response."""
    line = target if isinstance(target, bytes) else target.encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(method.encode() + b" " + line + b" HTTP/1.0\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    status = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    assert status, f"no status line for {target!r}: {response[:200]!r}"
    return int(status.group(1)), response


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A store with a good run, symlinks out of it, and runs with hostile files."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    run = _run_dir(tmp_path)
    store = run.parents[1]
    (store / "latest").symlink_to(run)
    (store / "out").symlink_to(outside)
    (store / "etc").symlink_to("/etc")
    (run / "leak.txt").symlink_to(outside / "secret.txt")
    (run / "inner.json").symlink_to(run / "results.json")
    os.mkfifo(run / "fifo.log")  # would block a plain open() forever
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(run / "socket.log"))  # cannot be opened at all
    (run / "zero.log").symlink_to("/dev/zero")  # endless, and outside the store
    for name, make in {
        "list": lambda d: (d / "results.json").write_text("[1, 2]"),
        "dir": lambda d: (d / "results.json").mkdir(),
        "garbage": lambda d: (d / "results.json").write_bytes(os.urandom(512) + b"\xff"),
        "fifo": lambda d: os.mkfifo(d / "results.json"),
        "device": lambda d: (d / "results.json").symlink_to("/dev/zero"),
        "deep": lambda d: (d / "results.json").write_text("[" * 100_000),
        "nohistory": lambda d: None,
    }.items():
        d = store / f"bad-{name}" / "20260101T000000Z"
        d.mkdir(parents=True)
        (d / "test.json").write_text(json.dumps({"name": f"bad-{name}"}))
        if name != "nohistory":
            (d / "history.jsonl").write_bytes(b'{"type":"invoke"')
        make(d)
    server = make_server(store, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield store, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("target", [
    "/etc/shadow", "/etc/passwd", "/etc/", "/etc", "/out/secret.txt", "/out/",
    "/t/20260101T000000Z/leak.txt", "/latest/leak.txt", "/../outside/secret.txt",
    "/%2e%2e/outside/secret.txt", "/t/%2E%2E/%2e%2e/outside/secret.txt",
    "/%2e%2e%2foutside%2fsecret.txt", "//etc/passwd", "/./out/./secret.txt",
    "/t/..%2f..%2foutside/secret.txt", "../outside/secret.txt",
])
def test_nothing_outside_the_store_is_served_even_through_symlinks(hostile, target):
    _, port = hostile
    for method in ("GET", "HEAD"):
        status, response = _raw(port, target, method)
        assert status in (400, 403, 404), (target, method, status)
        assert SECRET.encode() not in response and b"root:" not in response


@pytest.mark.parametrize("target", [
    "/%00", "/t/%00/x", "/%00/../etc/passwd", "/x%00.json", "/%zz", "/%4", "/%", "/%%41",
    "/%ff%fe", "/" + "a" * 5000, "/" + "a/" * 3000, "/%C0%AE%C0%AE/etc/passwd",
    "/\u00e9t\u00e9", "/index.html?%00", "*", "/t/20260101T000000Z/results.json/x",
])
def test_malformed_paths_get_a_4xx_never_a_dropped_connection(hostile, target):
    _, port = hostile
    status, response = _raw(port, target)
    assert 400 <= status < 500, (target, status)
    assert b"Traceback" not in response


def test_hostile_run_directories_get_an_answer_and_the_index_still_lists_them(hostile):
    store, port = hostile
    status, index = _raw(port, "/")
    assert status == 200
    for name in ("list", "dir", "garbage", "fifo", "device", "deep", "nohistory"):
        assert f"bad-{name}".encode() in index
        for path in ("report.html", "results.json", "test.json", "history.jsonl", ""):
            status, response = _raw(port, f"/bad-{name}/20260101T000000Z/{path}")
            assert status in (200, 301, 403, 404), (name, path, status)
            assert b"Traceback" not in response
    assert not list(store.rglob(".report.*"))  # no temporary file left behind


def test_special_files_get_a_4xx(hostile):
    _, port = hostile
    for name in ("fifo.log", "socket.log", "zero.log"):
        for method in ("GET", "HEAD"):
            status, _ = _raw(port, f"/t/20260101T000000Z/{name}", method)
            assert status in (403, 404), (name, method, status)
    status, page = _raw(port, "/t/20260101T000000Z/report.html")  # drawn beside them
    assert status == 200 and b"fifo.log" not in page and b"socket.log" not in page


def test_files_inside_the_store_are_served_through_links_that_stay_inside(hostile):
    _, port = hostile
    status, response = _raw(port, "/t/20260101T000000Z/inner.json")
    assert status == 200 and b'"valid": false' in response
    status, response = _raw(port, "/latest/results.json")
    assert status == 200
    status, response = _raw(port, "/t/20260101T000000Z")
    assert status == 301 and b"Location: /t/20260101T000000Z/\r\n" in response


def _hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def test_links_are_relative_and_encoded_whatever_the_names(tmp_path):
    """A test named as a script URL, a run of a ``package.module:factory`` system and a
    file named ``javascript:...``: every link starts with ``./`` or ``../`` (so no scheme
    can appear) and leads to the right place."""
    store = tmp_path / "store"
    names = ["javascript:alert(document.domain)", "mypkg.systems:factory", "a b&c\"<'>%"]
    for name in names:
        run = store / name / "20260101T000000Z"
        run.mkdir(parents=True)
        (run / "test.json").write_text(json.dumps({"name": name + "//"}))
        (run / "results.json").write_text('{"valid": true}')
        (run / "history.jsonl").write_text("")
        (run / "javascript:alert(1)").write_text("hello")
    server = make_server(store, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        status, index = _raw(port, "/")
        hrefs = _hrefs(index.decode())
        assert len(hrefs) == 2 * len(names)
        for href in hrefs:
            assert href.startswith("./") and ":" not in href and " " not in href
            status, page = _raw(port, "/" + href.removeprefix("./").replace("&amp;", "&"))
            assert status == 200, href
            if href.endswith("report.html"):
                links = _hrefs(page.decode())
                assert "./javascript%3Aalert%281%29" in links
                assert all(h.startswith("./") and ":" not in h for h in links)
                base = href.removeprefix("./").removesuffix("report.html")
                status, body = _raw(port, "/" + base + "javascript%3Aalert%281%29")
                assert (status, body.endswith(b"hello")) == (200, True)
            else:  # a directory listing: its links too
                assert all(h.startswith(("./", "../")) and ":" not in h
                           for h in _hrefs(page.decode()))
        assert b"javascript:alert(document.domain)//" in index  # shown, as text
    finally:
        server.shutdown()
        server.server_close()


SEGMENTS = st.sampled_from([
    "..", "%2e%2e", "%2E%2e", ".", "", "%2f", "%00", "out", "etc", "in", "t", "latest",
    "20260101T000000Z", "secret.txt", "results.json", "report.html", "\u00e9", "%ff",
    "%c3%a9", "%", "%2", "..%2f", "loop", "self", "history.jsonl", "nodes", "n1",
])
PATHS = st.lists(st.one_of(SEGMENTS, st.text(string.printable + "\u00e9\u4e2d\0",
                                             max_size=8)), max_size=8
                 ).map(lambda parts: "/" + "/".join(parts))


def _store_with_escapes(root: Path) -> tuple[Path, Path]:
    outside = root / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text(SECRET)
    run = _run_dir(root) if not (root / "store").exists() else next(
        (root / "store").glob("t/2*"))
    store = run.parents[1]
    for name, target in (("out", outside), ("etc", Path("/etc")), ("in", run),
                         ("latest", run), ("loop", store / "loop"), ("self", store)):
        if not (store / name).is_symlink():
            (store / name).symlink_to(target)
    if not (run / "secret.txt").is_symlink():
        (run / "secret.txt").symlink_to(outside / "secret.txt")
    return store, outside


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS)
def test_resolve_never_leaves_the_store(tmp_path, path):
    store, _ = _store_with_escapes(tmp_path)
    real_store = store.resolve()
    try:
        real = resolve(real_store, path)
    except Refused as e:
        assert 400 <= e.status < 500
        return
    assert os.path.commonpath([real, real_store]) == str(real_store)
    assert real == real.resolve()  # no symlink left to follow


def test_the_live_server_never_sends_a_byte_from_outside(tmp_path):
    store, _ = _store_with_escapes(tmp_path)
    server = make_server(store, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    @settings(max_examples=150, deadline=None)
    @given(path=PATHS)
    def check(path: str) -> None:
        # as a client sends it: control bytes and spaces percent-encoded
        target = b"".join(b"%%%02X" % c if c <= 0x20 or c == 0x7F else bytes([c])
                          for c in path.encode("utf-8"))
        status, response = _raw(port, target)
        assert SECRET.encode() not in response and b"root:" not in response
        assert b"Traceback" not in response and status < 500

    try:
        check()
    finally:
        server.shutdown()
        server.server_close()
