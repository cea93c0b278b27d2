"""The generator protocol: how the interpreter asks a generator for a worker's next op.

A generator is asked for one op at a time by one worker, through a ``GenContext`` that
carries that worker's own ``random.Random``. The random stream of worker *i* is seeded
from the run seed and *i* only, so the same seed gives every worker the same sequence
of ops no matter how the workers interleave: a failing run can be replayed. Rates and
the time limit are the interpreter's job; generators only say *what* to do. The
generators themselves, and the combinators that build workloads and fault schedules
from them, are ``harness.generator``'s DSL.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from harness.history import Op

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
    it defaults to the first process, which is the worker's index. Per-worker state of
    a generator is keyed by it."""
    workers: int = 0
    """How many workers share the generator being asked (0: unknown, taken as this
    worker alone). Combinators narrow it: ``each_thread`` to 1, ``reserve`` to a group."""
    rank: int = -1
    """This worker's index among those ``workers`` (defaults to ``worker``)."""

    def __post_init__(self) -> None:
        if self.worker < 0:
            self.worker = self.process
        if self.rank < 0:
            self.rank = self.worker


def worker_rng(seed: int, worker: int) -> random.Random:
    """The random stream of one worker: a function of (seed, worker) only.

    A string seed is hashed with SHA-512 by ``random``, independent of PYTHONHASHSEED.
    """
    return random.Random(f"splitbrain:{seed}:{worker}")


@dataclass(frozen=True, slots=True)
class Wait:
    """Not an op yet: ask again after ``seconds`` (a barrier, or a stagger's pause)."""

    seconds: float


Step = OpSpec | Wait | None
"""What a generator answers: an op, a wait, or None (nothing more for this worker)."""


class Generator(Protocol):
    """``op`` is the only method required. Stateful generators (``harness.generator``) also
    have ``reset(worker)`` (start over for that worker, as ``repeat`` does) and
    ``update(ctx, completion)`` (the completion of the worker's last op, for
    ``until_ok``)."""

    def op(self, ctx: GenContext) -> Step:
        """The next ``(f, value)``, a :class:`Wait`, or None when this worker has
        nothing more to do."""


def reset_worker(gen: Generator, worker: int) -> None:
    """Starts ``gen`` over for ``worker``, if it keeps state."""
    reset = getattr(gen, "reset", None)
    if reset is not None:
        reset(worker)


def deliver(gen: Generator, ctx: GenContext, completion: Op) -> None:
    """Tells ``gen`` how the worker's last op completed, if it wants to know."""
    update = getattr(gen, "update", None)
    if update is not None:
        update(ctx, completion)
