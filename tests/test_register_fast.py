"""The unique-values register fast path (Gibbons & Korach zones) against the oracle.

Every write writes a fresh value, so the fast path applies; reads are corrupted into
stale values, values from the future, and values never written, and crashed writes
(read by someone, or by no one) are mixed in. The fast path must agree with the
brute-force oracle on every history, and must be the analyzer that decided.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from checkers import linearizable
from checkers.models import make_model
from harness.history import Op
from tests.oracle import linearizable as oracle
from tests.test_linearizable import simulate


def unique_writes(rnd: random.Random, counter: itertools.count) -> tuple[str, Any]:
    return ("write", next(counter)) if rnd.random() < 0.45 else ("read", None)


def corrupt_reads(rnd: random.Random, history: list[Op], max_value: int) -> None:
    """Points some completed reads at other values: old, future, or never written."""
    for op in history:
        if op.type == "ok" and op.f == "read" and rnd.random() < 0.2:
            op.value = rnd.randint(0, max_value + 1)


@settings(max_examples=3000, deadline=None)
@given(seed=st.integers(0, 2**32), n_ops=st.integers(1, 10), n_procs=st.integers(2, 5),
       crash=st.sampled_from([0.0, 0.15, 0.4]), cas_model=st.booleans())
def test_unique_register_agrees_with_oracle(seed: int, n_ops: int, n_procs: int,
                                            crash: float, cas_model: bool) -> None:
    rnd = random.Random(seed)
    values = itertools.count(1)
    name = "cas-register" if cas_model else "register"
    history = simulate("register", rnd, n_ops, n_procs, corrupt=0.0, crash=crash,
                       gen=lambda r: unique_writes(r, values), initial=0)
    corrupt_reads(rnd, history, next(values))
    model = make_model(name, 0)
    expected = oracle(model, history)
    result = linearizable.check(model, history)
    assert result["analyzer"] == "unique-register"
    assert result["valid"] is expected, (expected, result, [o.to_dict() for o in history])


def _seq(*ops: Op) -> list[Op]:
    for i, op in enumerate(ops):
        op.index, op.time = i, i * 10**9
    return list(ops)


def test_overlapping_zones_name_the_stale_read() -> None:
    # write 1, then write 2, both acknowledged; then a read sees 1 again: stale.
    w1, w2 = Op("invoke", "write", 1, 0), Op("invoke", "write", 2, 1)
    r1, r2 = Op("invoke", "read", None, 2), Op("invoke", "read", None, 3)
    history = _seq(w1, w1.ok(), w2, w2.ok(), r1, r1.ok(1), r2, r2.ok(2))
    result = linearizable.check(make_model("register", 0), history)
    assert result["valid"] is False and result["analyzer"] == "unique-register"
    assert result["counterexample"]["op"]["index"] == 4
    assert "read 1 on process 2" in result["explanation"]


def test_a_read_of_a_value_never_written() -> None:
    w, r = Op("invoke", "write", 1, 0), Op("invoke", "read", None, 1)
    result = linearizable.check(make_model("register", 0), _seq(w, r, w.ok(), r.ok(7)))
    assert result["valid"] is False
    assert "no operation ever wrote 7" in result["explanation"]


def test_a_crashed_write_that_was_read_took_effect() -> None:
    w, r = Op("invoke", "write", 1, 0), Op("invoke", "read", None, 1)
    r2 = Op("invoke", "read", None, 2)
    model = make_model("register", 0)
    ok = linearizable.check(model, _seq(w, w.info("timeout"), r, r.ok(1), r2, r2.ok(1)))
    assert ok["valid"] is True and ok["analyzer"] == "unique-register"
    # once 1 has been read, the initial 0 cannot come back
    bad = linearizable.check(model, _seq(w, r, r.ok(1), r2, r2.ok(0)))
    assert bad["valid"] is False


def test_kv_keys_each_take_the_fast_path() -> None:
    ops = []
    for key in "ab":
        w, r = Op("invoke", "write", [key, 1], 0), Op("invoke", "read", [key, None], 1)
        ops += [w, w.ok([key, 1]), r, r.ok([key, 1])]
    result = linearizable.check(make_model("kv"), _seq(*ops))
    assert result == result | {"valid": True, "analyzer": "unique-register", "keys": 2}
