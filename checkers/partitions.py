"""A history as independent parts, and the exact analyzers that decide one part.

``prepare`` turns a history into calls (failed ops dropped, crashed ops open-ended);
``partition`` splits them over independent keys (P-compositionality: a history is
linearizable iff each key's sub-history is); ``start_part`` decides a part outright with
a polynomial fast path when one applies, or hands back a resumable search for it.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from checkers import explanations
from checkers.base import UNKNOWN as UNKNOWN_VERDICT
from checkers.calls import Budget, Call, SearchOutcome
from checkers.counter_bounds import check_counter_bounds
from checkers.counterexample import Counterexample
from checkers.fast_steps import cas_register_guard, kv_key_step
from checkers.models import KV, UNKNOWN, CasRegister, Counter, Model, Register
from checkers.register_unique import applicable, check_unique_register
from checkers.search import search, search_slices
from harness.history import FAIL, OK, Op, pairs

PREFIX_SEARCH_SECONDS = 5.0
"""How long a fast path that found a part invalid may search for its longest
linearizable prefix (the verdict is already certain; this only adds detail)."""


@dataclass
class Part:
    """One independent sub-history: the calls of one key (or of the whole history)."""

    key: Any
    model: Model
    calls: list[Call]


@dataclass
class PartResult:
    valid: bool | str
    analyzer: str
    steps: int = 0
    cache_size: int = 0
    linearized: int = 0
    counterexample: Counterexample | None = None
    reason: str = ""


class KeyModel:
    """One key of a ``KV`` model on its own: the state is that key's value, so steps
    and memoization cost what a register's do instead of a whole kv state's."""

    name = "kv key"

    def __init__(self, kv: KV) -> None:
        self.initial = kv.register.initial
        self.step = kv.step_value
        self.read_only = kv.read_only
        self.describe = kv.register.describe
        if type(kv) is KV and type(kv.register) is CasRegister:
            self.fast_step = kv_key_step
            self.fast_guard = cas_register_guard
            self.calls_extend = True  # only appends go through CALL

    def init(self) -> Any:
        return self.initial


def prepare(history: list[Op]) -> tuple[list[Call], int]:
    """Client calls in invocation order, failed ones dropped; and the client op count.

    Positions in ``history`` give real-time order; a crashed call (``info`` or never
    completed) gets no end and an ``UNKNOWN`` result.
    """
    all_pairs = pairs(history)
    indices = [op.index for op in history]
    if all(map(operator.lt, indices, indices[1:])):
        def position(op: Op) -> int:  # indices already follow history order
            return op.index
    else:
        where = {id(op): i for i, op in enumerate(history)}

        def position(op: Op) -> int:
            return where[id(op)]
    calls: list[Call] = []
    for p in all_pairs:
        c, inv = p.completion, p.invoke
        if c is None or c.type != OK:
            if c is None or c.type != FAIL:
                calls.append(Call(position(inv), None, inv.f, inv.value, UNKNOWN, inv, c))
        else:
            calls.append(Call(position(inv), position(c), inv.f, inv.value, c.value, inv, c))
    return calls, len(all_pairs)


def partition(model: Model, calls: list[Call]) -> list[Part]:
    """Independent parts: one per key where the model has ``key_of``, else one. A kv
    key's calls are projected onto that key's value (``KeyModel``)."""
    key_of = getattr(model, "key_of", None)
    if key_of is None:
        return [Part(None, model, calls)]
    by_key: dict[Any, list[Call]] = {}
    for c in calls:
        by_key.setdefault(key_of(c.arg), []).append(c)
    if not isinstance(model, KV):
        return [Part(key, model, cs) for key, cs in by_key.items()]
    key_model = KeyModel(model)
    return [Part(key, key_model, [
        Call(c.start, c.end, c.f, c.arg[1],
             c.result[1] if isinstance(c.result, list | tuple) else c.result,
             c.invoke, c.completion) for c in cs])
        for key, cs in by_key.items()]


@dataclass
class PartSearch:
    """A part no fast path decided: its search, to be run in slices."""

    part: Part
    calls: list[Call]
    analyzer: str
    slices: Generator[int, str | None, SearchOutcome]

    def result(self, out: SearchOutcome) -> PartResult:
        r = PartResult(out.valid, self.analyzer, out.steps, out.cache_size, len(out.prefix))
        if out.valid is False:
            r.counterexample = explanations.from_search(self.part.model, out, self.part.key)
        elif out.valid == UNKNOWN_VERDICT:
            r.reason = (f"{out.reason}: the longest linearizable prefix found has "
                        f"{len(out.prefix)} of {len(self.calls)} ops ({out.steps} steps, "
                        f"{out.cache_size} configurations cached)")
        return r


def searchable(model: Model, calls: list[Call]) -> tuple[list[Call], list[bool] | None]:
    """The calls the search needs, and which of them are read-only (None if the model
    does not say): a crashed read-only op constrains nothing, so it is left out."""
    read_only = getattr(model, "read_only", None)
    if read_only is None:
        return calls, None
    pure = [read_only(c.f, c.arg) for c in calls]
    if any(p and c.end is None for c, p in zip(calls, pure)):
        kept = [(c, p) for c, p in zip(calls, pure) if c.end is not None or not p]
        calls, pure = [c for c, _ in kept], [p for _, p in kept]
    return calls, pure


def start_part(part: Part, budget: Budget) -> PartResult | PartSearch:
    """The part's result from the fastest exact analyzer that applies, or its search."""
    model = part.model
    calls, pure = searchable(model, part.calls)
    if isinstance(model, Register | KeyModel) and applicable(calls, model.initial):
        violation = check_unique_register(calls, model.initial)
        if violation is None:
            return PartResult(True, "unique-register")
        cx = explanations.from_zones(violation, part.key)
        add_prefix(cx, model, calls, pure, budget)
        return PartResult(False, "unique-register", counterexample=cx)
    analyzer = "search"
    if isinstance(model, Counter):
        bounds = check_counter_bounds(calls, model.initial)
        if bounds is not None:
            cx = explanations.from_bounds(bounds)
            add_prefix(cx, model, calls, pure, budget)
            return PartResult(False, "counter-bounds", counterexample=cx)
        analyzer = "counter-bounds+search"
    return PartSearch(part, calls, analyzer, search_slices(model, calls, pure))


def add_prefix(cx: Counterexample, model: Model, calls: list[Call],
                pure: list[bool] | None, budget: Budget) -> None:
    """Fills a fast path's counterexample with the longest linearizable prefix and the
    state after it, from a search of at most ``PREFIX_SEARCH_SECONDS``; left empty if
    that search runs out of time."""
    deadline = time.monotonic() + PREFIX_SEARCH_SECONDS
    if budget.deadline is not None:
        deadline = min(deadline, budget.deadline)
    out = search(model, calls, Budget(deadline, budget.memory_limit_mb), pure)
    if out.valid is True:
        raise RuntimeError("internal error: a fast path found a history invalid that the "
                           "search linearized; please report this history")
    if out.valid is False:
        cx.prefix = [explanations.view(c) for c in out.prefix]
        cx.state = model.describe(out.state)
