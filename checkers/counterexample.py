"""Counterexamples a person can follow, as data (for the HTML report) and as text.

Every linearizability analyzer (the search and the fast paths) explains an invalid
history with one of these: the operation that cannot be linearized, the longest
linearizable prefix found and the model state at its end, the concurrent operations
involved, and a paragraph in plain words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class OpView:
    """One operation as shown to a person: times in seconds since the run started."""

    process: Any
    f: str
    value: Any
    type: str  # ok, info or fail (of the completion)
    start: float | None  # seconds; None when the history has no times (e.g. Knossos EDN)
    end: float | None  # seconds; None when it never completed (or no times)
    index: int = -1  # index of the invocation in the history

    def render(self) -> str:
        if self.start is None:
            return (f"process {self.process} {self.f} {_show(self.value)} "
                    f"[history index {self.index}] {self.type}")
        end = f"{self.end:.3f}s" if self.end is not None else "never"
        return (f"process {self.process} {self.f} {_show(self.value)} "
                f"[{self.start:.3f}s .. {end}] {self.type}")


@dataclass
class Counterexample:
    op: OpView
    """The operation that cannot be linearized."""
    explanation: str
    """One paragraph in plain words."""
    state: str = ""
    """The model state at the end of the longest linearizable prefix, described."""
    prefix: list[OpView] = field(default_factory=list)
    """The longest linearizable prefix found, in linearization order (may be cut)."""
    concurrent: list[OpView] = field(default_factory=list)
    """Operations concurrent with ``op`` that the search tried to order around it."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render_text(self, max_prefix: int = 10) -> str:
        lines = [self.explanation, "", f"cannot linearize: {self.op.render()}"]
        if self.state:
            lines.append(f"state after the longest linearizable prefix: {self.state}")
        if self.prefix:
            shown = self.prefix[-max_prefix:]
            cut = len(self.prefix) - len(shown)
            n = len(self.prefix)
            lines.append(f"longest linearizable prefix ({n} op{'s' if n != 1 else ''}"
                         + (f", last {len(shown)} shown" if cut else "") + "):")
            lines += [f"  {v.render()}" for v in shown]
        if self.concurrent:
            lines.append("concurrent operations:")
            lines += [f"  {v.render()}" for v in self.concurrent]
        return "\n".join(lines)


def _show(v: Any) -> str:
    return "" if v is None else str(v)
