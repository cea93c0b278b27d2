"""A brute-force linearizability oracle for small histories.

It shares nothing with the checkers under test but the model's ``step``: it enumerates
orders of the operations directly, with no memoization and no pruning beyond real
time, so that its answer is obviously right and slow. Use it on up to ~10 operations.

Real time: an operation may come next only if every ``ok`` operation that completed
before it was invoked is already placed. A ``fail`` never happened and is dropped. An
``info`` (or never-completed) operation may be placed anywhere after its invocation, or
not at all; its result is UNKNOWN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from checkers.models import INCONSISTENT, UNKNOWN, Model
from harness.history import FAIL, OK, Op, pairs


@dataclass(frozen=True)
class Call:
    start: int
    end: float  # inf when crashed
    f: str
    arg: Any
    result: Any
    required: bool


def calls(history: list[Op]) -> list[Call]:
    out = []
    for p in pairs(history):
        c = p.completion
        if c is not None and c.type == FAIL:
            continue
        ok = c is not None and c.type == OK
        out.append(Call(
            p.invoke.index,
            c.index if ok else float("inf"),
            p.invoke.f,
            p.invoke.value,
            c.value if ok else UNKNOWN,
            ok,
        ))
    return out


def linearizable(model: Model, history: list[Op]) -> bool:
    cs = calls(history)

    def search(state: Any, placed: frozenset[int]) -> bool:
        if all(i in placed for i, c in enumerate(cs) if c.required):
            return True
        for i, c in enumerate(cs):
            if i in placed:
                continue
            if any(j not in placed and d.required and d.end < c.start
                   for j, d in enumerate(cs)):
                continue
            nxt = model.step(state, c.f, c.arg, c.result)
            if nxt is not INCONSISTENT and search(nxt, placed | {i}):
                return True
        return False

    return search(model.init(), frozenset())
