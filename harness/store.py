"""The store (★ layout): one directory per run, and ``latest`` links.

``store/<test-name>/<timestamp>/`` holds test.json, history.jsonl, results.json,
splitbrain.log and nodes/<node>/ logs; ``store/latest`` and ``store/<test-name>/latest``
point at the newest run.

A store can fill up or turn read-only under a run. Every write here either completes
or leaves nothing behind (no half files, no ``.tmp`` files) and raises ``StoreError``
naming the file, so the run can say what is missing and keep its verdict.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import StoreError, UsageError
from harness.names import slug

PROBE_BYTES = 16 * 1024
"""Written (and removed) when a run directory is made: a store with less room than this
cannot hold a run's records, so the run is refused before any cluster exists."""

_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def new_run_dir(store: str | Path, test_name: str) -> Path:
    """Creates the run's directory and points the ``latest`` links at it.

    Raises StoreError when the store is full, UsageError when it cannot be written at
    all (a file in the way, no permission, read-only), having removed what it made."""
    root, test_name = Path(store), slug(test_name)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    run_dir = root / test_name / stamp
    made = [d for d in (run_dir, run_dir.parent, root) if not d.exists()]
    try:
        run_dir.mkdir(parents=True)
        (run_dir / "nodes").mkdir()
        made.insert(0, run_dir / "nodes")
        write_bytes_atomic(run_dir / "probe", b"\0" * PROBE_BYTES)
        (run_dir / "probe").unlink()
        _point(root / "latest", run_dir)
        _point(root / test_name / "latest", run_dir)
    except (OSError, StoreError) as e:
        for d in made:
            try:
                d.rmdir()
            except OSError:
                break
        cause = e.__cause__ if isinstance(e, StoreError) else e
        if isinstance(cause, OSError) and cause.errno in _NO_ROOM:
            raise StoreError(f"the store at {root} is full ({cause.strerror}): "
                             "no room for a run's records") from None
        why = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause
        raise UsageError(f"cannot write the store at {root}: {why}") from None
    return run_dir


def _point(link: Path, target: Path) -> None:
    """Atomically replaces ``link`` with a relative symlink to ``target``."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(os.path.relpath(target, link.parent))
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Writes JSON atomically (write, fsync, rename), so a reader never sees half a file."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Writes ``path`` through a temporary file renamed over it. On failure the
    temporary file is removed and StoreError names ``path`` and the reason."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StoreError(f"could not write {path} ({e.strerror or e})", path=path) from e


@dataclass
class LogFile:
    """splitbrain.log of a run, and whether a write to it failed."""

    path: Path
    failed: bool = False


class _LogHandler(logging.FileHandler):
    """splitbrain.log: a write that fails (a full store) is remembered, not printed as
    a traceback on the terminal, and no further record is tried."""

    def __init__(self, record: LogFile) -> None:
        super().__init__(record.path)
        self.record = record
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not self.record.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            self.record.failed = True
        else:  # a bad log call is a bug: let logging show it
            super().handleError(record)


@contextmanager
def logging_to(path: Path) -> Iterator[LogFile]:
    """Sends splitbrain's log to ``path`` for the block."""
    record = LogFile(path)
    try:
        handler = _LogHandler(record)
    except OSError as e:
        raise StoreError(f"could not create {path} ({e.strerror or e})", path=path) from e
    root = logging.getLogger()
    root.addHandler(handler)
    saved = root.level
    root.setLevel(logging.INFO)
    try:
        yield record
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
        with suppress(OSError):
            handler.close()
