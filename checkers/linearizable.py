"""The linearizability checker: exact verdicts, fast where the model allows, within budgets.

``check(model, history)`` prepares the history (failed ops dropped, crashed ops open to
the end, nemesis ops ignored, real time from history order), splits it over
independent keys where the model has them (P-compositionality), and checks each part
with the fastest exact analyzer that applies:

* ``unit-counter``: counters whose adds are all +1 (``checkers.counter_linear``);
* ``counter-bounds``: Jepsen-style bounds refute a counter read outright; a counter that
  passes them goes on to the search;
* ``unique-register``: read/write registers whose written values are distinct, by
  Gibbons & Korach's zones, in O(n log n) (``checkers.register_unique``);
* ``search``: Wing & Gong with Lowe's memoization (``checkers.search``), for the rest.

Parts are searched in turns, then, when that takes a while and there are several cores,
in parallel worker processes; the first invalid part ends the whole check. A time or memory
budget turns the verdict into ``"unknown"`` with how far the search got, never a crash.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass, field
from typing import Any

from checkers.base import UNKNOWN as UNKNOWN_VERDICT
from checkers.base import Result
from checkers.calls import Budget, rss_mb
from checkers.counter_linear import check_unit_counter
from checkers.counterexample import Counterexample, OpView
from checkers.models import Counter, Model
from checkers.partitions import (
    Part,
    PartResult,
    PartSearch,
    add_prefix,
    partition,
    prepare,
    searchable,
    start_part,
)
from checkers.search import gc_paused, run_slices
from harness.history import Op

DEFAULT_MEMORY_LIMIT_MB = min(8192, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
                              // (3 * 1048576))
"""A third of the machine's memory, at most 8 GiB: the search gives up (unknown) before
the machine would swap."""
SERIAL_SECONDS = 0.1
"""How long searches run in turns in this process before the rest of them move to worker
processes (where there are several cores). Starting a pool of workers costs 10 to 20 ms
of CPU (forks, copied pages, the pool's threads): short checks never pay for it, and
long ones use every core after a tenth of a second."""


@dataclass
class _Handover:
    """The searches left to the workers; set before the pool forks, so each worker
    inherits them mid-way (generators cannot be pickled, but they survive a fork)."""

    searches: list[PartSearch] = field(default_factory=list)
    budget: Budget | None = None


_HANDOVER = _Handover()


def check(model: Model, history: list[Op], *, time_limit: float | None = None,
          memory_limit_mb: int | None = None, workers: int | None = None) -> dict:
    """Is ``history`` linearizable under ``model``?

    ``time_limit`` (seconds) and ``memory_limit_mb`` (resident set; default
    ``DEFAULT_MEMORY_LIMIT_MB``) turn an undecided check into ``"unknown"``; ``workers``
    caps the processes searching independent keys (default: the cores). Returns
    ``valid`` (True, False or "unknown"), ``model``, ``analyzer``, ``ops`` (client
    ops), ``keys``, ``anomalies`` (one ``nonlinearizable`` entry when invalid),
    ``stats``; plus ``explanation`` and ``counterexample`` (``Counterexample.to_dict``)
    when invalid, ``reason`` and ``explanation`` when unknown.
    """
    started = time.monotonic()
    memory_limit_mb = memory_limit_mb or DEFAULT_MEMORY_LIMIT_MB
    deadline = None if time_limit is None else started + time_limit
    if isinstance(model, Counter):
        # Before ``prepare``: the unit counter's single pass needs no calls, and
        # building a million of them would take longer than the check itself.
        unit = check_unit_counter(history, model.initial)
        if unit is not None:
            unit.setdefault("analyzer", "unit-counter")
            unit.setdefault("anomalies", [])
            if unit["valid"] is False:  # the verdict is certain; the search adds a prefix
                cx = _counterexample_from_dict(unit["counterexample"])
                calls, _ = prepare(history)
                add_prefix(cx, model, *searchable(model, calls),
                           Budget(deadline, memory_limit_mb))
                unit["counterexample"] = cx.to_dict()
            elapsed = round(time.monotonic() - started, 4)
            return {"model": model.name, **unit, "stats": {"elapsed_s": elapsed}}
    calls, n_ops = prepare(history)
    base = {"model": model.name, "ops": n_ops}
    parts = partition(model, calls)
    workers = min(workers or os.cpu_count() or 1, len(parts))
    results = _check_parts(parts, Budget(deadline, memory_limit_mb), workers)
    return _summarize(base, parts, results, time.monotonic() - started)


def _check_parts(parts: list[Part], budget: Budget, workers: int) -> list[PartResult]:
    """Every part's result, or fewer when one is invalid (it ends the check).

    Fast paths first; then the searches take turns of one slice each, so an easy
    invalid key is found even behind a hard valid one; after ``SERIAL_SECONDS`` the
    searches still running move to ``workers`` processes.
    """
    results: list[PartResult] = []
    searches: list[PartSearch] = []
    for part in parts:
        started = start_part(part, budget)
        if isinstance(started, PartResult):
            results.append(started)
            if started.valid is False:
                return results
        else:
            searches.append(started)
    handover = time.monotonic() + SERIAL_SECONDS if workers > 1 else None
    with gc_paused():
        searches = _take_turns(searches, budget, results, handover)
    if searches:
        results += _in_workers(searches, budget, workers)
    return results


def _take_turns(searches: list[PartSearch], budget: Budget, results: list[PartResult],
                handover: float | None = None) -> list[PartSearch]:
    """Runs ``searches`` one slice each in turn, adding each finished one's result to
    ``results``, until all are done, one is invalid, or (past the ``handover`` time,
    with two or more left) it is time for workers. Returns the searches left."""
    reason = None
    while searches:
        running = []
        for s in searches:
            try:
                s.slices.send(reason)
                running.append(s)
            except StopIteration as done:
                results.append(s.result(done.value))
                if results[-1].valid is False:
                    return []
        searches = running
        if not searches:
            break
        if handover is not None and time.monotonic() > handover and len(searches) > 1:
            return searches
        reason = budget.exceeded()
    return []


def _in_workers(searches: list[PartSearch], budget: Budget, workers: int
                ) -> list[PartResult]:
    """Continues ``searches`` in forked workers, biggest first, each taken by the next
    free worker (how hard a key is shows only while it is searched, so shares fixed in
    advance would leave a core idle); the first invalid result terminates the rest.
    Each worker may grow by its share of what is left of the memory budget (a fork
    starts out sharing the parent's pages)."""
    searches.sort(key=lambda s: -len(s.calls))
    workers = min(workers, len(searches))
    rss = rss_mb()
    _HANDOVER.searches = searches
    _HANDOVER.budget = Budget(budget.deadline,
                              int(rss + max(budget.memory_limit_mb - rss, 0) / workers))
    results = []
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for r in pool.imap_unordered(_continue_search, range(len(searches))):
                results.append(r)
                if r.valid is False:
                    break  # leaving the block terminates the other workers
    finally:
        _HANDOVER.searches, _HANDOVER.budget = [], None
    return results


def _continue_search(i: int) -> PartResult:
    s = _HANDOVER.searches[i]
    budget = _HANDOVER.budget
    assert budget is not None   # set before the pool forked
    with gc_paused():
        return s.result(run_slices(s.slices, budget))


def _summarize(base: dict, parts: list[Part], results: list[PartResult],
               elapsed: float) -> dict:
    analyzers = sorted({r.analyzer for r in results})
    out: dict[str, Any] = {
        **base,
        "valid": True,
        "analyzer": "+".join(analyzers) or "search",
        "keys": len(parts),
        "anomalies": [],
        "stats": {
            "elapsed_s": round(elapsed, 4),
            "steps": sum(r.steps for r in results),
            "cache_size": sum(r.cache_size for r in results),
        },
    }
    invalid = next((r for r in results if r.valid is False), None)
    if invalid is not None:
        cx = invalid.counterexample
        assert cx is not None   # every invalid part result carries one
        out.update(valid=False, analyzer=invalid.analyzer, explanation=cx.explanation,
                   counterexample=cx.to_dict())
        out["anomalies"] = [{"type": "nonlinearizable", "count": 1,
                             "op": cx.op.__dict__, "explanation": cx.explanation}]
        return out
    unknown = [r for r in results if r.valid == UNKNOWN_VERDICT]
    if unknown:
        reason = unknown[0].reason
        if len(parts) > 1:
            reason = f"{len(unknown)} of {len(parts)} keys undecided; first: {reason}"
        out.update(valid=UNKNOWN_VERDICT, reason=reason, explanation=reason)
        out["stats"]["longest_prefix"] = unknown[0].linearized
    return out


class Linearizable:
    """The checker: ``Linearizable(model, time_limit=..., memory_limit_mb=...,
    workers=...)``."""

    def __init__(self, model: Model, **budgets: Any) -> None:
        self.model = model
        self.budgets = budgets

    def check(self, test: Any, history: list[Op]) -> Result:
        return check(self.model, history, **self.budgets)


def render(result: dict) -> str:
    """The terminal text for a result: the verdict, then why."""
    valid = result["valid"]
    word = {True: "linearizable", False: "NOT linearizable"}.get(valid, "unknown")
    head = (f"{word} ({result.get('model')}, {result.get('ops', 0)} ops, "
            f"{result.get('analyzer')}, {result.get('stats', {}).get('elapsed_s', 0):.2f} s)")
    if valid is False and "counterexample" in result:
        cx = result["counterexample"]
        return head + "\n" + _counterexample_from_dict(cx).render_text()
    if valid == UNKNOWN_VERDICT:
        return head + "\n" + result.get("reason", "")
    return head


def _counterexample_from_dict(d: dict) -> Counterexample:
    return Counterexample(OpView(**d["op"]), d["explanation"], d.get("state", ""),
                          [OpView(**v) for v in d.get("prefix", [])],
                          [OpView(**v) for v in d.get("concurrent", [])])
