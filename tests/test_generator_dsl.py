"""The generator DSL on a simulated clock (no cluster, no sleeping), then once through
the real interpreter to show it honours waits and reports completions.

The simulator is a discrete-event loop: each worker asks the generator for an op at the
simulated time it is free, the op takes a latency drawn from a *schedule* seed, its
completion is reported (``deliver``) and the worker asks again; a ``Wait`` moves the
worker's time on. Different schedule seeds are different interleavings of the same run.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.generator import (
    constant,
    each_thread,
    from_fn,
    limit,
    mix,
    once,
    phases,
    repeat,
    reserve,
    stagger,
    then,
    time_limit,
    until_ok,
)
from harness.generator_core import GenContext, Generator, Wait, deliver, worker_rng
from harness.history import INVOKE, Op

Outcome = Callable[[int, tuple[str, Any], int], str]
"""(worker, op, how many ops that worker drew before) -> "ok", "fail" or "info"."""


def simulate(gen: Generator, workers: int, seed: int = 1, schedule: int = 0,
             horizon: float = 100.0, outcome: Outcome | None = None,
             ) -> dict[int, list[tuple[float, float, str, Any]]]:
    """Each worker's ops as (invoked, completed, f, value), in simulated seconds."""
    lat = random.Random(f"schedule:{schedule}")
    ctxs = [GenContext(worker_rng(seed, w), w, "n1", 0.0, w, workers) for w in range(workers)]
    ops: dict[int, list[tuple[float, float, str, Any]]] = defaultdict(list)
    free = [(0.0, w) for w in range(workers)]
    while free:
        now, w = heapq.heappop(free)
        if now > horizon:
            continue
        ctx = ctxs[w]
        ctx.elapsed = now
        spec = gen.op(ctx)
        if spec is None:
            continue
        if isinstance(spec, Wait):
            assert spec.seconds >= 0
            heapq.heappush(free, (now + max(spec.seconds, 1e-6), w))
            continue
        done = now + lat.uniform(0.001, 0.05)
        kind = outcome(w, spec, len(ops[w])) if outcome else "ok"
        ops[w].append((now, done, *spec))
        invoke = Op(INVOKE, spec[0], spec[1], ctx.process)
        deliver(gen, ctx, invoke.complete(kind))
        if kind == "info":
            ctx.process += workers
        heapq.heappush(free, (done, w))
    return ops


def drawn(ops):
    """Each worker's (f, value) sequence, without the times."""
    return {w: [(f, v) for _, _, f, v in seq] for w, seq in ops.items()}


def _writes(ctx):
    return ("write", ctx.rng.randrange(1000))


def composed(main_phase: Callable[[Generator], Generator]) -> Generator:
    """A run as a test would write it: readers and writers, then final reads."""
    main = main_phase(reserve(
        (2, stagger(0.01, constant("read"))),
        rest=mix([(3, from_fn(_writes)), (1, constant("cas", [1, 2]))])))
    return phases(main, each_thread(once(constant("read", "final"))))


def _counted(gen: Generator) -> Generator:
    return limit(360, gen)  # 60 per worker


def _timed(gen: Generator) -> Generator:
    return time_limit(1.0, gen)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), a=st.integers(0, 2**32), b=st.integers(0, 2**32))
def test_same_seed_same_ops_per_worker_whatever_the_interleaving(seed, a, b):
    first = drawn(simulate(composed(_counted), 6, seed, a))
    assert first == drawn(simulate(composed(_counted), 6, seed, b))
    assert first != drawn(simulate(composed(_counted), 6, seed + 1, a))
    # Under a time limit a worker draws more or fewer ops, but always the same ones:
    # of two interleavings, one worker's main phase is a prefix of the other's.
    x, y = (drawn(simulate(composed(_timed), 6, seed, s)) for s in (a, b))
    for w in range(6):
        short, long = sorted((x[w][:-1], y[w][:-1]), key=len)
        assert long[:len(short)] == short and x[w][-1] == y[w][-1] == ("read", "final")


def test_phases_wait_for_every_worker_at_the_barrier():
    # Workers finish the first phase at very different times: 3 ops for rank 0, 40 for
    # the others. Nobody's second-phase op may begin before the last first-phase op ends.
    gen = then(reserve((1, each_thread(limit(3, constant("a")))),
                       rest=each_thread(limit(40, constant("a")))),
               each_thread(once(constant("b"))))
    ops = simulate(gen, 4)
    first_done = max(done for seq in ops.values() for _, done, f, _ in seq if f == "a")
    second = [start for seq in ops.values() for start, _, f, _ in seq if f == "b"]
    assert len(second) == 4 and min(second) >= first_done
    assert [len(ops[w]) for w in range(4)] == [4, 41, 41, 41]


def test_reserve_gives_thread_roles():
    gen = limit(400, reserve((2, constant("read")), (1, constant("cas")),
                             rest=constant("write")))
    fs = {w: {f for f, _ in seq} for w, seq in drawn(simulate(gen, 6)).items()}
    assert fs == {0: {"read"}, 1: {"read"}, 2: {"cas"}, 3: {"write"}, 4: {"write"},
                  5: {"write"}}


def test_limit_once_and_each_thread_count_in_all_or_per_worker():
    assert sum(map(len, simulate(limit(10, constant("x")), 4).values())) == 10
    # Shared out by rank, in advance: 3, 3, 2, 2 whatever the schedule.
    for schedule in range(3):
        shares = {w: len(s) for w, s in simulate(limit(10, constant("x")), 4,
                                                 schedule=schedule).items()}
        assert shares == {0: 3, 1: 3, 2: 2, 3: 2}
    assert {w: len(s) for w, s in simulate(once(constant("x")), 4).items()} == {0: 1}
    assert [len(s) for s in simulate(each_thread(once(constant("x"))), 4).values()] == [1] * 4
    assert [len(s) for s in simulate(each_thread(limit(5, constant("x"))), 3).values()] == [5] * 3


def test_repeat_starts_over_per_worker():
    gen = each_thread(repeat(phases(once(constant("a")), once(constant("b"))), times=3))
    assert drawn(simulate(gen, 2)) == {w: [("a", None), ("b", None)] * 3 for w in range(2)}
    assert len(simulate(each_thread(limit(50, repeat(once(constant("x"))))), 1)[0]) == 50


def test_time_limit_stops_each_worker_in_time():
    ops = simulate(phases(each_thread(once(constant("s"))),
                          time_limit(0.5, constant("x"))), 3)
    for seq in ops.values():
        xs = [start for start, _, f, _ in seq if f == "x"]
        assert xs and max(xs) < min(xs) + 0.5


def test_stagger_sets_the_rate_of_the_whole_generator():
    ops = simulate(time_limit(20.0, stagger(0.1, constant("x"))), 4)
    total = sum(map(len, ops.values()))
    assert 150 < total < 250  # one op per 0.1 s over 20 s, four workers in all


def test_until_ok_retries_until_an_op_succeeds():
    def outcome(worker, spec, n):
        return "ok" if n >= worker else ("info" if n % 2 else "fail")

    gen = each_thread(until_ok(constant("acquire")))
    ops = simulate(gen, 4, outcome=outcome)
    assert {w: len(s) for w, s in ops.items()} == {0: 1, 1: 2, 2: 3, 3: 4}


def test_bad_arguments_are_refused():
    for make in (lambda: limit(-1, constant("x")), lambda: stagger(0, constant("x")),
                 lambda: phases(), lambda: reserve((-1, constant("x")), rest=constant("y"))):
        with pytest.raises(ValueError):
            make()


def test_the_interpreter_waits_at_barriers_and_reports_completions(tmp_path):
    from tests.test_interpreter import make_interpreter, recorded, run

    interp, history, _ = make_interpreter(tmp_path, 3, latency=0.002)
    # Rank 0 fails twice (values say how the scripted client answers) then succeeds;
    # the others are done at once and must wait for it at the barrier.
    script = iter(["fail", "fail", "ok"])
    first = reserve((1, each_thread(until_ok(from_fn(lambda ctx: ("lock", next(script)))))),
                    rest=each_thread(once(constant("noop", "ok"))))
    gen = then(first, each_thread(once(stagger(0.01, constant("after", "ok")))))
    run(interp, gen, time_limit=10, seed=0)
    ops = [op for op in recorded(history)]
    locks = [op for op in ops if op.f == "lock" and op.type != INVOKE]
    assert [op.type for op in locks] == ["fail", "fail", "ok"]
    afters = [op.index for op in ops if op.f == "after" and op.type == INVOKE]
    assert len(afters) == 3 and min(afters) > max(op.index for op in locks)
    assert Counter(op.f for op in ops if op.type == INVOKE) == {"lock": 3, "noop": 2,
                                                                "after": 3}
