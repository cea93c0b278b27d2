"""The unit-counter fast path must give the brute-force oracle's verdict, always."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.counter_linear import check_unit_counter, check_unit_counter_streaming
from checkers.models import Counter
from harness.history import Op
from tests.oracle import linearizable


def _seq(*ops: Op) -> list[Op]:
    for i, op in enumerate(ops):
        op.index = i
        op.time = i * 100_000_000  # 0.1 s apart, so explanations show times
    return list(ops)


def add(p: int) -> Op:
    return Op("invoke", "add", 1, p)


def read(p: int) -> Op:
    return Op("invoke", "read", None, p)


def _agrees(history: list[Op], initial: int = 0) -> dict:
    result = check_unit_counter(history, initial)
    assert result is not None
    # The streaming check (`check` on large files: one pass over an iterator to decide,
    # a second into columns, read only as far as the explanation looks) gives the same
    # result, explanation and counterexample included; it leaves a read that is no
    # whole number to the full check (which names an ill-typed one).
    streamed = check_unit_counter_streaming(lambda plain: iter(history), initial)
    if streamed is None:
        assert result["valid"] is False and ("not a whole number" in result["explanation"]
                                             or "below the initial" in result["explanation"])
    else:
        assert streamed == result
    assert result["valid"] == linearizable(Counter(initial), history), result
    if result["valid"]:
        assert result["anomalies"] == []
    else:
        assert result["explanation"]
        assert result["counterexample"]["explanation"] == result["explanation"]
        assert result["anomalies"][0]["type"] == "nonlinearizable"
        _assert_claim_holds(result["explanation"], initial)
    return result


def _assert_claim_holds(explanation: str, initial: int) -> None:
    """The numbers in an explanation must contradict the read they name."""
    if m := re.search(r"returned (\d+): the count should have been at least (\d+)",
                      explanation):
        assert int(m[2]) > int(m[1]), explanation
    elif m := re.search(r"read (\d+) on process .* already sum to (\d+)", explanation):
        assert int(m[2]) > int(m[1]) - initial, explanation
    elif m := re.search(r"read (\d+) on process .* from \d+ to (\d+)", explanation):
        assert int(m[2]) > int(m[1]), explanation
    elif m := re.search(r"read (\d+) .* but only (\d+) increments? had begun",
                        explanation):
        assert int(m[1]) - initial > int(m[2]), explanation


# --- hand-written cases ---------------------------------------------------------------

def test_a_read_concurrent_with_an_add_may_see_it_or_not():
    for seen in (0, 1):
        a, r = add(0), read(1)
        assert _agrees(_seq(a, r, a.ok(), r.ok(seen)))["valid"]
    a, r = add(0), read(1)
    assert not _agrees(_seq(a, r, a.ok(), r.ok(2)))["valid"]


def test_a_read_after_an_acknowledged_add_must_see_it():
    a, r = add(0), read(1)
    result = _agrees(_seq(a, a.ok(), r, r.ok(0)))
    assert not result["valid"]
    assert result["explanation"] == (
        "read 0 on process 1 at 0.20 s, but increments acknowledged before it began "
        "already sum to 1")
    assert result["counterexample"]["op"]["process"] == 1


def test_failed_adds_never_happened_and_crashed_adds_maybe_did():
    a, r = add(0), read(1)
    assert _agrees(_seq(a, a.fail("refused"), r, r.ok(0)))["valid"]
    a, r = add(0), read(1)
    assert not _agrees(_seq(a, a.fail("refused"), r, r.ok(1)))["valid"]
    for seen in (0, 1):
        a, r = add(0), read(1)
        assert _agrees(_seq(a, a.info("timeout"), r, r.ok(seen)))["valid"]
    a, r = add(0), read(1)
    assert _agrees(_seq(a, r, r.ok(1)))["valid"]  # never completed
    a, r = add(0), read(1)
    result = _agrees(_seq(a, a.info("timeout"), r, r.ok(2)))
    assert "only 1 increment had begun" in result["explanation"]


def test_reads_must_not_go_backwards():
    a1, a2, r1, r2 = add(0), add(1), read(2), read(3)
    h = _seq(a1, a2, r1, r1.ok(2), r2, r2.ok(1), a1.info("t"), a2.info("t"))
    result = _agrees(h)
    assert not result["valid"]
    assert result["explanation"] == (
        "process 2 read 2 at 0.30 s and then process 3 read 1 at 0.40 s: "
        "the count went backwards")


def test_an_acknowledged_increment_between_two_equal_reads_is_missing():
    r1, a, r2 = read(0), add(1), read(2)
    result = _agrees(_seq(r1, r1.ok(0), a, a.ok(), r2, r2.ok(0)))
    assert not result["valid"]
    r1, a, r2, c = read(0), add(1), read(2), add(3)
    h = _seq(c, r1, r1.ok(1), a, a.ok(), r2, r2.ok(1), c.info("t"))
    result = _agrees(h)
    assert result["explanation"] == (
        "process 0 read 1 at 0.20 s, then 1 increment began and were acknowledged "
        "before process 2 began a read at 0.50 s that returned 1: the count should "
        "have been at least 2")


def test_two_increments_between_reads_one_apart():
    r1, a, b, r2 = read(0), add(1), add(2), read(3)
    h = _seq(r1, r1.ok(0), a, b, a.ok(), b.ok(), r2, r2.ok(1))
    assert not _agrees(h)["valid"]


def test_nonzero_initial_value_and_reads_below_it():
    a, r = add(0), read(1)
    assert _agrees(_seq(a, a.ok(), r, r.ok(6)), initial=5)["valid"]
    a, r = add(0), read(1)
    result = _agrees(_seq(a, r, r.ok(4), a.ok()), initial=5)
    assert result["explanation"].endswith("below the initial value 5")
    a, r = add(0), read(1)
    result = _agrees(_seq(a, a.ok(), r, r.ok(5)), initial=5)
    assert "bring the count from 5 to 6" in result["explanation"]


def test_reads_that_are_not_whole_numbers_are_never_linearizable():
    r = read(0)
    assert not _agrees(_seq(r, r.ok(None)))["valid"]
    r = read(0)
    assert not _agrees(_seq(r, r.ok(0.5)))["valid"]
    r = read(0)
    assert _agrees(_seq(r, r.ok(0.0)))["valid"]


def test_crashed_increments_fill_gaps_concurrent_reads_of_one_value():
    c1, c2, r1, r2, r3 = add(0), add(1), read(2), read(3), read(4)
    h = _seq(c1, c2, c1.info("t"), r1, r2, r1.ok(1), r2.ok(1), r3, r3.ok(2))
    assert _agrees(h)["valid"]
    c1, r1, r2, r3 = add(0), read(2), read(3), read(4)
    h = _seq(c1, c1.info("t"), r1, r2, r1.ok(1), r2.ok(1), r3, r3.ok(2))
    assert not _agrees(h)["valid"]


def test_nemesis_ops_are_ignored_and_other_ops_are_not_applicable():
    n = Op("invoke", "kill", "n1", "nemesis")
    a, r = add(0), read(1)
    assert _agrees(_seq(n, a, n.complete("info", "n1"), a.ok(), r, r.ok(1)))["valid"]
    two = Op("invoke", "add", 2, 0)
    assert check_unit_counter(_seq(two, two.ok())) is None
    cas = Op("invoke", "cas", [0, 1], 0)
    assert check_unit_counter(_seq(cas, cas.ok())) is None
    flag = Op("invoke", "add", True, 0)
    assert check_unit_counter(_seq(flag, flag.ok())) is None


def test_the_result_shape():
    a, r = add(0), read(1)
    result = check_unit_counter(_seq(a, a.ok(), r, r.ok(1)))
    assert result == {"valid": True, "model": "counter", "analyzer": "counter-edf",
                      "ops": 2, "anomalies": []}


# --- against the oracle ---------------------------------------------------------------

@dataclass
class _Sim:
    """A real counter under concurrent clients, driven by a list of choices, with
    crashes, failures and the odd corrupted read mixed in."""

    initial: int
    read_pct: int
    max_ops: int
    crash_kinds: tuple[int, ...] = (0,)
    count: int = 0
    history: list[Op] = field(default_factory=list)
    ops: int = 0

    def run(self, steps: list[tuple[int, int]], processes: int) -> list[Op]:
        self.count = self.initial
        slots = list(range(processes))
        pid = processes
        flight: dict[int, list] = {}  # process -> [invoke, applied, result]
        ghosts = 0  # crashed adds that have not taken effect yet
        for slot, r in steps:
            p = slots[slot % processes]
            if r >= 95 and ghosts:  # a crashed add takes effect late
                ghosts -= 1
                self.count += 1
            elif p not in flight:
                if self.ops < self.max_ops:
                    self.ops += 1
                    op = read(p) if r < self.read_pct else add(p)
                    self.history.append(op)
                    flight[p] = [op, False, None]
            elif not flight[p][1] and r < 50:
                self._apply(flight[p])
            else:
                inv, applied, result = flight.pop(p)
                kind = r % 10
                if kind in self.crash_kinds:  # the worker continues as a new process
                    self.history.append(inv.info("timeout"))
                    slots[slot % processes] = pid
                    pid += 1
                    ghosts += inv.f == "add" and not applied and r % 20 == 0
                elif kind == 1 and (not applied or r % 20 == 1):
                    self.history.append(inv.fail("refused"))
                else:
                    if not applied:
                        result = self._apply([inv, False, None])
                    if kind == 2 and inv.f == "read":
                        result = (None if r == 92 else
                                  result + (1 if r % 20 == 2 else -1))
                    self.history.append(inv.ok(result))
        return _seq(*self.history)

    def _apply(self, entry: list) -> int:
        if entry[0].f == "add":
            self.count += 1
        entry[1], entry[2] = True, self.count
        return self.count


_steps = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 99)), max_size=40)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, processes=st.integers(1, 5), read_pct=st.integers(20, 80),
       initial=st.sampled_from([0, 0, 1, 3]), max_ops=st.integers(1, 8))
def test_agrees_with_the_oracle(steps, processes, read_pct, initial, max_ops):
    history = _Sim(initial, read_pct, max_ops).run(steps, processes)
    _agrees(history, initial)


@pytest.mark.slow
@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, processes=st.integers(3, 6), initial=st.sampled_from([0, 2]))
def test_agrees_with_the_oracle_with_many_concurrent_reads(steps, processes, initial):
    history = _Sim(initial, 70, 9).run(steps, processes)
    _agrees(history, initial)


@pytest.mark.slow
@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, processes=st.integers(2, 6), read_pct=st.integers(30, 60))
def test_agrees_with_the_oracle_with_many_crashed_adds(steps, processes, read_pct):
    history = _Sim(0, read_pct, 9, crash_kinds=(0, 3, 4)).run(steps, processes)
    _agrees(history)


def test_large_simulated_histories():
    """At a scale the oracle cannot reach: a real counter is linearizable, and a last
    read below an earlier one or above every attempt is not."""
    rng = random.Random(3)
    safe = [r for r in range(100) if r % 10 not in (1, 2)]  # no failures, no corruption
    steps = [(rng.randrange(6), rng.choice(safe)) for _ in range(30_000)]
    sim = _Sim(0, 30, 5_000)
    history = sim.run(steps, 6)
    assert check_unit_counter(history)["valid"] is True
    seen = max(op.value for op in history if op.f == "read" and op.type == "ok")
    begun = sum(1 for op in history if op.f == "add" and op.type == "invoke")
    for last, valid in ((sim.count, True), (seen - 1, False), (begun + 1, False)):
        r = read(99)
        result = check_unit_counter(_seq(*history, r, r.ok(last)))
        assert result["valid"] is valid, (last, result)
