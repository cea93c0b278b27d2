"""The Checker protocol, the three-valued verdict, and composition.

A result is plain data: a dict with ``valid`` in {True, False, "unknown"} and, for
anything wrong, ``anomalies``: a list of dicts with at least ``type`` and ``count``.
Composition keeps each checker's result under its name; the verdict is the worst of
them, where false beats unknown beats true.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test

UNKNOWN = "unknown"
Valid = bool | str  # True, False or "unknown"

Result = dict[str, Any]


def merge_valid(verdicts: Iterable[Valid]) -> Valid:
    """False beats unknown beats true; no verdicts at all is true."""
    out: Valid = True
    for v in verdicts:
        if v is False:
            return False
        if v == UNKNOWN:
            out = UNKNOWN
        elif v is not True:
            raise ValueError(f"not a verdict: {v!r}")
    return out


@runtime_checkable
class Checker(Protocol):
    def check(self, test: Test | None, history: list[Op]) -> Result: ...


class NoopChecker:
    """Checks nothing and says so: its verdict is unknown, never a silent pass."""

    def check(self, test: Test | None, history: list[Op]) -> Result:
        return {"valid": UNKNOWN, "reason": "no checker was configured"}


class Compose:
    """Runs several checkers over one history and merges their verdicts."""

    def __init__(self, checkers: dict[str, Checker]) -> None:
        self.checkers = checkers

    def check(self, test: Test | None, history: list[Op]) -> Result:
        results = {name: c.check(test, history) for name, c in self.checkers.items()}
        anomalies = [a for r in results.values() for a in r.get("anomalies", [])]
        return {
            "valid": merge_valid(r["valid"] for r in results.values()),
            "anomalies": anomalies,
            **results,
        }
