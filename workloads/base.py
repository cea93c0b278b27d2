"""What a workload is: the ops clients draw, the final reads, and the checker.

A workload is plain data built from the run's options; the run loop needs nothing
else from it. Every workload's checker is built with ``checked``, so the stats checker
judges every run: a run in which some kind of operation never succeeded is never VALID.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from checkers.base import Checker, Compose
from checkers.stats import StatsChecker
from harness.generator import Generator


@dataclass(frozen=True)
class Workload:
    name: str
    generator: Generator
    """Ops for the main phase, drawn by every worker."""
    final: tuple[str, Any] | None
    """The op (f, value) taken once on every serving node after healing, or None."""
    checker: Checker


def checked(checkers: dict[str, Checker]) -> Compose:
    """The workload's own ``checkers``, composed with the stats checker."""
    return Compose({**checkers, "stats": StatsChecker()})
