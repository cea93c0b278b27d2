from hypothesis import given
from hypothesis import strategies as st

from checkers.base import Compose, NoopChecker, merge_valid
from checkers.models import INCONSISTENT, UNKNOWN, make_model
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
