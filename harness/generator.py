"""Deterministic op sources: what each worker does next.

A generator is asked for one op at a time by one worker, through a ``GenContext`` that
carries that worker's own ``random.Random``. The random stream of worker *i* is seeded
from the run seed and *i* only, so the same seed gives every worker the same sequence
of ops no matter how the workers interleave: a failing run can be replayed. Rates and
the time limit are the interpreter's job; generators only say *what* to do.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

OpSpec = tuple[str, Any]
"""``(f, value)`` of the next invocation."""


@dataclass(slots=True)
class GenContext:
    """What a generator may look at; the interpreter updates process and elapsed."""

    rng: random.Random
    process: int
    node: str
    elapsed: float
    """Seconds since the run started."""
    worker: int = -1
    """The worker asking, fixed for the run while ``process`` changes after an ``info``;
    it defaults to the first process, which is the worker's index."""

    def __post_init__(self) -> None:
        if self.worker < 0:
            self.worker = self.process


def worker_rng(seed: int, worker: int) -> random.Random:
    """The random stream of one worker: a function of (seed, worker) only.

    A string seed is hashed with SHA-512 by ``random``, independent of PYTHONHASHSEED.
    """
    return random.Random(f"splitbrain:{seed}:{worker}")


class Generator(Protocol):
    def op(self, ctx: GenContext) -> OpSpec | None:
        """The next ``(f, value)``, or None when this worker has nothing more to do."""


@dataclass(frozen=True, slots=True)
class Constant:
    f: str
    value: Any

    def op(self, ctx: GenContext) -> OpSpec:
        return (self.f, self.value)


@dataclass(frozen=True, slots=True)
class Mix:
    """Picks one of several generators per op, with probability proportional to weight."""

    cumulative: tuple[float, ...]
    gens: tuple[Generator, ...]

    def op(self, ctx: GenContext) -> OpSpec | None:
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


@dataclass(slots=True)
class Independent:
    """Ops of ``gen`` spread over independent keys: see :func:`independent`."""

    gen: Generator
    threads_per_key: int
    ops_per_key: int
    drawn: dict[int, int]

    def op(self, ctx: GenContext) -> OpSpec | None:
        spec = self.gen.op(ctx)
        if spec is None:
            return None
        n = self.drawn.get(ctx.worker, 0)
        self.drawn[ctx.worker] = n + 1
        key = f"{ctx.worker // self.threads_per_key}.{n // self.ops_per_key}"
        return (spec[0], [key, spec[1]])


def independent(gen: Generator, *, threads_per_key: int, ops_per_key: int) -> Independent:
    """Jepsen's independent concurrent generator, kept deterministic per worker.

    Workers ``0..t-1`` share a key, ``t..2t-1`` the next, and so on; every op's value
    becomes ``[key, value]``. A worker moves to its group's next key after
    ``ops_per_key`` ops of its own (not of the group: counting the group's ops would
    make each worker's keys depend on how the workers interleave), so a key sees at most
    ``threads_per_key * ops_per_key`` ops. Key ``"g.r"`` is group g's r-th: never reused.
    """
    if threads_per_key < 1 or ops_per_key < 1:
        raise ValueError("independent needs threads_per_key and ops_per_key >= 1")
    return Independent(gen, threads_per_key, ops_per_key, {})
