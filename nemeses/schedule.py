"""Fault schedules as generators, and the targeted sequence ``isolate-kill-primary``.

Each fault of a run gets a generator of its own (``Fault.steps``, built from
``harness.generator``'s DSL plus :func:`sleep`), run as a *nemesis thread*: the threads
run side by side, so a partition can begin while a kill is in force and faults overlap.
:func:`plan` runs the threads ahead in virtual time, each with a random stream drawn
from the seed, and merges their ops by time into the ``(delay, op)`` pairs the
interpreter performs one after another (as Jepsen's single nemesis process does). The
plan is a function of the seed alone: the same seed gives the same faults at the same
offsets. Completions are not fed back: a step that must act on what an earlier step
chose names it (``{"target": "isolated"}``) and the nemesis resolves it when it acts.

Every op of a fault's thread that heals something carries ``extra["ends"]``, the op
whose fault it ends (``Fault.heals``), so the report draws each fault's band from the
history alone, with no table of heals of its own.
"""

from __future__ import annotations

import heapq
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.generator import constant, once, phases, repeat
from harness.generator_core import GenContext, Generator, Step, Wait
from harness.history import INVOKE, Op
from nemeses.partition import PartitionNemesis, complete_grudge
from nemeses.process import KILL, ProcessNemesis

if TYPE_CHECKING:
    from harness.context import Test
    from nemeses.base import Fault

NEMESIS_PROCESS = "nemesis"
SPREAD = 0.25
"""A sleep lasts its nominal time give or take this share, drawn from the thread's rng."""
MIN_WAIT = 0.001
"""A thread that answers ``Wait(0)`` still moves on: no plan spins in place."""


@dataclass(slots=True)
class Sleep:
    seconds: float
    until: dict[int, float] = field(default_factory=dict)

    def op(self, ctx: GenContext) -> Step:
        until = self.until.get(ctx.worker)
        if until is None:
            until = ctx.elapsed + self.seconds * ctx.rng.uniform(1 - SPREAD, 1 + SPREAD)
            self.until[ctx.worker] = until
        return Wait(until - ctx.elapsed) if until - ctx.elapsed > 1e-9 else None

    def reset(self, worker: int) -> None:
        self.until.pop(worker, None)


def sleep(seconds: float) -> Sleep:
    """No op: waits ``seconds`` (give or take a quarter), then runs out. Between two
    steps of ``phases`` it is the pause between two faults."""
    return Sleep(seconds)


def alternate(start: str, stop: str, interval: float) -> Generator:
    """Forever: wait, ``start``, wait, ``stop`` (each wait ``interval`` give or take)."""
    return repeat(phases(sleep(interval), once(constant(start)),
                         sleep(interval), once(constant(stop))))


def invocation(f: str, value: Any = None, ends: str | None = None) -> Op:
    return Op(INVOKE, f, value, NEMESIS_PROCESS, extra={} if ends is None else {"ends": ends})


def plan(faults: Sequence[Fault], interval: float,
         rng: random.Random) -> Iterator[tuple[float, Op]]:
    """Endless (while any thread goes on): each fault's ops as ``(delay since the
    previous op, invocation)``, the threads merged by virtual time, ties by fault order."""
    threads = [f.steps(interval) if f.steps else alternate(f.start, f.stop, interval)
               for f in faults]
    contexts = [GenContext(rng=random.Random(rng.getrandbits(64)), process=i, node="",
                           elapsed=0.0, workers=1) for i in range(len(faults))]
    heap = [(0.0, i) for i in range(len(faults))]
    last = 0.0
    while heap:
        at, i = heapq.heappop(heap)
        ctx = contexts[i]
        ctx.elapsed = at
        step = threads[i].op(ctx)
        if step is None:
            continue
        if isinstance(step, Wait):
            heapq.heappush(heap, (at + max(step.seconds, MIN_WAIT), i))
            continue
        f, value = step
        yield at - last, invocation(f, value, faults[i].heals().get(f))
        last = at
        heapq.heappush(heap, (at, i))


PRIMARIES = {"target": "primaries"}
ISOLATED = {"target": "isolated"}


def isolate_then_kill(interval: float) -> Generator:
    """Forever: wait, cut the primaries off, wait, kill them (the same nodes), wait,
    heal the network, restart them. The network heals first, as in the final heal: a
    member of a quorum system restarted alone may never serve, and a DB's start waits
    until it does."""
    return repeat(phases(sleep(interval), once(constant("start-partition", PRIMARIES)),
                         sleep(interval), once(constant("kill", ISOLATED)),
                         sleep(interval), once(constant("stop-partition")),
                         once(constant("start"))))


class PrimaryNemesis:
    """Partitions and kills aimed at the nodes that lead: ``start-partition`` with value
    ``PRIMARIES`` cuts the current primaries (``Primaries.primaries``) off from the rest
    and remembers them; ``kill`` with value ``ISOLATED`` kills those. When no node
    claims to lead (an election in progress), one node drawn from the rng stands in; the
    completion's ``extra["primaries"]`` says which nodes claimed to lead (none: a
    stand-in was cut). Other values go through unchanged."""

    def __init__(self, test: Test, db: Any, rng: random.Random, nodes: Sequence[str]) -> None:
        self.db = db
        self.rng = rng
        self.nodes = list(nodes)
        self.partition = PartitionNemesis(rng)
        self.kill = ProcessNemesis(KILL, db, test.spec.system, rng, nodes)
        self.fs = self.partition.fs | self.kill.fs
        self.isolated: list[str] = []
        self._lock = threading.Lock()

    def setup(self, test: Test) -> None:
        self.partition.setup(test)
        self.kill.setup(test)

    def invoke(self, test: Test, op: Op) -> Op:
        with self._lock:
            value = op.value
            leaders: list[str] | None = None
            if op.f == "start-partition" and value == PRIMARIES:
                leaders = sorted(set(self.db.primaries(test)) & set(self.nodes))
                self.isolated = leaders or [self.rng.choice(self.nodes)]
                value = complete_grudge([self.isolated,
                                         [n for n in test.nodes if n not in self.isolated]])
            elif op.f == "kill" and value == ISOLATED:
                value = list(self.isolated)
            target = self.partition if op.f in self.partition.fs else self.kill
            done = target.invoke(test, Op(op.type, op.f, value, op.process, extra=op.extra))
            if leaders is not None:  # the history says whether a leader was cut, or a stand-in
                done.extra["primaries"] = leaders
            return done

    def teardown(self, test: Test) -> None:
        """The network first, so restarted nodes can rejoin."""
        try:
            self.partition.teardown(test)
        finally:
            self.kill.teardown(test)
