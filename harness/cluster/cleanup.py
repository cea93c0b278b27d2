"""Removing what runs left behind, from their ledgers (see ``harness.cluster.ledger``).

Both a live run's teardown and ``splitbrain cleanup`` come through ``remove_run``, so the
path that cleans up after a crash is the path every normal run exercises.

Each backend owns the kinds of resource it records: it registers a remover per kind
(``register_remover``), and may register a sweeper, a last pass over what it can find by
its own marks (Docker's labels) for runs whose ledger is gone. ``cleanup_all`` leaves
alone every run whose controller is still alive: its resources are in use, and it will
remove them itself. Removal of each kind of resource is idempotent: something already
gone produces no line and no error.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cluster.ledger import STATE_DIR, Ledger, all_ledgers, stale_drafts

Resource = dict[str, Any]
CLEANUP_ERRORS = (OSError, RuntimeError, subprocess.SubprocessError)
"""What a remover raises for a resource it cannot remove (the Docker SDK's errors are
OSErrors)."""


@dataclass(frozen=True)
class Remover:
    """``remove`` returns one human line per thing removed; ``quiesce`` (optional) runs
    for every resource of the run before anything is removed (kill processes that would
    keep a link or a directory busy) and returns lines the same way."""

    remove: Callable[[Resource], list[str]]
    quiesce: Callable[[Resource], list[str]] | None = None


_REMOVERS: dict[str, Remover] = {}
_SWEEPERS: list[Callable[[set[str]], list[str]]] = []


def register_remover(kind: str, remove: Callable[[Resource], list[str]],
                     quiesce: Callable[[Resource], list[str]] | None = None) -> None:
    """Called by a backend, at import, for each kind of resource it records."""
    _REMOVERS[kind] = Remover(remove, quiesce)


def register_sweeper(sweep: Callable[[set[str]], list[str]]) -> None:
    """``sweep(kept)`` removes what a backend marked as splitbrain's for abandoned runs
    not in ``kept`` (the run ids whose ledgers remain), and returns lines."""
    _SWEEPERS.append(sweep)


def remove_run(ledger: Ledger) -> list[str]:
    """Removes everything ``ledger`` names, newest first, then the ledger itself.

    Every resource is quiesced before anything goes, so nothing is still using a link or
    directory when it is removed. If something cannot be removed the ledger stays (with
    a line saying why), so a later cleanup can retry.
    """
    from harness.cluster.backends import load_backend

    load_backend(ledger.data.get("backend", "local"))
    lines: list[str] = []
    failed = False
    for r in ledger.resources:
        remover = _REMOVERS.get(r["kind"])
        if remover is not None and remover.quiesce is not None:
            try:
                lines.extend(remover.quiesce(r))
            except CLEANUP_ERRORS as e:
                lines.append(f"could not quiesce {r['kind']} {r.get('name', r)}: {e}")
                failed = True
    for r in reversed(ledger.resources):
        remover = _REMOVERS.get(r["kind"])
        if remover is None:
            lines.append(f"run {ledger.run_id}: do not know how to remove a {r['kind']!r}")
            failed = True
            continue
        try:
            lines.extend(remover.remove(r))
        except CLEANUP_ERRORS as e:
            lines.append(f"could not remove {r['kind']} {r.get('name', r)}: {e}")
            failed = True
    if not failed:
        ledger.forget()
    return lines


def cleanup_all(state_dir: Path = STATE_DIR) -> list[str]:
    """Removes what every abandoned run recorded; one line per thing removed or skipped."""
    from harness.cluster.backends import check_cleanup, load_all_backends

    load_all_backends()
    ledgers = all_ledgers(state_dir)
    abandoned = [led for led in ledgers if not led.controller_alive()]
    for backend in sorted({led.data.get("backend", "local") for led in abandoned}):
        check_cleanup(backend)
    lines = [
        f"left run {led.run_id} alone: its controller (pid {led.controller_pid}) is running"
        for led in ledgers if led.controller_alive()
    ]
    for led in abandoned:
        removed = remove_run(led)
        lines.extend(removed or [f"forgot run {led.run_id} (nothing of it was left)"])
    kept = {led.run_id for led in all_ledgers(state_dir)}
    for sweep in _SWEEPERS:
        lines.extend(sweep(kept))
    for draft in stale_drafts(state_dir):
        draft.unlink(missing_ok=True)
        lines.append(f"removed half-written ledger {draft}")
    return lines or ["nothing to clean up"]
