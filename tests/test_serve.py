"""``splitbrain serve``: a real HTTP server on the loopback address, fetched with urllib."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.serve import list_runs, make_server
from tests.test_report import _run_dir


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    run = _run_dir(tmp_path)
    store = run.parents[1]
    (store / "latest").symlink_to(run)
    (run.parent / "latest").symlink_to(run)
    server = make_server(store, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield run, f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_the_index_lists_each_run_once_with_its_verdict(served):
    run, base = served
    html = _get(base + "/")
    assert html.count("INVALID") == 1  # not listed again through the latest link
    assert f'href="./t/{run.name}/report.html"' in html


def test_a_report_is_drawn_on_first_request_and_files_are_served(served):
    run, base = served
    assert not (run / "report.html").exists()
    assert "cannot be linearized" in _get(f"{base}/t/{run.name}/report.html")
    assert (run / "report.html").exists()
    assert json.loads(_get(f"{base}/t/{run.name}/results.json"))["valid"] is False


def test_nothing_outside_the_store_is_served(served):
    _, base = served
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(base + "/../../etc/passwd")
    assert e.value.code == 404


def test_it_listens_on_loopback_only_and_says_when_it_cannot(tmp_path):
    server = make_server(tmp_path, 0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with pytest.raises(UsageError, match="cannot listen on 127.0.0.1:"):
            make_server(tmp_path, server.server_address[1])
    finally:
        server.server_close()
    with pytest.raises(UsageError, match="no such store directory"):
        make_server(tmp_path / "absent", 0)
    for port in (70000, -1):
        with pytest.raises(UsageError, match="a port is a number from 0 to 65535"):
            make_server(tmp_path, port)


def test_list_runs_newest_first_and_without_verdict_when_unfinished(tmp_path):
    for name in ("20260101T000000Z", "20260102T000000Z"):
        (tmp_path / "t" / name).mkdir(parents=True)
        (tmp_path / "t" / name / "test.json").write_text("{}")
    (tmp_path / "t" / "20260101T000000Z" / "results.json").write_text('{"valid": true}')
    assert [(r.run, r.valid) for r in list_runs(tmp_path)] == [
        ("20260102T000000Z", None), ("20260101T000000Z", True)]


def test_the_command_prints_where_it_serves_and_stops_on_sigint(tmp_path):
    run = _run_dir(tmp_path)
    p = subprocess.Popen([sys.executable, "-u", "-c", "from harness.cli import main; main()",
                          "serve", str(run.parents[1]), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        assert "INVALID" in _get(url.group(0))
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
    assert "Traceback" not in p.stderr.read()


def test_a_report_is_drawn_even_when_the_store_is_read_only(served):
    """Without write permission (made here by a read-only bind mount, as root ignores
    file modes) the page is sent without being kept."""
    run, base = served
    subprocess.run(["mount", "--bind", "-o", "ro", str(run), str(run)], check=True)
    try:
        assert "cannot be linearized" in _get(f"{base}/t/{run.name}/report.html")
        assert not (run / "report.html").exists()
    finally:
        subprocess.run(["umount", str(run)], check=True)
