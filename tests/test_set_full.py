"""The set-full checker against a brute-force oracle and against linearizable sets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from checkers import set_full
from harness.history import FAIL, INFO, INVOKE, OK, Op


def _timed(ops: list[Op]) -> list[Op]:
    for i, op in enumerate(ops):
        op.index, op.time = i, i * 1_000_000  # 1 ms per position
    return ops


def _oracle(history: list[Op]) -> dict:
    """Every element's outcome, straight from the definitions, quadratically."""
    calls = []  # (f, value, invoke position, completion type, completion position, result)
    for i, op in enumerate(history):
        if op.type != INVOKE:
            continue
        done = next((j for j in range(i + 1, len(history))
                     if history[j].process == op.process), None)
        c = history[done] if done is not None else None
        calls.append((op.f, op.value, i, c.type if c else INFO, done, c.value if c else None))
    reads = [(inv, end, set(res)) for f, _, inv, t, end, res in calls if f == "read" and t == OK]
    adds = [c for c in calls if c[0] == "add"]
    out = {}
    for e in {c[1] for c in adds}:
        mine = [c for c in adds if c[1] == e]
        read_ends = [end for inv, end, s in reads if e in s]
        if any(t == FAIL for _, _, _, t, _, _ in mine) and read_ends:
            out[e] = "failed-add-present"
            continue
        acks = [end for _, _, _, t, end, _ in mine if t == OK]
        if not acks and not read_ends:
            continue
        known = min(acks + read_ends)
        after = [(inv, e in s) for inv, _, s in reads if inv > known]
        if not after:
            out[e] = "never-read"
        elif all(has for _, has in after):
            out[e] = "stable"
        else:
            last_absent = max(inv for inv, has in after if not has)
            back = any(has and inv > last_absent for inv, has in after)
            out[e] = "stale" if back else "lost"
    for _, _, s in reads:
        for e in s:
            if e not in {c[1] for c in adds}:
                out[e] = "unexpected"
    return out


@st.composite
def random_histories(draw):
    """Any well-formed history of adds (each of a fresh element, as the set workload's)
    and reads returning arbitrary subsets, of elements added or not."""
    n_procs = draw(st.integers(1, 4))
    elements = list(range(draw(st.integers(1, 6))))
    fresh = iter(elements + list(range(100, 200)))
    ops: list[Op] = []
    busy: dict[int, Op] = {}
    for _ in range(draw(st.integers(0, 30))):
        p = draw(st.integers(0, n_procs - 1))
        if p not in busy:
            f = draw(st.sampled_from(["add", "read"]))
            busy[p] = Op(INVOKE, f, next(fresh) if f == "add" else None, p)
            ops.append(busy[p])
        else:
            inv = busy.pop(p)
            t = draw(st.sampled_from([OK, OK, FAIL, INFO]))
            value = (draw(st.lists(st.sampled_from(elements + [99]), unique=True))
                     if inv.f == "read" and t == OK else inv.value)
            ops.append(Op(t, inv.f, value, p))
    return _timed(ops)


@settings(max_examples=400, deadline=None)
@given(random_histories())
def test_fates_agree_with_the_brute_force_oracle(history):
    fates, _ = set_full.fates(history)
    assert {f.element: f.outcome for f in fates} == _oracle(history)


@st.composite
def linearizable_histories(draw):
    """Histories of a real set: each op takes effect at one moment between its
    invocation and its completion; some crash (info) before or after taking effect."""
    n_procs = draw(st.integers(1, 4))
    state: set[int] = set()
    ops: list[Op] = []
    busy: dict[int, list] = {}  # process -> [invocation, applied?, read result]
    next_element = 0
    for _ in range(draw(st.integers(0, 40))):
        p = draw(st.integers(0, n_procs - 1))
        if p not in busy:
            if draw(st.booleans()):
                inv = Op(INVOKE, "add", next_element, p)
                next_element += 1
            else:
                inv = Op(INVOKE, "read", None, p)
            busy[p] = [inv, False, None]
            ops.append(inv)
            continue
        inv, applied, seen = busy[p]
        if not applied and draw(st.booleans()):
            busy[p][1] = True
            if inv.f == "add":
                state.add(inv.value)
            else:
                busy[p][2] = sorted(state)
            continue
        del busy[p]
        if not applied:
            ops.append(inv.fail("refused") if draw(st.booleans()) else inv.info("timeout"))
        elif draw(st.integers(0, 4)) == 0:
            ops.append(inv.info("timeout"))
        else:
            ops.append(inv.ok(seen if inv.f == "read" else inv.value))
    return _timed(ops)


@settings(max_examples=400, deadline=None)
@given(linearizable_histories())
def test_a_linearizable_set_is_never_flagged(history):
    result = set_full.check(history)
    assert result["valid"] in (True, "unknown"), result["anomalies"]
    assert not result["anomalies"]


def _h(*ops):
    return _timed([Op(t, f, v, p) for t, f, v, p in ops])


def test_lost_stale_unexpected_and_latency():
    history = _h(
        (INVOKE, "add", 1, 0), (OK, "add", 1, 0),          # 1 acknowledged at position 1
        (INVOKE, "add", 2, 1), (OK, "add", 2, 1),          # 2 acknowledged at position 3
        (INVOKE, "read", None, 2), (OK, "read", [1, 7], 2),  # 2 missing; 7 never added
        (INVOKE, "read", None, 2), (OK, "read", [2], 2),     # 1 now missing for good; 2 back
    )
    result = set_full.check(history)
    assert result["valid"] is False
    kinds = {a["type"]: a for a in result["anomalies"]}
    assert kinds["lost"]["examples"][0]["element"] == 1
    assert kinds["stale"]["examples"][0]["element"] == 2
    assert kinds["unexpected"]["examples"][0]["element"] == 7
    # 2 was acknowledged at 3 ms and first read by the read invoked at 6 ms.
    assert result["visibility_ms"]["slowest"][0] == {"element": 2, "visible_ms": 3.0}
    assert result["visibility_ms"]["max"] == 3.0
    relaxed = set_full.check(history, linearizable=False)
    assert {a["type"] for a in relaxed["anomalies"]} == {"lost", "unexpected"}


def test_stale_is_only_reported_for_a_set_that_need_not_be_linearizable():
    history = _h(
        (INVOKE, "add", 1, 0), (OK, "add", 1, 0),
        (INVOKE, "read", None, 2), (OK, "read", [], 2),
        (INVOKE, "read", None, 2), (OK, "read", [1], 2),
    )
    assert set_full.check(history)["valid"] is False
    relaxed = set_full.check(history, linearizable=False)
    assert relaxed["valid"] is True and relaxed["outcomes"] == {"stale": 1}


def test_nothing_read_is_unknown_and_ill_typed_reads_are_reported():
    only_adds = _h((INVOKE, "add", 1, 0), (OK, "add", 1, 0))
    assert set_full.check(only_adds)["valid"] == "unknown"
    ill = _h((INVOKE, "add", 1, 0), (OK, "add", 1, 0),
             (INVOKE, "read", None, 1), (OK, "read", 5, 1),
             (INVOKE, "read", None, 1), (OK, "read", [1], 1))
    result = set_full.check(ill)
    assert result["valid"] == "unknown"
    assert result["anomalies"] == [{"type": "ill-typed-read", "count": 1, "examples": [5]}]
