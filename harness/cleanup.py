"""Removing what runs left behind, from their ledgers (see ``harness.ledger``).

Both a live run's teardown and ``splitbrain cleanup`` come through ``remove_run``, so the
path that cleans up after a crash is the path every normal run exercises.

``cleanup_all`` leaves alone every run whose controller is still alive: its resources
are in use, and it will remove them itself. Removal of each kind of resource is
idempotent: something already gone produces no line and no error.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import NotRootError
from harness.ledger import STATE_DIR, Ledger, all_ledgers, stale_drafts

Resource = dict[str, Any]


def _cmd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def netns_pids(name: str) -> list[int]:
    """Pids of the processes living in network namespace ``name`` (empty if it is gone)."""
    out = _cmd("ip", "netns", "pids", name)
    return [int(p) for p in out.stdout.split()] if out.returncode == 0 else []


def kill_netns_processes(name: str, timeout: float = 5.0) -> int:
    """SIGKILLs everything in the namespace until it is empty; returns how many it killed.

    Repeats because a process may fork between listing and killing.
    """
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while (pids := netns_pids(name)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    if netns_pids(name):
        raise RuntimeError(f"processes in namespace {name} survive SIGKILL")
    return len(killed)


def _remove_netns(r: Resource) -> list[str]:
    name = r["name"]
    lines = []
    if killed := kill_netns_processes(name):
        lines.append(f"killed {killed} process{'es' * (killed != 1)} in namespace {name}")
    if Path("/run/netns", name).exists():
        out = _cmd("ip", "netns", "delete", name)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        lines.append(f"removed namespace {name}")
    return lines


def _remove_link(r: Resource) -> list[str]:
    name = r["name"]
    if _cmd("ip", "link", "show", "dev", name).returncode != 0:
        return []
    out = _cmd("ip", "link", "delete", "dev", name)
    # A veth vanishes by itself when its peer's namespace goes: gone is as good as removed.
    if out.returncode != 0 and _cmd("ip", "link", "show", "dev", name).returncode == 0:
        raise RuntimeError(out.stderr.strip())
    return [f"removed {r.get('what', 'link')} {name}"]


def _remove_iptables_rule(r: Resource) -> list[str]:
    table, chain, rule = r["table"], r["chain"], list(r["rule"])
    removed = 0
    while _cmd("iptables", "-w", "-t", table, "-C", chain, *rule).returncode == 0:
        out = _cmd("iptables", "-w", "-t", table, "-D", chain, *rule)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        removed += 1
    return [f"removed iptables rule -t {table} -A {chain} {' '.join(rule)}"] if removed else []


def _remove_dir(r: Resource) -> list[str]:
    path = Path(r["path"])
    if not path.exists():
        return []
    if not path.is_absolute() or r.get("run_id") not in path.parts:
        # A guard against a damaged ledger: a run's directories are named after it.
        raise RuntimeError(f"refusing to remove {path}: not a directory of run {r.get('run_id')}")
    shutil.rmtree(path)
    return [f"removed directory {path}"]


REMOVERS: dict[str, Callable[[Resource], list[str]]] = {
    "netns": _remove_netns,
    "link": _remove_link,
    "iptables": _remove_iptables_rule,
    "dir": _remove_dir,
}
"""How to remove each kind of recorded resource; a backend recording a new kind adds its
remover here. A remover is idempotent and returns one human line per thing removed."""


def remove_run(ledger: Ledger) -> list[str]:
    """Removes everything ``ledger`` names, newest first, then the ledger itself.

    Processes in every namespace are killed before anything else goes, so nothing is
    still using a link or directory when it is removed. If something cannot be removed
    the ledger stays (with a line saying why), so a later cleanup can retry.
    """
    lines: list[str] = []
    failed = False
    for r in ledger.resources:
        if r["kind"] == "netns":
            try:
                if killed := kill_netns_processes(r["name"]):
                    lines.append(f"killed {killed} process{'es' * (killed != 1)} "
                                 f"in namespace {r['name']}")
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                lines.append(f"could not empty namespace {r['name']}: {e}")
                failed = True
    for r in reversed(ledger.resources):
        remover = REMOVERS.get(r["kind"])
        if remover is None:
            lines.append(f"run {ledger.run_id}: do not know how to remove a {r['kind']!r}")
            failed = True
            continue
        try:
            lines.extend(remover(r))
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            lines.append(f"could not remove {r['kind']} {r.get('name', r)}: {e}")
            failed = True
    if not failed:
        ledger.forget()
    return lines


def cleanup_all(state_dir: Path = STATE_DIR) -> list[str]:
    """Removes what every abandoned run recorded; one line per thing removed or skipped."""
    ledgers = all_ledgers(state_dir)
    abandoned = [led for led in ledgers if not led.controller_alive()]
    if abandoned and os.geteuid() != 0:
        raise NotRootError("splitbrain cleanup needs root to remove namespaces and "
                           "iptables rules; run it as root")
    lines = [
        f"left run {led.run_id} alone: its controller (pid {led.controller_pid}) is running"
        for led in ledgers if led.controller_alive()
    ]
    for led in abandoned:
        removed = remove_run(led)
        lines.extend(removed or [f"forgot run {led.run_id} (nothing of it was left)"])
    for draft in stale_drafts(state_dir):
        draft.unlink(missing_ok=True)
        lines.append(f"removed half-written ledger {draft}")
    return lines or ["nothing to clean up"]
