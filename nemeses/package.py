"""Turning fault names (``--nemesis partition,kill``) into a nemesis and its schedule.

The schedule is a deterministic function of the rng: the same seed yields the same
sequence of fault operations and delays. Each nemesis draws its targets (which nodes to
cut or kill) from an rng of its own, also derived from the seed, because some choices
(the current primaries) can only be made when the fault happens. The history records
the choice in the completion's value.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.errors import UsageError
from harness.history import Op
from nemeses.base import Nemesis, NoopNemesis
from nemeses.container import ContainerNemesis
from nemeses.latency import LatencyNemesis
from nemeses.loss import LossNemesis
from nemeses.partition import PartitionNemesis
from nemeses.process import KILL, PAUSE, ProcessNemesis

if TYPE_CHECKING:
    from harness.context import Test

NEMESIS_PROCESS = "nemesis"


@dataclass(frozen=True)
class Fault:
    """A fault the user can name: how to build its nemesis, and its start/stop ops."""

    build: Callable[[Test, object, random.Random, Sequence[str]], Nemesis]
    start: str
    stop: str


FAULTS: dict[str, Fault] = {
    "partition": Fault(lambda test, db, rng, nodes: PartitionNemesis(rng), "start-partition",
                       "stop-partition"),
    "partition-one": Fault(lambda test, db, rng, nodes: PartitionNemesis(rng, "isolate-one"),
                           "start-partition", "stop-partition"),
    "partition-ring": Fault(lambda test, db, rng, nodes: PartitionNemesis(rng, "majorities-ring"),
                            "start-partition", "stop-partition"),
    "kill": Fault(lambda test, db, rng, nodes: ProcessNemesis(KILL, db, test.spec.system,
                                                             rng, nodes),
                  "kill", "start"),
    "pause": Fault(lambda test, db, rng, nodes: ProcessNemesis(PAUSE, db, test.spec.system,
                                                              rng, nodes),
                   "pause", "resume"),
    "loss": Fault(lambda test, db, rng, nodes: LossNemesis(), "start-loss", "stop-loss"),
    "latency": Fault(lambda test, db, rng, nodes: LatencyNemesis(), "start-latency",
                     "stop-latency"),
    "container-kill": Fault(lambda test, db, rng, nodes: ContainerNemesis(True, db, rng, nodes),
                            "kill-container", "start-container"),
    "container-pause": Fault(lambda test, db, rng, nodes: ContainerNemesis(False, db, rng,
                                                                           nodes),
                             "pause-container", "resume-container"),
}
"""Known fault names. ``none`` (or nothing) means no faults."""


class ComposedNemesis:
    """Several nemeses as one: each op goes to the nemesis that performs its ``f``."""

    def __init__(self, nemeses: list[Nemesis]) -> None:
        self.nemeses = nemeses
        self.by_f: dict[str, Nemesis] = {}
        for nemesis in nemeses:
            for f in nemesis.fs:
                if f in self.by_f:
                    raise UsageError(f"two requested faults both perform {f!r}; pick one")
                self.by_f[f] = nemesis
        self.fs = frozenset(self.by_f)

    def setup(self, test: Test) -> None:
        for nemesis in self.nemeses:
            nemesis.setup(test)

    def invoke(self, test: Test, op: Op) -> Op:
        nemesis = self.by_f.get(op.f)
        if nemesis is None:
            raise ValueError(f"no nemesis performs {op.f!r} (known: {sorted(self.fs)})")
        return nemesis.invoke(test, op)

    def teardown(self, test: Test) -> None:
        """Tears every nemesis down even when one fails, then raises the first failure."""
        errors = []
        for nemesis in self.nemeses:
            try:
                nemesis.teardown(test)
            except Exception as e:  # each must get its chance to heal
                errors.append(e)
        if errors:
            raise errors[0]


@dataclass
class NemesisPackage:
    """What the run needs to inject faults: the nemesis, when to do what, how to heal."""

    nemesis: Nemesis
    schedule: Iterator[tuple[float, Op]] = field(default_factory=lambda: iter(()))
    final: list[Op] = field(default_factory=list)


def invocation(f: str) -> Op:
    return Op("invoke", f, None, NEMESIS_PROCESS)


def alternating_schedule(faults: list[Fault], rng: random.Random,
                         interval: float) -> Iterator[tuple[float, Op]]:
    """Endless: start a fault, wait, stop it, wait, next fault; each wait ``interval``
    seconds give or take a quarter, drawn from ``rng``."""
    for fault in itertools.cycle(faults):
        for f in (fault.start, fault.stop):
            yield interval * rng.uniform(0.75, 1.25), invocation(f)


def fault_names(names: list[str]) -> list[str]:
    """The distinct requested faults, ``none`` dropped; UsageError for an unknown one.

    The run loop calls this before any cluster exists, so a typo costs one line."""
    wanted = [n for n in dict.fromkeys(names) if n != "none"]
    unknown = [n for n in wanted if n not in FAULTS]
    if unknown:
        raise UsageError(f"unknown fault {unknown[0]!r}; known: none, {', '.join(FAULTS)}")
    return wanted


def build_nemesis(names: list[str], test: Test, db: object, rng: random.Random,
                  interval: float = 5.0, nodes: Sequence[str] | None = None) -> NemesisPackage:
    """The nemesis for the fault ``names``; UsageError for names it does not know, or
    for faults the system cannot take. ``nodes`` are where the system runs (default:
    every node of the test): crash faults aim there."""
    wanted = fault_names(names)
    if not wanted:
        return NemesisPackage(NoopNemesis())
    if interval <= 0:
        raise UsageError(f"the nemesis interval must be positive, got {interval}")
    faults = [FAULTS[n] for n in wanted]
    targets = list(nodes) if nodes is not None else test.nodes
    nemeses = [fault.build(test, db, random.Random(rng.getrandbits(64)), targets)
               for fault in faults]
    schedule_rng = random.Random(rng.getrandbits(64))
    # Heal in FAULTS' order (the network before restarts, so restarted nodes can rejoin).
    final = [invocation(f) for f in dict.fromkeys(
        fault.stop for name, fault in FAULTS.items() if name in wanted)]
    return NemesisPackage(ComposedNemesis(nemeses),
                          alternating_schedule(faults, schedule_rng, interval), final)
