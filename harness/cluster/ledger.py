"""Durable records of what a run created, so a crashed run can be cleaned up exactly.

Every resource (namespace, network link, iptables rule, directory, container, Docker
network) is recorded in the run's ledger *before* it is created, so a controller killed
at any instant leaves a ledger naming everything that might exist. ``splitbrain cleanup``
removes what ledgers name (a backend may add a sweep by marks of its own, such as
Docker's labels), never anything found by matching names. A ledger is one JSON file,
rewritten atomically (write a temporary file, fsync, rename) so a crash never leaves it
torn.

The ledger's data names the backend that made the run (``backend``), whose removers
``harness.cluster.cleanup`` uses. It also records the controller's pid and that
process's start time: a run is abandoned when that exact process is gone (a bare pid
could have been reused).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = Path("/var/lib/splitbrain")
"""Root of splitbrain's host state: ``ledger/<run-id>.json`` and ``<run-id>/`` work dirs."""


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields resume after ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class Ledger:
    """One run's records. ``resources`` are plain dicts with at least a ``kind``."""

    path: Path
    run_id: str
    controller_pid: int
    controller_start: int | None
    data: dict[str, Any] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)

    def record(self, kind: str, **details: Any) -> None:
        """Durably notes a resource that is about to be created."""
        self.resources.append({"kind": kind, **details})
        self.save()

    def save(self) -> None:
        body = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(body, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def controller_alive(self) -> bool:
        start = process_start_time(self.controller_pid)
        return start is not None and start == self.controller_start

    def forget(self) -> None:
        """Deletes the ledger once everything it names is gone."""
        self.path.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        body = json.loads(path.read_text(encoding="utf-8"))
        return cls(path=path, **body)


def ledger_dir(state_dir: Path = STATE_DIR) -> Path:
    return state_dir / "ledger"


@contextmanager
def locked(state_dir: Path = STATE_DIR) -> Iterator[None]:
    """Serialises ledger creation (and subnet choice) between concurrent runs."""
    directory = ledger_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def new_ledger(state_dir: Path = STATE_DIR, **data: Any) -> Ledger:
    """Creates the ledger of a new run with a fresh, unused run id (6 hex digits).

    Six hex digits keep interface names such as ``sb-3f2a1c-br`` within Linux's 15
    characters while making a clash between concurrent runs unlikely; the exclusive create
    makes it impossible.
    """
    directory = ledger_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    while True:
        run_id = secrets.token_hex(3)
        ledger = Ledger(directory / f"{run_id}.json", run_id, pid, process_start_time(pid),
                        dict(data))
        draft = directory / f".{run_id}.json.{pid}.new"
        ledger.path = draft
        ledger.save()
        ledger.path = directory / f"{run_id}.json"
        try:
            # link() refuses to replace an existing file: an exclusive create whose file
            # is complete from the first instant.
            os.link(draft, ledger.path)
        except FileExistsError:
            continue
        finally:
            draft.unlink()
        return ledger


def all_ledgers(state_dir: Path = STATE_DIR) -> list[Ledger]:
    """Every readable ledger; an empty or unreadable file (a crash at creation) is skipped."""
    out: list[Ledger] = []
    directory = ledger_dir(state_dir)
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            out.append(Ledger.load(path))
        except (OSError, ValueError, TypeError):
            continue
    return out


def stale_drafts(state_dir: Path = STATE_DIR) -> list[Path]:
    """Half-written ledger files (``.<name>.<pid>.tmp|new``) whose writer has died."""
    directory = ledger_dir(state_dir)
    if not directory.is_dir():
        return []
    out = []
    for path in directory.glob(".*.*.*"):
        pid = path.name.split(".")[-2]
        if (path.suffix in (".tmp", ".new") and pid.isdigit()
                and process_start_time(int(pid)) is None):
            out.append(path)
    return out
