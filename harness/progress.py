"""A live status line on the terminal while a run goes: phase, time, ops recorded.

A run is silent for as long as its time limit and longer (setup, healing, recovery,
final reads, the check); a person at a terminal wants to see that it is alive and how
far it got. The line is drawn on stderr only when stderr is a terminal, and vanishes
when the run ends, so logs, pipes and the summary stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.text import Text


class Counted(Protocol):
    count: int
    """Operations recorded so far (``HistoryWriter.count``)."""


class _Elapsed(ProgressColumn):
    """Seconds since the phase began, against its planned length when it has one."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if task.total:
            return Text(f"{min(elapsed, task.total):4.0f} / {task.total:g} s")
        return Text(f"{elapsed:4.0f} s")


class _Recorded(ProgressColumn):
    def __init__(self, history: Counted) -> None:
        super().__init__()
        self.history = history

    def render(self, task: Task) -> Text:
        return Text(f"{self.history.count:,} history entries", style="dim")


class RunProgress:
    """The phases of a run, each shown with its own clock."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def phase(self, description: str, seconds: float | None = None) -> None:
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=seconds)


@contextmanager
def run_progress(history: Counted | None = None,
                 console: Console | None = None) -> Iterator[RunProgress]:
    """A ``RunProgress`` drawn on ``console`` (default: stderr) if it is a terminal,
    with how many entries ``history`` has recorded, when given."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield RunProgress(None)
        return
    columns: list[ProgressColumn] = [SpinnerColumn(), TextColumn("{task.description}"),
                                     _Elapsed()]
    if history is not None:
        columns.append(_Recorded(history))
    with Progress(*columns, console=console, transient=True) as progress:
        yield RunProgress(progress)
