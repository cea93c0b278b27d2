"""The few lines a person reads on the terminal after a run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

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
    console.print(f"[bold]{escape(test.spec.name)}[/] on {escape(', '.join(serving))} "
                  f"(cluster of {len(test.nodes)}), "
                  f"{test.spec.concurrency} clients, {test.spec.time_limit:g} s, "
                  f"seed {test.spec.seed}")
    console.print(f"ops: {types['ok']:,} ok, {types['fail']:,} fail, "
                  f"{types['info']:,} info (indeterminate)"
                  + (f"; faults: {', '.join(f'{f} ×{n}' for f, n in sorted(faults.items()))}"
                     if faults else "; no faults"))
    for name, sub in result.items():
        if isinstance(sub, dict) and "valid" in sub:
            line = checker_line(sub)
            mark = {True: "[green]ok[/]", False: "[red]INVALID[/]"}.get(sub["valid"],
                                                                         "[yellow]unknown[/]")
            console.print(f"  {name}: {mark} {line}")
    for a in result.get("anomalies", []):
        console.print(f"  [red]anomaly[/] {a['type']}: {a.get('count', '?'):,}")
    for name, sub in result.items():
        if isinstance(sub, dict) and sub.get("valid") is False and "counterexample" in sub:
            console.print(f"\n[bold]{name} counterexample[/]", highlight=False)
            console.print(render(sub), markup=False, highlight=False)
    if result.get("reason"):
        console.print(f"  {result['reason']}")
    for note in result.get("notes", []):
        console.print(f"  [yellow]note[/] {escape(note)}")
    verdict, words = _VERDICT.get(result["valid"], _VERDICT["unknown"])
    where = f"report {report}" if report is not None else f"details in {test.run_dir}"
    console.print(f"{verdict}: {words} — {where}")


def checker_line(result: dict[str, Any]) -> str:
    """A checker's result in a line: its summary or explanation, or, for a checker that
    says nothing more when it finds nothing, what it looked at."""
    text = result.get("summary") or result.get("explanation") or result.get("reason")
    if text:
        return _first_line(text)
    parts = []
    if isinstance(result.get("ops"), int):
        parts.append(f"{result['ops']:,} ops")
    if result.get("model"):
        parts.append(f"{result['model']} model")
    if result.get("analyzer"):
        parts.append(str(result["analyzer"]))
    elapsed = result.get("stats", {}).get("elapsed_s")
    if isinstance(elapsed, int | float):
        parts.append(f"{elapsed:.2f} s")
    return ", ".join(parts)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
