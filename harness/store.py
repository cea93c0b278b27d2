"""The store (★ layout): one directory per run, and ``latest`` links.

``store/<test-name>/<timestamp>/`` holds test.json, history.jsonl, results.json,
splitbrain.log and nodes/<node>/ logs; ``store/latest`` and ``store/<test-name>/latest``
point at the newest run.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.names import slug


def new_run_dir(store: str | Path, test_name: str) -> Path:
    """Creates the run's directory and points the ``latest`` links at it."""
    root, test_name = Path(store), slug(test_name)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    run_dir = root / test_name / stamp
    try:
        run_dir.mkdir(parents=True)
        (run_dir / "nodes").mkdir()
        probe = run_dir / ".writable"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write the store at {root}: {e.strerror or e}") from None
    _point(root / "latest", run_dir)
    _point(root / test_name / "latest", run_dir)
    return run_dir


def _point(link: Path, target: Path) -> None:
    """Atomically replaces ``link`` with a relative symlink to ``target``."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)


def write_json(path: Path, data: Any) -> None:
    """Writes JSON atomically (write, fsync, rename), so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
