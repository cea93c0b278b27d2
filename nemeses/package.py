"""Turning fault names (``--nemesis partition,kill``) into a nemesis and its schedule.

A name is a bundled fault (``FAULTS``) or a user's ``package.module:factory`` returning a
``nemeses.base.Fault``. The schedule is a plan of the faults' generators
(``nemeses.schedule``), a deterministic function of the rng: the same seed yields the
same fault operations at the same offsets. Each nemesis draws its targets (which nodes to
cut or kill) from an rng of its own, also derived from the seed, because some choices
(the current primaries) can only be made when the fault happens. The history records
the choice in the completion's value.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.context import DEFAULT_NEMESIS
from harness.db import Killable, Pausable, Primaries
from harness.errors import UsageError
from harness.history import Op
from harness.registry import load_factory
from nemeses.base import Fault, Nemesis, NoopNemesis
from nemeses.container import ContainerNemesis
from nemeses.latency import LatencyNemesis
from nemeses.loss import LossNemesis
from nemeses.partition import PartitionNemesis
from nemeses.process import KILL, PAUSE, ProcessNemesis
from nemeses.schedule import PrimaryNemesis, invocation, isolate_then_kill, plan

if TYPE_CHECKING:
    from harness.context import Test

def _partition(topology: str) -> Fault:
    return Fault(lambda test, db, rng, nodes: PartitionNemesis(rng, topology),
                 "start-partition", "stop-partition", network=True)


FAULTS: dict[str, Fault] = {
    "partition": _partition("random-halves"),
    "partition-one": _partition("isolate-one"),
    "partition-ring": _partition("majorities-ring"),
    "kill": Fault(lambda test, db, rng, nodes: ProcessNemesis(KILL, db, test.spec.system,
                                                             rng, nodes),
                  "kill", "start", needs=(Killable,)),
    "pause": Fault(lambda test, db, rng, nodes: ProcessNemesis(PAUSE, db, test.spec.system,
                                                              rng, nodes),
                   "pause", "resume", needs=(Pausable,)),
    "loss": Fault(lambda test, db, rng, nodes: LossNemesis(test.spec.nemesis_settings.loss),
                  "start-loss", "stop-loss", network=True),
    "latency": Fault(lambda test, db, rng, nodes: LatencyNemesis(
        test.spec.nemesis_settings.latency, test.spec.nemesis_settings.jitter),
                     "start-latency", "stop-latency", network=True),
    "container-kill": Fault(lambda test, db, rng, nodes: ContainerNemesis(True, db, rng, nodes),
                            "kill-container", "start-container", needs=(Killable,)),
    "container-pause": Fault(lambda test, db, rng, nodes: ContainerNemesis(False, db, rng,
                                                                           nodes),
                             "pause-container", "resume-container"),
    "isolate-kill-primary": Fault(PrimaryNemesis, "start-partition", "stop-partition",
                                  network=True, needs=(Primaries, Killable),
                                  steps=isolate_then_kill, pairs=(("kill", "start"),)),
}
"""Known fault names. ``none`` (or nothing) means no faults."""

CANNOT: dict[type, str] = {Killable: KILL.cannot, Pausable: PAUSE.cannot,
          Primaries: "cannot say which node leads: it has no primaries()"}
"""How a refusal says the system lacks a capability."""


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
    notes: list[str] = field(default_factory=list)
    """Default faults left out because they could not act on the run, each in a line."""


def resolve(name: str) -> Fault:
    """The fault ``name`` stands for: bundled, or a user's ``package.module:factory``
    (called with no arguments; it must return a ``Fault``). UsageError otherwise."""
    if name in FAULTS:
        return FAULTS[name]
    if ":" not in name:
        raise UsageError(f"unknown fault {name!r:.80}; known: none, {', '.join(FAULTS)} "
                         "(or package.module:factory)")
    factory = load_factory("nemesis", name, {})
    try:
        fault = factory()
    except UsageError:
        raise
    except (Exception, SystemExit) as e:  # a user's factory may fail in any way
        raise UsageError(f"the nemesis factory {name} failed: {type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
                         ) from None
    if not isinstance(fault, Fault):
        raise UsageError(f"{name} did not make a fault (it made a {type(fault).__name__}): "
                         "a nemesis factory returns nemeses.base.Fault")
    ops = [fault.start, fault.stop, *(f for pair in fault.pairs for f in pair)]
    if not all(isinstance(f, str) and f for f in ops) or len(set(ops)) < len(ops):
        raise UsageError(f"the fault {name} makes needs distinct, non-empty names for its "
                         "start and stop ops")
    if not callable(fault.build) or not (fault.steps is None or callable(fault.steps)):
        raise UsageError(f"the fault {name} makes needs a callable build (and steps, if any)")
    return fault


def fault_names(names: list[str] | None) -> list[str]:
    """The distinct requested faults, ``none`` dropped; UsageError for an unknown one.
    ``None`` (nothing asked for) means ``DEFAULT_NEMESIS``.

    The run loop calls this before any cluster exists, so a typo costs one line."""
    wanted = [n for n in dict.fromkeys(DEFAULT_NEMESIS if names is None else names)
              if n != "none"]
    for name in wanted:
        resolve(name)
    return wanted


def cannot_act(name: str, system: str, db: object, nodes: Sequence[str],
               fault: Fault | None = None) -> str | None:
    """Why the fault ``name`` cannot act on ``system`` (with ``db``, running on ``nodes``),
    in words; None when it can.

    A network fault needs the system on two nodes at least: a partition, loss or latency
    between the nodes of a system that runs on one changes nothing for its clients,
    which connect from the controller (never cut). A process fault needs its capability.
    """
    fault = fault or resolve(name)
    if fault.network and len(nodes) < 2:
        where = f"on {nodes[0]} alone" if nodes else "on no node"
        return (f"{name} acts on the traffic between nodes, and system {system} runs {where} "
                "(its clients connect from the controller, whose traffic is never cut)")
    for need in fault.needs:
        if not isinstance(db, need):
            return f"system {system} {CANNOT.get(need, f'lacks {need.__name__}')}"
    return None


def _built(name: str, fault: Fault, test: Test, db: Any, rng: random.Random,
           nodes: Sequence[str]) -> Nemesis:
    """The fault's nemesis; a user's that fails or breaks the protocol is a UsageError."""
    if name in FAULTS:
        return fault.build(test, db, rng, nodes)
    try:
        nemesis = fault.build(test, db, rng, nodes)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"building nemesis {name} failed: {type(e).__name__}: {e}"[:300]
                         ) from None
    if not isinstance(nemesis, Nemesis):
        raise UsageError(f"{name} built a {type(nemesis).__name__}, not a nemesis: it needs "
                         "fs, setup(test), invoke(test, op) and teardown(test)")
    missing = sorted({fault.start, fault.stop, *(f for p in fault.pairs for f in p)}
                     - set(nemesis.fs))
    if missing:
        raise UsageError(f"nemesis {name} does not perform {', '.join(missing)} "
                         f"(its fs: {', '.join(sorted(nemesis.fs)) or 'none'})")
    return nemesis


def build_nemesis(names: list[str] | None, test: Test, db: object, rng: random.Random,
                  interval: float | None = None,
                  nodes: Sequence[str] | None = None) -> NemesisPackage:
    """The nemesis for the fault ``names`` (None: the default faults, not asked for).

    ``interval`` defaults to the ``[nemesis]`` table's. ``nodes`` are where the system
    runs (default: every node of the test): crash faults aim there. A fault that cannot
    act on the run (``cannot_act``) is a UsageError when asked for by name; from the
    default it is dropped, with a note in the package. Drawing a fault band for a fault
    that did nothing would be a lie.
    """
    wanted = {name: resolve(name) for name in fault_names(names)}
    targets = list(nodes) if nodes is not None else test.nodes
    notes = []
    for name, fault in list(wanted.items()):
        why = cannot_act(name, test.spec.system, db, targets, fault)
        if why is None:
            continue
        if names is not None:
            raise UsageError(f"fault {name} cannot act on this run: {why}")
        del wanted[name]
        notes.append(f"default fault {name} left out: {why}")
    if not wanted:
        return NemesisPackage(NoopNemesis(), notes=notes)
    interval = test.spec.nemesis_settings.interval if interval is None else interval
    if interval <= 0:
        raise UsageError(f"the nemesis interval must be positive, got {interval}")
    nemeses = [_built(name, fault, test, db, random.Random(rng.getrandbits(64)), targets)
               for name, fault in wanted.items()]
    schedule = plan(list(wanted.values()), interval, random.Random(rng.getrandbits(64)))
    # Heal bundled faults in FAULTS' order (the network before restarts, so restarted
    # nodes can rejoin), then the user's.
    order = sorted(wanted, key=lambda n: list(FAULTS).index(n) if n in FAULTS else len(FAULTS))
    heals = {stop: start for name in order for stop, start in wanted[name].heals().items()}
    final = [invocation(stop, ends=start) for stop, start in heals.items()]
    return NemesisPackage(ComposedNemesis(nemeses), schedule, final, notes)
