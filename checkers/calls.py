"""What the linearizability search takes and gives, apart from the search itself.

``Call`` is one client operation placed in real time, ``Budget`` where to give up,
``SearchOutcome`` the verdict with the longest linearizable prefix. The fast paths and
the explanations use them too, without depending on the search.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from harness.history import Op

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(slots=True)
class Call:
    """One client operation as the search sees it.

    ``start``/``end`` are positions in the history (real-time order); ``end`` is None
    for a crashed op. ``result`` is ``UNKNOWN`` for a crashed op.
    """

    start: int
    end: int | None
    f: str
    arg: Any
    result: Any
    invoke: Op
    completion: Op | None


@dataclass(slots=True)
class Budget:
    """Where to give up: an absolute ``time.monotonic()`` deadline and a resident-set
    limit for this process."""

    deadline: float | None
    memory_limit_mb: int

    def exceeded(self) -> str | None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            return "time limit reached"
        if rss_mb() > self.memory_limit_mb:
            return f"memory limit of {self.memory_limit_mb} MiB reached"
        return None


def rss_mb() -> float:
    """Resident set size of this process in MiB (one small read of /proc/self/statm)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE / 1048576


@dataclass
class SearchOutcome:
    valid: bool | str  # True, False or "unknown"
    steps: int = 0
    cache_size: int = 0
    reason: str = ""
    prefix: list[Call] = field(default_factory=list)
    """Longest linearizable prefix found, in linearization order."""
    state: Any = None
    """Model state after ``prefix``."""
    blocked: Call | None = None
    """The ok op with the earliest return not linearized after ``prefix``."""
    pending: list[Call] = field(default_factory=list)
    """Ops not linearized after ``prefix`` and concurrent with ``blocked``."""
