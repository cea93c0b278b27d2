"""The register workload: reads, writes of unique values and compare-and-set on one key.

Workers read twice as often as they write or compare-and-set. Every written value is
unique (``UniqueValues``): a read then names the one write it saw, which is what makes a
history checkable fast. A cas ``[old, new]`` guesses as ``old`` one of the worker's own
last two writes (or null before it wrote): it succeeds when no other worker wrote since,
and a cas that fails is a ``fail`` (the comparison did not hold, nothing applied), which
the checker drops. After healing every serving node is read once more. The history is
judged by the linearizability checker with the cas-register model.
"""

from __future__ import annotations

from checkers.linearizable import Linearizable
from checkers.models import CasRegister
from harness.generator import from_fn
from harness.generator_core import GenContext, OpSpec
from workloads.base import UniqueValues, Workload, checked

OPERATIONS = frozenset({"read", "write", "cas"})


def register_op(values: UniqueValues, ctx: GenContext) -> OpSpec:
    """One op of a register: read 1/2, write 1/4, cas 1/4, drawn from the worker's rng."""
    pick = ctx.rng.random()
    if pick < 0.5:
        return ("read", None)
    if pick < 0.75:
        return ("write", values.next(ctx.worker))
    old = values.recent(ctx.worker, ctx.rng.randrange(2))
    return ("cas", [old, values.next(ctx.worker)])


def make_workload(options: dict[str, str]) -> Workload:
    values = UniqueValues()
    return Workload(
        name="register",
        generator=from_fn(lambda ctx: register_op(values, ctx)),
        final=("read", None),
        checker=checked({"linearizable": Linearizable(CasRegister())}),
        operations=OPERATIONS,
    )
