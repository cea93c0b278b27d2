"""What a workload is: the ops clients draw, the final reads, and the checker.

A workload is plain data built from the run's options; the run loop needs nothing
else from it. Every workload's checker is built with ``checked``, so the stats checker
judges every run: a run in which some kind of operation never succeeded is never VALID.
A workload says which operations its clients must serve (``operations``); a system
serves a workload through the client it registers under the workload's name
(``System.clients``, see ``harness.pairing``), so the pair is checked before any
cluster exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checkers.base import Checker, Compose
from checkers.stats import StatsChecker
from harness.generator_core import Generator


@dataclass(frozen=True)
class Workload:
    name: str
    generator: Generator
    """Ops for the main phase, drawn by every worker."""
    final: tuple[str, Any] | None
    """The op (f, value) taken once on every serving node after healing, or None."""
    checker: Checker
    operations: frozenset[str] = field(default_factory=frozenset)
    """The ``f`` of every op the generator and the final op may produce: what a system's
    client for this workload must implement."""


UNIQUE_STRIDE = 10**9
"""Unique values: worker ``w``'s n-th value is ``w * UNIQUE_STRIDE + n`` (n from 1), so
no two workers (nor the initial null) ever write the same value, with no shared state
between workers."""


class UniqueValues:
    """Per-worker counters of unique values, keyed by the generator context's worker."""

    def __init__(self) -> None:
        self._issued: dict[int, int] = {}

    def next(self, worker: int) -> int:
        n = self._issued.get(worker, 0) + 1
        self._issued[worker] = n
        return worker * UNIQUE_STRIDE + n

    def recent(self, worker: int, back: int) -> int | None:
        """The value this worker issued ``back`` values ago (0: its last), if any."""
        n = self._issued.get(worker, 0) - back
        return worker * UNIQUE_STRIDE + n if n >= 1 else None


def checked(checkers: dict[str, Checker]) -> Compose:
    """The workload's own ``checkers``, composed with the stats checker."""
    return Compose({**checkers, "stats": StatsChecker()})
