"""The kv workload: the register workload over many independent keys.

As Jepsen's independent concurrent generator: workers are grouped ``THREADS_PER_KEY`` to
a key, and each worker moves its group to a fresh key after ``OPS_PER_KEY`` ops of its
own (:func:`independent`), so every key sees a short, highly concurrent
history. Each op's value is ``[key, v]`` with register semantics per key: ``read``
returns ``[key, v]``, ``write [key, v]``, ``cas [key, [old, new]]``. The linearizability
checker with the kv model splits the history by key and checks keys independently (in
worker processes when there are several cores); a short history per key keeps every
search small. There are no final reads: each key is done when its group moves on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from checkers.base import Result
from checkers.linearizable import Linearizable
from checkers.models import KV
from harness.generator import from_fn
from harness.generator_core import GenContext, Generator, Step, deliver, reset_worker
from harness.history import INVOKE, NEMESIS, Op
from workloads.base import UniqueValues, Workload, checked
from workloads.register import OPERATIONS, register_op

THREADS_PER_KEY = 3
OPS_PER_KEY = 40
"""Per worker: a key then has at most 3 x 40 ops, a search of moments."""


@dataclass(slots=True)
class Independent:
    """Ops of ``gen`` spread over independent keys: see :func:`independent`."""

    gen: Generator
    threads_per_key: int
    ops_per_key: int
    drawn: dict[int, int] = field(default_factory=dict)

    def op(self, ctx: GenContext) -> Step:
        spec = self.gen.op(ctx)
        if not isinstance(spec, tuple):
            return spec
        n = self.drawn.get(ctx.worker, 0)
        self.drawn[ctx.worker] = n + 1
        key = f"{ctx.rank // self.threads_per_key}.{n // self.ops_per_key}"
        return (spec[0], [key, spec[1]])

    def reset(self, worker: int) -> None:
        reset_worker(self.gen, worker)  # but never a key again: keys stay fresh

    def update(self, ctx: GenContext, completion: Op) -> None:
        deliver(self.gen, ctx, completion)


def independent(gen: Generator, *, threads_per_key: int, ops_per_key: int) -> Independent:
    """Jepsen's independent concurrent generator, kept deterministic per worker.

    Workers of rank ``0..t-1`` share a key, ``t..2t-1`` the next, and so on; every op's
    value becomes ``[key, value]``. A worker moves to its group's next key after
    ``ops_per_key`` ops of its own (not of the group: counting the group's ops would
    make each worker's keys depend on how the workers interleave), so a key sees at most
    ``threads_per_key * ops_per_key`` ops. Key ``"g.r"`` is group g's r-th: never reused.
    """
    if threads_per_key < 1 or ops_per_key < 1:
        raise ValueError("independent needs threads_per_key and ops_per_key >= 1")
    return Independent(gen, threads_per_key, ops_per_key)


class KeyTable:
    """Per key, how its ops completed: the table behind the kv verdict.

    The verdict itself is the linearizability checker's (which names the key of any
    counterexample); this only counts, so it is always valid. A key's count of ``info``
    ops shows where the faults landed."""

    def check(self, test: Any, history: list[Op]) -> Result:
        started: dict[Any, Any] = {}
        table: dict[str, Counter[str]] = {}
        for op in history:
            if op.process == NEMESIS:
                continue
            if op.type == INVOKE:
                started[op.process] = op.value
                continue
            value = started.pop(op.process, None)
            if isinstance(value, list) and len(value) == 2:
                table.setdefault(str(value[0]), Counter())[op.type] += 1
        sizes = sorted(sum(c.values()) for c in table.values())
        summary = (f"{len(table):,} keys, {sizes[len(sizes) // 2]} ops per key (median), "
                   f"{sizes[-1]} at most" if sizes else "no keys")
        return {"valid": True, "keys": len(table), "summary": summary,
                "per_key": {k: dict(c) for k, c in sorted(table.items())}}


def make_workload(options: dict[str, str]) -> Workload:
    values = UniqueValues()
    return Workload(
        name="kv",
        generator=independent(from_fn(lambda ctx: register_op(values, ctx)),
                              threads_per_key=THREADS_PER_KEY, ops_per_key=OPS_PER_KEY),
        final=None,
        checker=checked({"linearizable": Linearizable(KV()), "keys": KeyTable()}),
        operations=OPERATIONS,
    )
