from hypothesis import given
from hypothesis import strategies as st

from checkers.base import Compose, NoopChecker, merge_valid
from checkers.models import INCONSISTENT, UNKNOWN, freeze, make_model
from harness.history import Op
from tests.oracle import linearizable


def test_steps_of_each_model():
    c = make_model("counter")
    assert c.step(c.step(c.init(), "add", 3, None), "read", None, 3) == 3
    assert c.step(0, "read", None, 1) is INCONSISTENT
    r = make_model("cas-register", 0)
    assert r.step(0, "cas", [0, 5], None) == 5
    assert r.step(1, "cas", [0, 5], None) is INCONSISTENT
    assert r.step(1, "read", None, UNKNOWN) == 1
    kv = make_model("kv")
    s = kv.step(kv.init(), "write", ["x", 1], None)
    assert kv.step(s, "read", ["y", None], ["y", None]) == s
    assert kv.step(s, "read", ["x", None], ["x", 2]) is INCONSISTENT
    m = make_model("mutex")
    assert m.step(m.step(m.init(), "acquire", None, None), "release", None, None) is False
    assert m.step(True, "acquire", None, None) is INCONSISTENT
    s = make_model("set")
    assert s.step(frozenset({1}), "read", None, [1]) == frozenset({1})
    assert s.step(frozenset({1}), "read", None, [1, 2]) is INCONSISTENT
    mr = make_model("multi-register", {"x": 0, "y": 0})
    st2 = mr.step(mr.init(), "txn", [["write", "x", 1]], [["write", "x", 1]])
    assert mr.step(st2, "txn", None, [["read", "x", 1], ["read", "y", 0]]) == st2
    assert mr.step(st2, "txn", None, [["read", "x", 0]]) is INCONSISTENT


def test_verdicts_merge_false_over_unknown_over_true():
    assert merge_valid([]) is True
    assert merge_valid([True, "unknown"]) == "unknown"
    assert merge_valid(["unknown", False, True]) is False
    r = Compose({"none": NoopChecker()}).check(None, [])
    assert r["valid"] == "unknown"


def _seq(*ops):
    for i, o in enumerate(ops):
        o.index = i
    return list(ops)


def test_oracle_on_hand_made_histories():
    model = make_model("counter")
    a, r = Op("invoke", "add", 1, 0), Op("invoke", "read", None, 1)
    # read concurrent with an add may see either value
    assert linearizable(model, _seq(a, r, a.ok(), r.ok(0)))
    assert linearizable(model, _seq(a, r, a.ok(), r.ok(1)))
    # a read that starts after the add completed must see it
    assert not linearizable(model, _seq(a, a.ok(), r, r.ok(0)))
    # ...unless the add failed, which means it never happened
    assert linearizable(model, _seq(a, a.fail("refused"), r, r.ok(0)))
    # a crashed add may or may not have happened
    assert linearizable(model, _seq(a, a.info("timeout"), r, r.ok(0)))
    assert linearizable(model, _seq(a, a.info("timeout"), r, r.ok(1)))
    assert not linearizable(model, _seq(a, a.info("timeout"), r, r.ok(2)))


@given(st.lists(st.integers(0, 3), max_size=6))
def test_oracle_accepts_every_sequential_history(writes):
    model = make_model("register")
    ops, value = [], None
    for p, v in enumerate(writes):
        w = Op("invoke", "write", v, p)
        r = Op("invoke", "read", None, p)
        ops += [w, w.ok(), r, r.ok(v)]
        value = v
    assert linearizable(model, _seq(*ops))
    if writes:
        r = Op("invoke", "read", None, 99)
        assert not linearizable(model, _seq(*ops, r, r.ok(value + 10)))


_KV_KEYS = st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 2),
                     st.lists(st.sampled_from("xy"), max_size=2))
_KV_VALUES = st.one_of(st.none(), st.sampled_from(["", "x", "y", "xy"]), st.integers(0, 2))
_KV_OPS = st.lists(st.tuples(st.sampled_from(["read", "write", "cas", "append"]),
                             _KV_KEYS, _KV_VALUES, _KV_VALUES), max_size=12)


def _kv_reference(initial, state, f, key, v, res):
    """The kv model spelled out on a plain dict (what ``KV.step`` must equal)."""
    key = freeze(key)
    before = state.get(key, initial)
    if f == "read":
        after = before if res is UNKNOWN or freeze(res) == before else INCONSISTENT
    elif f == "write":
        after = freeze(v)
    elif f == "cas":
        after = freeze(res) if freeze(v) == before else INCONSISTENT
    else:
        after = freeze(v) if before is None else before + freeze(v)
    if after is INCONSISTENT:
        return INCONSISTENT
    return {**state, key: after}


@given(_KV_OPS, st.sampled_from([None, ""]), st.randoms(use_true_random=False))
def test_kv_steps_equal_a_plain_dict(ops, initial, rnd):
    """The kv state (a tuple of values by key slot) steps as a dict of keys would, and
    two orders of the same writes give equal states: what the search memoizes on."""
    kv = make_model("kv", initial)
    state, ref = kv.init(), {}
    for f, key, v, res in ops:
        # cas carries [old, new] as its argument; reads carry [key, value] results
        arg = [key, [v, res]] if f == "cas" else [key, v]
        result = [key, res] if f == "read" else None
        try:
            expected = _kv_reference(initial, ref, f, key, v, res)
        except TypeError:  # appending a value to a value of another type
            continue
        got = kv.step(state, f, arg, result)
        if expected is INCONSISTENT:
            assert got is INCONSISTENT
            continue
        assert got is not INCONSISTENT
        state, ref = got, expected
        shown = {k for k, x in ref.items() if x != initial}
        assert kv.describe(state).count(" = ") == len(shown)
    # the same final map written in another order is the same state
    pairs = list(ref.items())
    rnd.shuffle(pairs)
    again = kv.init()
    for key, value in pairs:
        again = kv.step(again, "write", [list(key) if isinstance(key, tuple) else key,
                                         value], None)
    assert again == state and hash(again) == hash(state)
