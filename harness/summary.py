"""The few lines a person reads on the terminal after a run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

from checkers.linearizable import render
from harness.context import Test
from harness.history import NEMESIS, Op

_VERDICT = {True: ("[bold green]VALID[/]", "no anomalies found"),
            False: ("[bold red]INVALID[/]", "anomalies found"),
            "unknown": ("[bold yellow]UNKNOWN[/]", "could not decide")}


def print_summary(test: Test, history: list[Op], result: dict[str, Any],
                  serving: list[str], report: Path | None = None,
                  console: Console | None = None) -> None:
    console = console or Console(highlight=False, soft_wrap=True)
    types = Counter(op.type for op in history if op.process != NEMESIS)
    faults = Counter(op.f for op in history if op.process == NEMESIS and op.type == "invoke")
    console.print(f"[bold]{test.spec.name}[/] on {', '.join(serving)} "
                  f"(cluster of {len(test.nodes)}), "
                  f"{test.spec.concurrency} clients, {test.spec.time_limit:g} s, "
                  f"seed {test.spec.seed}")
    console.print(f"ops: {types['ok']:,} ok, {types['fail']:,} fail, "
                  f"{types['info']:,} info (indeterminate)"
                  + (f"; faults: {', '.join(f'{f} ×{n}' for f, n in sorted(faults.items()))}"
                     if faults else "; no faults"))
    for name, sub in result.items():
        if isinstance(sub, dict) and "valid" in sub:
            line = sub.get("summary") or sub.get("explanation") or sub.get("reason") or ""
            mark = {True: "[green]ok[/]", False: "[red]INVALID[/]"}.get(sub["valid"],
                                                                         "[yellow]unknown[/]")
            console.print(f"  {name}: {mark} {_first_line(line)}")
    for a in result.get("anomalies", []):
        console.print(f"  [red]anomaly[/] {a['type']}: {a.get('count', '?'):,}")
    for name, sub in result.items():
        if isinstance(sub, dict) and sub.get("valid") is False and "counterexample" in sub:
            console.print(f"\n[bold]{name} counterexample[/]", highlight=False)
            console.print(render(sub), markup=False, highlight=False)
    if result.get("reason"):
        console.print(f"  {result['reason']}")
    verdict, words = _VERDICT.get(result["valid"], _VERDICT["unknown"])
    where = f"report {report}" if report is not None else f"details in {test.run_dir}"
    console.print(f"{verdict}: {words} — {where}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
