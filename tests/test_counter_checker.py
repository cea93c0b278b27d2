"""The counter checker: bounds, lost and extra increments, divergence, unknown."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkers.counter import CounterChecker
from harness.errors import UsageError
from harness.history import Op

NODES = ["n1", "n2", "n3"]


def _seq(ops: list[Op]) -> list[Op]:
    for i, op in enumerate(ops):
        op.index = i
        op.time = i * 10_000_000
    return ops


class _Script:
    """Writes histories by hand; each op completes right after it is invoked."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(self, p: int, delta: int = 1, outcome: str = "ok") -> None:
        inv = Op("invoke", "add", delta, p)
        self.ops += [inv, inv.complete(outcome, delta)]

    def read(self, p: int, value: int) -> None:
        inv = Op("invoke", "read", None, p)
        self.ops += [inv, inv.ok(value)]

    def final(self, node: str, value: int | None, p: int | None = None) -> None:
        inv = Op("invoke", "read", None, 100 + NODES.index(node) if p is None else p,
                 extra={"final": True, "node": node})
        done = (inv.ok(value, final=True, node=node) if value is not None
                else inv.fail("unreachable", final=True, node=node))
        self.ops += [inv, done]

    def check(self, initial: int = 0) -> dict:
        return CounterChecker(initial).check(None, _seq(self.ops))


def test_an_atomic_counter_without_faults_is_valid():
    s = _Script()
    for i in range(4):
        s.add(i % 2)
        s.read(2, i + 1)
    for n in NODES:
        s.final(n, 4)
    r = s.check()
    assert r["valid"] is True and r["anomalies"] == []
    assert r["acknowledged"] == r["attempted"] == 4 and r["lost"] == 0
    assert r["final_reads"] == {"n1": 4, "n2": 4, "n3": 4}
    assert r["summary"] == "all 4 acknowledged increments present — final read 4 on every node"


def test_a_read_concurrent_with_an_add_may_see_it_or_not():
    for seen in (0, 1):
        a, rd = Op("invoke", "add", 1, 0), Op("invoke", "read", None, 1)
        s = _Script()
        s.ops = [a, rd, a.ok(1), rd.ok(seen)]
        s.final("n1", 1)
        assert s.check()["valid"] is True


def test_a_stale_read():
    s = _Script()
    s.add(0)
    s.add(0)
    s.read(1, 1)
    s.final("n1", 2)
    r = s.check()
    assert r["valid"] is False
    [a] = r["anomalies"]
    assert a["type"] == "stale-read" and a["count"] == 1
    assert a["reads"] == [{"process": 1, "node": "process 1", "time": 0.04,
                           "value": 1, "lower": 2, "upper": 2, "final": False}]
    assert r["summary"] == ("1 stale read; all 2 acknowledged increments present — "
                            "final read 2 on every node")


def test_a_read_above_everything_attempted_is_a_duplicate_update():
    s = _Script()
    s.add(0, outcome="info")
    s.add(1, outcome="fail")
    s.read(2, 2)
    s.final("n1", 3)
    r = s.check()
    assert [(a["type"], a["count"]) for a in r["anomalies"]] == [("duplicate-update", 2)]
    assert [(x["final"], x["excess"]) for x in r["anomalies"][0]["reads"]] == [
        (False, 1), (True, 2)]
    assert r["attempted"] == 1 and r["acknowledged"] == 0


def test_lost_updates_are_counted_from_the_final_reads():
    s = _Script()
    for _ in range(3):
        s.add(0)
    s.add(1, outcome="info")  # could only have added
    for n in NODES:
        s.final(n, 2)
    r = s.check()
    assert r["valid"] is False and r["lost"] == 1
    assert [(a["type"], a["count"]) for a in r["anomalies"]] == [("lost-update", 1)]
    assert r["summary"] == ("lost 1 of 3 acknowledged increments (33.3%) — "
                            "final read 2 on every node")


def test_indeterminate_increments_that_took_effect_are_reported():
    s = _Script()
    for _ in range(3):
        s.add(0)
    for _ in range(3):
        s.add(1, outcome="info")
    s.final("n1", 5)
    r = s.check()
    assert r["valid"] is True
    assert r["summary"] == ("all 3 acknowledged increments present — final read 5 on "
                            "every node (2 of 3 indeterminate increments took effect)")


def test_deltas_other_than_one_are_summed():
    def script(final: int) -> _Script:
        s = _Script()
        s.add(0, 5)
        s.add(0, -2)
        s.add(1, 10, outcome="info")
        s.read(2, 103)
        s.final("n1", final)
        return s

    r = script(113).check(initial=100)
    assert r["valid"] is True, r
    assert r["acknowledged"] == 3 and r["attempted"] == 13
    assert r["summary"].endswith("(10 of 10 indeterminate increments took effect)")
    r = script(13).check(initial=100)
    assert {a["type"]: a["count"] for a in r["anomalies"]} == {"lost-update": 90}
    r = script(114).check(initial=100)
    assert {a["type"]: a["count"] for a in r["anomalies"]} == {"duplicate-update": 1}


def test_a_pending_negative_delta_may_lower_the_read():
    a, rd = Op("invoke", "add", -1, 0), Op("invoke", "read", None, 1)
    s = _Script()
    s.add(2)
    s.ops += [a, rd, rd.ok(0), a.info("timeout")]
    s.final("n1", 0)
    assert s.check()["valid"] is True
    s.ops[-1].value = -1
    assert s.check()["anomalies"][0]["type"] == "lost-update"


def test_final_reads_that_disagree_claim_no_loss_and_the_node_behind_is_stale():
    s = _Script()
    s.add(0)
    s.add(0)
    s.final("n1", 2)
    s.final("n2", 1)
    s.final("n3", 2)
    r = s.check()
    assert {a["type"]: a["count"] for a in r["anomalies"]} == {
        "stale-read": 1, "final-reads-disagree": 1}
    assert r["lost"] == 0 and r["valid"] is False  # invalid for the stale read alone
    [stale] = [a for a in r["anomalies"] if a["type"] == "stale-read"]
    assert stale["reads"][0]["node"] == "n2" and stale["reads"][0]["final"] is True
    assert r["summary"] == (
        "1 stale read (1 of them final: a node behind); final reads disagree (n1 2, n2 1, "
        "n3 2) although the system had time to converge, so lost increments are not "
        "counted (2 increments acknowledged)")


def test_final_reads_that_disagree_within_bounds_are_unknown_not_invalid():
    s = _Script()
    s.add(0)
    s.add(1, outcome="info")
    s.add(2, outcome="info")
    s.final("n1", 3)
    s.final("n2", 1)  # a later final read below an earlier one: never converged
    r = s.check()
    assert [a["type"] for a in r["anomalies"]] == ["final-reads-disagree"]
    assert r["valid"] == "unknown" and r["lost"] == 0


def test_loss_is_what_every_converged_final_read_lacks():
    s = _Script()
    for _ in range(5):
        s.add(0)
    for n in NODES:
        s.final(n, 3)
    r = s.check()
    assert [(a["type"], a["count"]) for a in r["anomalies"]] == [("lost-update", 2)]
    assert r["summary"].startswith("lost 2 of 5 acknowledged increments (40.0%)")
    s = _Script()  # a late indeterminate add lands between two final reads
    for _ in range(5):
        s.add(0)
    s.add(1, outcome="info")
    s.final("n1", 3)
    s.final("n2", 4)
    r = s.check()
    assert r["lost"] == 1  # n2 shows one more: only one is missing from every node
    assert {a["type"] for a in r["anomalies"]} == {"lost-update", "stale-read"}


def test_final_reads_may_differ_by_an_increment_that_landed_between_them():
    s = _Script()
    s.add(0)
    s.add(1, outcome="info")
    s.final("n1", 1)
    s.final("n2", 2)
    assert s.check()["valid"] is True
    s.ops[-1].value = 3  # more than anything in flight could explain
    r = s.check()
    types = {a["type"] for a in r["anomalies"]}
    assert types == {"final-reads-disagree", "duplicate-update"}
    s.ops[-3].value = 2  # a later final read lower than an earlier one: backwards
    s.ops[-1].value = 1
    r = s.check()
    assert [(a["type"], a["count"]) for a in r["anomalies"]] == [
        ("final-reads-disagree", 1)]
    assert r["valid"] == "unknown"


def test_no_final_read_is_unknown_never_a_pass():
    s = _Script()
    s.add(0)
    for n in NODES:
        s.final(n, None)
    r = s.check()
    assert r["valid"] == "unknown"
    assert r["reason"] == ("every final read failed (n1, n2, n3), so lost increments "
                           "cannot be counted")
    s.read(5, 0)  # a stale read still makes it invalid
    assert s.check()["valid"] is False
    s = _Script()
    s.add(0)
    assert s.check()["valid"] == "unknown"
    s.final("n1", None)
    s.final("n2", 1)
    r = s.check()
    assert r["valid"] is True and r["summary"].endswith("; no final read from n1")


def test_a_non_numeric_add_is_a_usage_error():
    s = _Script()
    s.add(0, "one")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="counter add of 'one'"):
        s.check()


@pytest.mark.parametrize("value", [None, "abc", [1], {"n": 1}, True])
def test_a_read_of_no_number_is_left_out_and_makes_the_verdict_unknown(value):
    s = _Script()
    s.add(0)
    s.read(1, value)
    s.final("n1", 1)
    r = s.check()
    assert r["valid"] == "unknown"
    [a] = r["anomalies"]
    assert a["type"] == "ill-typed-read" and a["count"] == 1
    assert a["examples"][0]["value"] == value
    assert r["summary"] == ("1 read returned no number (left out); all 1 acknowledged "
                            "increment present — final read 1 on every node")
    s.read(2, 5)  # a real anomaly still makes it invalid
    assert s.check()["valid"] is False


def test_an_integral_float_read_is_that_integer():
    s = _Script()
    s.add(0)
    s.add(0)
    s.read(1, 2.0)  # type: ignore[arg-type]
    s.final("n1", 2.0)  # type: ignore[arg-type]
    r = s.check()
    assert r["valid"] is True and r["final_reads"] == {"n1": 2}
    s.read(1, 1.5)  # type: ignore[arg-type]
    assert [a["type"] for a in s.check()["anomalies"]] == ["stale-read"]


def test_the_linearizability_checker_sees_numbers_only():
    from checkers.counter import NumericReads
    from checkers.linearizable import Linearizable
    from checkers.models import Counter

    s = _Script()
    s.add(0)
    s.read(1, "abc")  # type: ignore[arg-type]
    s.read(1, 1.0)  # type: ignore[arg-type]
    s.add(0)
    s.final("n1", 2)
    history = _seq(s.ops)
    assert NumericReads(Linearizable(Counter())).check(None, history)["valid"] is True
    assert history[3].value == "abc" and history[5].value == 1.0  # left as it was


# --- a simulated atomic counter -------------------------------------------------------

def _simulate(seed: int, drop: int = 0) -> tuple[list[Op], int, int]:
    """A real atomic counter under 1-6 concurrent clients with crashes and failures,
    then a final read on every node. ``drop`` acknowledged increments vanish from the
    state at a random moment. Returns the history, the initial value, and how many
    crashed adds had applied when the last final read succeeded (the highest one, which
    lacks only what every node lacks)."""
    rng = random.Random(seed)
    unit = drop > 0
    count = rng.choice([0, 7])
    initial = count
    processes = rng.randint(1, 6)
    slots = list(range(processes))
    pid = processes
    flight: dict[int, list] = {}
    ghosts: list[int] = []  # deltas of crashed adds that have not applied yet
    applied_crashed = 0
    acked = 0
    history: list[Op] = []
    steps = rng.randint(0, 200)
    drop_at = rng.randint(0, steps)
    for step in range(steps):
        if step == drop_at and acked >= drop:
            count -= drop
            drop = 0
        slot = rng.randrange(processes)
        p = slots[slot]
        r = rng.random()
        if ghosts and r < 0.05:
            count += ghosts.pop()
            applied_crashed += 1
        elif p not in flight:
            if r < 0.4:
                op = Op("invoke", "read", None, p)
            else:
                delta = 1 if unit else rng.choice([1, 1, 1, 2, 5, -1])
                op = Op("invoke", "add", delta, p)
            history.append(op)
            flight[p] = [op, False, None]
        elif not flight[p][1] and r < 0.5:
            entry = flight[p]
            if entry[0].f == "add":
                count += entry[0].value
            entry[1], entry[2] = True, count
        else:
            inv, applied, value = flight.pop(p)
            if r < 0.6:
                history.append(inv.info("timeout"))
                slots[slot] = pid
                pid += 1
                if inv.f == "add":
                    if applied:
                        applied_crashed += 1
                    elif rng.random() < 0.5:
                        ghosts.append(inv.value)
            elif r < 0.65 and not applied:
                history.append(inv.fail("refused"))
            else:
                if not applied:
                    if inv.f == "add":
                        count += inv.value
                    value = count
                if inv.f == "add":
                    acked += 1
                history.append(inv.ok(value))
    if drop and acked >= drop:
        count -= drop
    applied_crashed += sum(1 for inv, applied, _ in flight.values()
                           if applied and inv.f == "add")
    applied_at_last_final = None
    for i, node in enumerate(NODES):
        if ghosts and rng.random() < 0.3:  # a late crashed add lands between final reads
            count += ghosts.pop()
            applied_crashed += 1
        inv = Op("invoke", "read", None, 1000 + i, extra={"final": True, "node": node})
        history.append(inv)
        if rng.random() < 0.15:
            history.append(inv.fail("unreachable", final=True, node=node))
        else:
            history.append(inv.ok(count, final=True, node=node))
            applied_at_last_final = applied_crashed
    return _seq(history), initial, applied_at_last_final or 0


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32))
def test_an_atomic_counter_is_never_flagged(seed):
    history, initial, _ = _simulate(seed)
    r = CounterChecker(initial).check(None, history)
    assert r["anomalies"] == [], r
    any_final = any(op.extra.get("final") and op.type == "ok" for op in history)
    assert r["valid"] == (True if any_final else "unknown")


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 20))
def test_dropped_increments_are_reported_exactly(seed, k):
    history, initial, applied_crashed = _simulate(seed, drop=k)
    r = CounterChecker(initial).check(None, history)
    acked = sum(1 for op in history if op.f == "add" and op.type == "ok")
    finals = [op for op in history if op.extra.get("final") and op.type == "ok"]
    if acked < k or not finals:
        return  # nothing could be dropped, or nothing to count with
    expected = max(0, k - applied_crashed)
    assert r["lost"] == expected
    lost = [a for a in r["anomalies"] if a["type"] == "lost-update"]
    assert [a["count"] for a in lost] == ([expected] if expected else [])
    assert not any(a["type"] == "duplicate-update" for a in r["anomalies"])


_NOT_NUMBERS = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                         st.lists(st.integers(), max_size=3),
                         st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just("add"), st.just("read"), _NOT_NUMBERS.map(lambda v: ("bad", v))),
                max_size=30))
def test_reads_of_no_number_never_crash_and_alone_leave_the_verdict_unknown(steps):
    from checkers.counter import NumericReads
    from checkers.linearizable import Linearizable
    from checkers.models import Counter

    s = _Script()
    count = bad = 0
    for step in steps:
        if step == "add":
            s.add(0)
            count += 1
        elif step == "read":
            s.read(1, float(count) if count % 2 else count)  # type: ignore[arg-type]
        else:
            s.read(2, step[1])
            bad += 1
    s.final("n1", count)
    r = s.check()
    assert r["valid"] == ("unknown" if bad else True), r
    assert [a["count"] for a in r["anomalies"] if a["type"] == "ill-typed-read"] == (
        [bad] if bad else [])
    assert NumericReads(Linearizable(Counter())).check(None, _seq(s.ops))["valid"] is True
