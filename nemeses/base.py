"""The Nemesis protocol, the Fault a nemesis factory returns, and the no-op nemesis.

A nemesis performs fault operations (``start-partition``, ``kill``, ...) recorded in the
history under process ``"nemesis"``. ``teardown`` must heal everything the nemesis did,
whatever state it is in: it runs on every exit path, including Ctrl-C.

A user's nemesis plugs in as ``--nemesis package.module:factory``: ``factory()`` takes no
arguments and returns a :class:`Fault`, which says how to build the nemesis for a run
and which of its operations starts the fault and which heals it. The schedule
(``nemeses.schedule``) alternates the two; the report draws the fault's band from the
start to the heal, because the schedule marks each healing op with the op it ends.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harness.history import Op

if TYPE_CHECKING:
    from harness.context import Test
    from harness.generator_core import Generator


@runtime_checkable
class Nemesis(Protocol):
    fs: frozenset[str]
    """The fault operation names this nemesis performs."""

    def setup(self, test: Test) -> None: ...

    def invoke(self, test: Test, op: Op) -> Op:
        """Performs ``op`` and returns its ``info`` completion describing what was done."""

    def teardown(self, test: Test) -> None:
        """Heals every fault this nemesis may have left in place."""


Build = Callable[["Test", Any, random.Random, Sequence[str]], Nemesis]
"""``build(test, db, rng, nodes)``: the nemesis for one run. ``db`` is the system's DB
(for its capabilities: ``harness.db``), ``rng`` the nemesis's own random stream (derived
from the seed: draw targets from it, never from ``random``), ``nodes`` where the system
runs. Called before any cluster exists: check what the fault needs here, raising
``UsageError`` with one line, so a run that cannot work stops before it starts."""


@dataclass(frozen=True)
class Fault:
    """A fault the schedule can inject: its nemesis, and the ops that start and heal it.

    ``start`` and ``stop`` must be in the built nemesis's ``fs``. The op values the
    schedule sends are None: the nemesis chooses its targets, and returns what it did
    as the completion's value (shown in the report's band)."""

    build: Build
    start: str
    stop: str
    network: bool = False
    """It cuts or slows traffic between nodes, so it needs the system on two of them:
    clients connect from the controller, whose traffic the network faults never touch."""
    needs: tuple[type, ...] = ()
    """The DB capabilities (``Killable``, ``Primaries``, ...) it acts through."""
    steps: Callable[[float], Generator] | None = None
    """Its schedule as a generator of fault ops (``nemeses.schedule``), given the
    interval in seconds; None: wait, start, wait, stop, forever."""
    pairs: tuple[tuple[str, str], ...] = ()
    """Further (start, stop) ops its ``steps`` use, beyond ``(start, stop)``."""

    def heals(self) -> dict[str, str]:
        """Each healing op -> the op whose fault it ends, in the order to heal them."""
        return {stop: start for start, stop in ((self.start, self.stop), *self.pairs)}


class NoopNemesis:
    fs: frozenset[str] = frozenset()

    def setup(self, test: Test) -> None:
        pass

    def invoke(self, test: Test, op: Op) -> Op:
        return op.complete("info", op.value)

    def teardown(self, test: Test) -> None:
        pass
