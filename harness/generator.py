"""The generator DSL: the op sources and combinators workloads and fault schedules are
built from (``harness.generator_core`` is the protocol they follow).

Every combinator keeps its state per worker (``ctx.worker``), so what one worker draws
never depends on what the others drew or when: the same seed gives each worker the same
ops. Counts "in all" (``limit``, ``once``) are shared out among the workers in scope by
rank, in advance, for the same reason. A generator object holds one run's state: build a
fresh one per run (workloads do, in ``make_workload``).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.generator_core import (
    GenContext,
    Generator,
    OpSpec,
    Step,
    Wait,
    deliver,
    reset_worker,
)
from harness.history import Op


@dataclass(frozen=True, slots=True)
class Constant:
    f: str
    value: Any

    def op(self, ctx: GenContext) -> OpSpec:
        return (self.f, self.value)


@dataclass(frozen=True, slots=True)
class Mix:
    """Picks one of several generators per op, with probability proportional to weight.

    Stateless: a picked generator that has run out (None) ends the mix for that worker,
    so put limits around a mix rather than inside it."""

    cumulative: tuple[float, ...]
    gens: tuple[Generator, ...]

    def op(self, ctx: GenContext) -> Step:
        pick = ctx.rng.random() * self.cumulative[-1]
        return self.gens[bisect.bisect_right(self.cumulative, pick)].op(ctx)


@dataclass(frozen=True, slots=True)
class FromFn:
    fn: Callable[[GenContext], OpSpec | None]

    def op(self, ctx: GenContext) -> OpSpec | None:
        return self.fn(ctx)


def constant(f: str, value: Any = None) -> Constant:
    """Always the same op, e.g. ``constant("add", 1)``."""
    return Constant(f, value)


def mix(weighted: Sequence[tuple[float, Generator]]) -> Mix:
    """``mix([(3, constant("add", 1)), (1, constant("read", None))])``: 3 adds per read."""
    if not weighted or any(w <= 0 for w, _ in weighted):
        raise ValueError("mix needs at least one generator, each with a positive weight")
    weights, gens = zip(*weighted)
    return Mix(tuple(itertools.accumulate(weights)), tuple(gens))


def from_fn(fn: Callable[[GenContext], OpSpec | None]) -> FromFn:
    """Any function of the context, e.g. random register writes drawn from ``ctx.rng``."""
    return FromFn(fn)


BARRIER_POLL = 0.01
"""Seconds between two looks at a barrier by a worker waiting there."""


def _scoped(gen: Generator, ctx: GenContext, rank: int, workers: int) -> Step:
    """``gen``'s answer to this worker as the ``rank``-th of ``workers``."""
    saved = ctx.rank, ctx.workers
    ctx.rank, ctx.workers = rank, workers
    try:
        return gen.op(ctx)
    finally:
        ctx.rank, ctx.workers = saved


@dataclass(slots=True)
class Limit:
    n: int
    gen: Generator
    taken: dict[int, int] = field(default_factory=dict)

    def op(self, ctx: GenContext) -> Step:
        workers, rank = (ctx.workers, ctx.rank) if ctx.workers > 0 else (1, 0)
        share = self.n // workers + (rank < self.n % workers)
        taken = self.taken.get(ctx.worker, 0)
        if taken >= share:
            return None
        spec = self.gen.op(ctx)
        if isinstance(spec, tuple):
            self.taken[ctx.worker] = taken + 1
        return spec

    def reset(self, worker: int) -> None:
        self.taken.pop(worker, None)
        reset_worker(self.gen, worker)

    def update(self, ctx: GenContext, completion: Op) -> None:
        deliver(self.gen, ctx, completion)


def limit(n: int, gen: Generator) -> Limit:
    """At most ``n`` ops of ``gen`` in all, shared out by rank among the workers in
    scope (worker of rank r takes ``n // W`` plus one if ``r < n % W``); inside
    ``each_thread``, ``n`` per worker."""
    if n < 0:
        raise ValueError("limit needs n >= 0")
    return Limit(n, gen)


def once(gen: Generator) -> Limit:
    """One op of ``gen``, taken by the worker of rank 0 (each worker's, in
    ``each_thread``)."""
    return Limit(1, gen)


@dataclass(slots=True)
class Repeat:
    gen: Generator
    times: int | None
    rounds: dict[int, int] = field(default_factory=dict)

    def op(self, ctx: GenContext) -> Step:
        spec = self.gen.op(ctx)
        if spec is not None:
            return spec
        rounds = self.rounds.get(ctx.worker, 0) + 1
        self.rounds[ctx.worker] = rounds
        if self.times is not None and rounds >= self.times:
            return None
        reset_worker(self.gen, ctx.worker)
        return self.gen.op(ctx)  # None again: an empty generator ends the repeat

    def reset(self, worker: int) -> None:
        self.rounds.pop(worker, None)
        reset_worker(self.gen, worker)

    def update(self, ctx: GenContext, completion: Op) -> None:
        deliver(self.gen, ctx, completion)


def repeat(gen: Generator, times: int | None = None) -> Repeat:
    """``gen`` again from its start each time it runs out, for this worker: ``times``
    rounds in all, or forever."""
    return Repeat(gen, times)


@dataclass(slots=True)
class TimeLimit:
    seconds: float
    gen: Generator
    started: dict[int, float] = field(default_factory=dict)

    def op(self, ctx: GenContext) -> Step:
        started = self.started.setdefault(ctx.worker, ctx.elapsed)
        if ctx.elapsed - started >= self.seconds:
            return None
        spec = self.gen.op(ctx)
        if isinstance(spec, Wait):  # never wait past the limit
            return Wait(min(spec.seconds, started + self.seconds - ctx.elapsed))
        return spec

    def reset(self, worker: int) -> None:
        self.started.pop(worker, None)
        reset_worker(self.gen, worker)

    def update(self, ctx: GenContext, completion: Op) -> None:
        deliver(self.gen, ctx, completion)


def time_limit(seconds: float, gen: Generator) -> TimeLimit:
    """``gen`` for ``seconds``, counted for each worker from its first ask."""
    return TimeLimit(seconds, gen)


@dataclass(slots=True)
class Stagger:
    interval: float
    gen: Generator
    next_at: dict[int, float] = field(default_factory=dict)

    def op(self, ctx: GenContext) -> Step:
        due = self.next_at.get(ctx.worker)
        if due is not None and ctx.elapsed < due:
            return Wait(due - ctx.elapsed)
        spec = self.gen.op(ctx)
        if isinstance(spec, tuple):
            per_worker = self.interval * max(ctx.workers, 1)
            start = ctx.elapsed if due is None else max(due, ctx.elapsed)
            self.next_at[ctx.worker] = start + ctx.rng.uniform(0, 2 * per_worker)
        return spec

    def reset(self, worker: int) -> None:
        self.next_at.pop(worker, None)
        reset_worker(self.gen, worker)

    def update(self, ctx: GenContext, completion: Op) -> None:
        deliver(self.gen, ctx, completion)


def stagger(interval: float, gen: Generator) -> Stagger:
    """``gen`` at one op per ``interval`` seconds on average, over the workers in scope
    (Jepsen's stagger): each worker waits a uniform random time in
    ``[0, 2 * interval * W)`` between its ops (one draw of the worker's rng per op)."""
    if interval <= 0:
        raise ValueError("stagger needs a positive interval")
    return Stagger(interval, gen)


@dataclass(slots=True)
class UntilOk:
    gen: Generator
    done: set[int] = field(default_factory=set)

    def op(self, ctx: GenContext) -> Step:
        return None if ctx.worker in self.done else self.gen.op(ctx)

    def reset(self, worker: int) -> None:
        self.done.discard(worker)
        reset_worker(self.gen, worker)

    def update(self, ctx: GenContext, completion: Op) -> None:
        if completion.type == "ok":
            self.done.add(ctx.worker)
        deliver(self.gen, ctx, completion)


def until_ok(gen: Generator) -> UntilOk:
    """``gen`` until one of its ops completes ``ok``, for each worker. Needs the
    interpreter to report completions (``update``); through ``mix`` they do not reach
    it (a mix does not remember which of its generators made an op)."""
    return UntilOk(gen)


@dataclass(slots=True)
class EachThread:
    gen: Generator

    def op(self, ctx: GenContext) -> Step:
        return _scoped(self.gen, ctx, 0, 1)

    def reset(self, worker: int) -> None:
        reset_worker(self.gen, worker)

    def update(self, ctx: GenContext, completion: Op) -> None:
        deliver(self.gen, ctx, completion)


def each_thread(gen: Generator) -> EachThread:
    """Every worker gets the whole of ``gen`` as if it were alone: ``each_thread(once(x))``
    is one ``x`` per worker, ``each_thread(limit(5, x))`` five."""
    return EachThread(gen)


@dataclass(slots=True)
class Reserve:
    groups: tuple[tuple[int, Generator], ...]
    rest: Generator

    def op(self, ctx: GenContext) -> Step:
        gen, rank, workers = self._pick(ctx)
        return _scoped(gen, ctx, rank, workers)

    def _pick(self, ctx: GenContext) -> tuple[Generator, int, int]:
        first = 0
        for n, gen in self.groups:
            if ctx.rank < first + n:
                return gen, ctx.rank - first, n
            first += n
        return self.rest, ctx.rank - first, max(ctx.workers - first, 0)

    def reset(self, worker: int) -> None:
        for _, gen in self.groups:
            reset_worker(gen, worker)
        reset_worker(self.rest, worker)

    def update(self, ctx: GenContext, completion: Op) -> None:
        deliver(self._pick(ctx)[0], ctx, completion)


def reserve(*groups: tuple[int, Generator], rest: Generator) -> Reserve:
    """Thread roles: ``reserve((5, reads), rest=writes)`` gives the workers of rank 0-4
    ``reads`` and the others ``writes`` (each group sees itself as all the workers)."""
    if any(n < 0 for n, _ in groups):
        raise ValueError("reserve needs group sizes >= 0")
    return Reserve(tuple(groups), rest)


@dataclass(slots=True)
class Phases:
    gens: tuple[Generator, ...]
    at: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    """worker -> (round, phase, arrived at the barrier ending that phase)"""
    arrivals: dict[tuple[int, int], int] = field(default_factory=dict)
    """(round, phase) -> workers arrived at its barrier: the one state shared by workers,
    which decides only when a worker goes on, never what it draws."""

    def op(self, ctx: GenContext) -> Step:
        rnd, k, arrived = self.at.get(ctx.worker, (0, 0, False))
        while k < len(self.gens):
            if not arrived:
                spec = self.gens[k].op(ctx)
                if spec is not None:
                    self.at[ctx.worker] = (rnd, k, False)
                    return spec
                if k == len(self.gens) - 1:
                    break
                self.arrivals[rnd, k] = self.arrivals.get((rnd, k), 0) + 1
                arrived = True
            if self.arrivals[rnd, k] < max(ctx.workers, 1):
                self.at[ctx.worker] = (rnd, k, True)
                return Wait(BARRIER_POLL)
            k, arrived = k + 1, False
        self.at[ctx.worker] = (rnd, len(self.gens), False)
        return None

    def reset(self, worker: int) -> None:
        rnd = self.at.get(worker, (0, 0, False))[0]
        self.at[worker] = (rnd + 1, 0, False)
        for gen in self.gens:
            reset_worker(gen, worker)

    def update(self, ctx: GenContext, completion: Op) -> None:
        k = self.at.get(ctx.worker, (0, 0, False))[1]
        if k < len(self.gens):
            deliver(self.gens[k], ctx, completion)


def phases(*gens: Generator) -> Phases:
    """``gens`` one after another, with a barrier between two: no worker starts phase
    k+1 before every worker in scope has finished phase k (a worker may wait there)."""
    if not gens:
        raise ValueError("phases needs at least one generator")
    return Phases(tuple(gens))


def then(first: Generator, second: Generator) -> Phases:
    """``phases(first, second)``."""
    return Phases((first, second))
