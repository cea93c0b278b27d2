"""The linearizability checker against the brute-force oracle, for every model.

Histories come from simulating a real object: each op takes effect at one random moment
between its invocation and completion, so the history is linearizable, until a
corruption (a read returning a wrong value, a refused lock reported as granted) makes
some of them not. Crashed ops (``info`` with or without effect, never completed) and
failed ops are mixed in. Every verdict must equal ``tests.oracle``'s.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers import linearizable
from checkers.calls import rss_mb
from checkers.fast_steps import ANY, CALL, SAME, dead_value_test, fast_guard, fast_step
from checkers.models import INCONSISTENT, UNKNOWN, freeze, make_model
from checkers.partitions import KeyModel
from harness.history import Op
from tests.oracle import linearizable as oracle

# --- simulated objects: (random op request) and (apply at the linearization point) ---


def _counter_op(rnd: random.Random) -> tuple[str, Any]:
    return ("add", rnd.choice([-1, 1, 1, 2, 3])) if rnd.random() < 0.6 else ("read", None)


def _register_op(rnd: random.Random) -> tuple[str, Any]:
    return ("write", rnd.randint(0, 3)) if rnd.random() < 0.5 else ("read", None)


def _cas_op(rnd: random.Random) -> tuple[str, Any]:
    x = rnd.random()
    if x < 0.35:
        return "write", rnd.randint(0, 3)
    if x < 0.6:
        return "cas", [rnd.randint(0, 3), rnd.randint(0, 3)]
    return "read", None


def _kv_op(rnd: random.Random) -> tuple[str, Any]:
    """Reads, writes, cas and appends of short strings on keys x and y."""
    x = rnd.random()
    strings = ["a", "b", "ab"]
    if x < 0.25:
        f, v = "write", rnd.choice(strings)
    elif x < 0.45:
        f, v = "append", rnd.choice("ab")
    elif x < 0.6:
        f, v = "cas", [rnd.choice([None, *strings]), rnd.choice(strings)]
    else:
        f, v = "read", None
    return f, [rnd.choice("xy"), v]


def _set_op(rnd: random.Random) -> tuple[str, Any]:
    return ("add", rnd.randint(0, 4)) if rnd.random() < 0.6 else ("read", None)


def _mutex_op(rnd: random.Random) -> tuple[str, Any]:
    return rnd.choice(["acquire", "release"]), None


def _txn_op(rnd: random.Random) -> tuple[str, Any]:
    mops = [[rnd.choice(["read", "write"]), rnd.choice("xy"), None]
            for _ in range(rnd.randint(1, 2))]
    for m in mops:
        if m[0] == "write":
            m[2] = rnd.randint(0, 2)
    return "txn", mops


def _apply(name: str, state: Any, f: str, arg: Any) -> tuple[Any, Any, bool]:
    """(new state, result, ok) of a real object; ok False means a definite failure."""
    if name == "counter":
        return (state + arg, arg, True) if f == "add" else (state, state, True)
    if name in ("register", "cas-register"):
        if f == "append":
            new = arg if state is None else state + arg
            return new, arg, True
        if f == "write":
            return arg, arg, True
        if f == "cas":
            return (arg[1], arg, True) if state == arg[0] else (state, arg, False)
        return state, state, True
    if name == "kv":
        k, v = arg
        d = dict(state)
        new, res, ok = _apply("cas-register", d.get(k), f, v)
        d[k] = new
        return tuple(sorted(d.items())), [k, res], ok
    if name == "set":
        return (state | {arg}, arg, True) if f == "add" else (state, sorted(state), True)
    if name == "mutex":
        if f == "acquire":
            return (True, None, True) if not state else (state, None, False)
        return (False, None, True) if state else (state, None, False)
    d = dict(state)  # multi-register
    out = []
    for mf, k, v in arg:
        if mf == "write":
            d[k] = v
            out.append([mf, k, v])
        else:
            out.append([mf, k, d.get(k)])
    return tuple(sorted(d.items())), out, True


def _corrupt(name: str, rnd: random.Random, f: str, value: Any) -> Any:
    """A wrong result for a read-like op (None when this op has nothing to corrupt)."""
    if name == "counter" and f == "read":
        return value + rnd.choice([-2, -1, 1, 2])
    if name in ("register", "cas-register") and f == "read":
        return rnd.choice([v for v in (None, 0, 1, 2, 3) if v != value])
    if name == "kv" and f == "read":
        return [value[0], rnd.choice([v for v in (None, "a", "b", "ab", "ba") if v != value[1]])]
    if name == "set" and f == "read":
        return sorted(set(value) ^ {rnd.randint(0, 4)})
    if name == "multi-register" and f == "txn":
        reads = [m for m in value if m[0] == "read"]
        if reads:
            m = rnd.choice(reads)
            m[2] = rnd.choice([v for v in (None, 0, 1, 2) if v != m[2]])
            return value
    return None


GENERATORS: dict[str, Callable[[random.Random], tuple[str, Any]]] = {
    "counter": _counter_op, "register": _register_op, "cas-register": _cas_op,
    "kv": _kv_op, "set": _set_op, "mutex": _mutex_op, "multi-register": _txn_op,
}
INITIAL_STATE = {"counter": 0, "register": None, "cas-register": None, "kv": (),
                 "set": frozenset(), "mutex": False, "multi-register": ()}


def simulate(name: str, rnd: random.Random, n_ops: int, n_procs: int,
             corrupt: float = 0.3, crash: float = 0.15,
             gen: Callable[[random.Random], tuple[str, Any]] | None = None,
             initial: Any = None) -> list[Op]:
    """A history of a real ``name`` object driven by ``n_procs`` clients.

    An op is invoked, takes effect at one later moment (or is refused: ``fail``), and
    completes; with probability ``crash`` it completes ``info`` (after taking effect or
    not) or never. With probability ``corrupt`` one completed read-like op reports a
    wrong result (for mutex: a refused op reports success).
    """
    gen = gen or GENERATORS[name]
    state = INITIAL_STATE[name] if initial is None else initial
    history: list[Op] = []
    idle = list(range(n_procs))
    pending: dict[int, list] = {}  # process -> [invoke op, done?, result, ok]
    next_pid = n_procs
    started = 0
    corrupt_left = 1 if rnd.random() < corrupt else 0
    while started < n_ops or pending:
        actions = []
        if idle and started < n_ops:
            actions.append("invoke")
        if pending:
            actions += ["effect", "complete"]
        action = rnd.choice(actions)
        if action == "invoke":
            p = idle.pop(rnd.randrange(len(idle)))
            f, arg = gen(rnd)
            inv = Op("invoke", f, arg, p)
            history.append(inv)
            pending[p] = [inv, False, None, True]
            started += 1
            continue
        p = rnd.choice(list(pending))
        entry = pending[p]
        inv = entry[0]
        if action == "effect" and not entry[1]:
            state, entry[2], entry[3] = _apply(name, state, inv.f, inv.value)
            entry[1] = True
            continue
        if action == "effect":
            continue
        del pending[p]
        if rnd.random() < crash:
            if rnd.random() < 0.5:
                history.append(inv.info("timeout"))
            # a crashed process never comes back; its worker continues as a new one
            idle.append(next_pid)
            next_pid += 1
            continue
        if not entry[1]:
            state, entry[2], entry[3] = _apply(name, state, inv.f, inv.value)
        result, ok = entry[2], entry[3]
        if corrupt_left and name == "mutex" and not ok:
            corrupt_left, ok = 0, True
        elif corrupt_left and ok and rnd.random() < 0.5:
            bad = _corrupt(name, rnd, inv.f, result)
            if bad is not None:
                corrupt_left, result = 0, bad
        history.append(inv.ok(result) if ok else inv.fail("refused", result))
        idle.append(p)
    for i, op in enumerate(history):
        op.index, op.time = i, i * 1_000_000
    return history


def _agree(name: str, history: list[Op]) -> dict:
    model = make_model(name)
    expected = oracle(model, history)
    result = linearizable.check(model, history)
    assert result["valid"] is expected, (expected, result, [o.to_dict() for o in history])
    if expected is False:
        assert result["anomalies"][0]["type"] == "nonlinearizable"
        assert result["counterexample"]["op"]["index"] >= 0
    return result


EXAMPLES = {"counter": 1500, "register": 1500, "cas-register": 1500, "kv": 1200, "set": 800,
            "mutex": 1000, "multi-register": 800}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_agrees_with_oracle(name: str) -> None:
    @settings(max_examples=EXAMPLES[name], deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.integers(0, 2**32), n_ops=st.integers(1, 10), n_procs=st.integers(2, 5),
           crash=st.sampled_from([0.0, 0.15, 0.5]))
    def run(seed: int, n_ops: int, n_procs: int, crash: float) -> None:
        _agree(name, simulate(name, random.Random(seed), n_ops, n_procs, crash=crash))

    run()


# --- the fast steps are the models' steps -------------------------------------------

VALUES = st.one_of(st.none(), st.integers(-2, 3), st.sampled_from(["a", "b", "ab"]))


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_fast_steps_equal_the_models_steps(data: st.DataObject) -> None:
    model = make_model(data.draw(st.sampled_from(["counter", "register", "cas-register",
                                                   "mutex", "kv"])))
    if model.name == "kv":
        key_model = KeyModel(model)
        step, reference = key_model.fast_step, key_model.step
        guard = key_model.fast_guard
        state = data.draw(st.one_of(st.none(), st.sampled_from(["a", "b", "ab"])))
        f = data.draw(st.sampled_from(["read", "write", "cas", "append"]))
        texts = st.sampled_from(["a", "b"])
        arg = ([data.draw(st.one_of(st.none(), texts)), data.draw(texts)] if f == "cas"
               else data.draw(texts))
    else:
        step, reference, guard = fast_step(model), model.step, fast_guard(model)
        if model.name == "counter":
            state, f = data.draw(st.integers(-3, 3)), data.draw(st.sampled_from(["add", "read"]))
            arg = data.draw(st.integers(-2, 2))
        elif model.name == "mutex":
            state, f = data.draw(st.booleans()), data.draw(st.sampled_from(["acquire", "release"]))
            arg = None
        else:
            state = data.draw(VALUES)
            f = data.draw(st.sampled_from(["read", "write", "cas"] if model.name ==
                                          "cas-register" else ["read", "write"]))
            arg = [data.draw(VALUES), data.draw(VALUES)] if f == "cas" else data.draw(VALUES)
    result = data.draw(st.one_of(st.just(UNKNOWN), VALUES))
    expected = reference(state, f, arg, result)
    assert step(state, f, freeze(arg), freeze(result)) == expected
    if guard is not None:  # what the search does inline with a guard
        need, effect = guard(f, freeze(arg), freeze(result))
        if need is not ANY and need != state:
            assert expected is INCONSISTENT
        elif effect is CALL:
            assert step(state, f, freeze(arg), freeze(result)) == expected
        else:
            assert (state if effect is SAME else effect) == expected


def _appends_then_read(n: int, read: str) -> list[Op]:
    """``n`` appends to key k, all in flight while a read of k returns ``read`` first."""
    appends = [Op("invoke", "append", ["k", f"<{i}>"], i) for i in range(n)]
    r = Op("invoke", "read", ["k", None], n)
    return _seq(r, *appends, r.ok(["k", read]), *(a.ok() for a in appends))


def test_a_read_before_appends_end_tells_their_order() -> None:
    """The read must be linearized before any op invoked later, and only appends can go
    before it, so it tells which append comes next; without that, the search tries
    the orders of twelve appends one by one (hundreds of thousands of steps)."""
    model = make_model("kv", "")
    backwards = "".join(f"<{i}>" for i in reversed(range(12)))
    result = linearizable.check(model, _appends_then_read(12, backwards))
    assert result["valid"] is True and result["stats"]["steps"] < 1000
    result = linearizable.check(model, _appends_then_read(12, backwards + "<0>"))
    assert result["valid"] is False and result["stats"]["steps"] < 1000
    assert result["counterexample"]["op"]["f"] == "read"


def test_appends_a_write_wipes_out_unread_are_one_configuration() -> None:
    """Nine appends in flight with a write, then a read of a value nobody wrote: to
    refute it, a search that tells values apart tries every order of every subset of
    the appends before the write (about a million configurations); values no op can
    observe are all one (``dead_value_test``), which leaves the subsets alone."""
    appends = [Op("invoke", "append", ["k", f"<{i}>"], i) for i in range(9)]
    w, r = Op("invoke", "write", ["k", "w"], 9), Op("invoke", "read", ["k", None], 10)
    history = _seq(*appends, w, *(a.ok() for a in appends), w.ok(), r, r.ok(["k", "q"]))
    result = linearizable.check(make_model("kv", ""), history)
    assert result["valid"] is False and result["stats"]["steps"] < 20_000
    cx = result["counterexample"]
    assert cx["op"]["f"] == "read"
    assert cx["state"] == "value = 'w'"  # the real value, replayed, not the marker


def test_a_dead_value_test_knows_prefixes_and_types() -> None:
    is_dead = dead_value_test(["ab", "abc", ("x", 1), ANY, None, 3])
    assert is_dead is not None
    assert not is_dead("") and not is_dead("a") and not is_dead("abc")
    assert is_dead("b") and is_dead("abcd") and is_dead("ac")
    assert not is_dead(("x",)) and is_dead(("y",))
    assert not is_dead(None) and not is_dead(3)
    assert dead_value_test([(1,), ("a",)]) is None  # tuples that do not compare


# --- budgets ----------------------------------------------------------------------------


def subset_sum_history(n_adds: int) -> list[Op]:
    """Adds of 2, 4, 6, ... all in flight while a read returns an odd count: within the
    bounds, impossible by parity, and the search must try every subset to know it."""
    invokes = [Op("invoke", "add", 2 * (i + 1), i) for i in range(n_adds)]
    read = Op("invoke", "read", None, n_adds)
    history = [*invokes, read, read.ok(n_adds + 1), *(o.ok() for o in invokes)]
    for i, op in enumerate(history):
        op.index, op.time = i, i * 1_000_000
    return history


def test_a_time_limit_gives_unknown_quickly_with_progress() -> None:
    started = time.monotonic()
    result = linearizable.check(make_model("counter"), subset_sum_history(40), time_limit=1.0)
    elapsed = time.monotonic() - started
    assert result["valid"] == "unknown"
    assert elapsed < 3.0, elapsed
    assert "time limit" in result["reason"] and "configurations cached" in result["reason"]
    assert result["anomalies"] == []
    assert "unknown" in linearizable.render(result)


def test_a_memory_limit_gives_unknown_not_a_crash() -> None:
    limit = int(rss_mb()) + 40
    result = linearizable.check(make_model("counter"), subset_sum_history(40),
                                time_limit=60, memory_limit_mb=limit)
    assert result["valid"] == "unknown"
    assert f"memory limit of {limit} MiB" in result["reason"]
    assert rss_mb() < limit + 200  # it stopped near the limit, not far past it


def test_a_small_hard_history_is_decided_exactly() -> None:
    assert linearizable.check(make_model("counter"), subset_sum_history(8))["valid"] is False


# --- counterexamples -------------------------------------------------------------------


def _seq(*ops: Op) -> list[Op]:
    for i, op in enumerate(ops):
        op.index, op.time = i, i * 500_000_000
    return list(ops)


def test_a_stale_read_is_the_op_named() -> None:
    w1, w2 = Op("invoke", "write", 1, 0), Op("invoke", "write", 1, 3)
    c, r = Op("invoke", "cas", [1, 2], 1), Op("invoke", "read", None, 2)
    # the writes are not unique, so the search decides, not the register fast path
    history = _seq(w1, w1.ok(), c, c.ok(), r, r.ok(1), w2, w2.ok())
    result = linearizable.check(make_model("cas-register", 0), history)
    assert result["valid"] is False and result["analyzer"] == "search"
    cx = result["counterexample"]
    assert (cx["op"]["index"], cx["op"]["process"], cx["op"]["value"]) == (4, 2, 1)
    assert cx["state"] == "value = 2"
    assert [v["f"] for v in cx["prefix"]] == ["write", "cas"]
    assert result["explanation"].startswith("read 1 on process 2 at 2.000 s, but the "
                                            "register held 2")
    text = linearizable.render(result)
    assert text.splitlines()[0].startswith("NOT linearizable (cas-register, 4 ops, search")
    assert "cannot linearize: process 2 read 1 [2.000s .. 2.500s] ok" in text


def test_a_read_outside_the_counter_bounds_is_the_op_named() -> None:
    a, b, r = Op("invoke", "add", 5, 0), Op("invoke", "add", 2, 1), Op("invoke", "read", None, 2)
    history = _seq(a, a.ok(), b, r, r.ok(3), b.ok())
    result = linearizable.check(make_model("counter"), history)
    assert result["valid"] is False and result["analyzer"] == "counter-bounds"
    assert result["counterexample"]["op"]["index"] == 3
    assert "between 5 and 7" in result["explanation"]
    # the search's deepest state: both adds, or only the one that completed first
    assert result["counterexample"]["state"] in ("count = 5", "count = 7")


def test_a_second_acquire_is_the_op_named() -> None:
    a1, a2 = Op("invoke", "acquire", None, 0), Op("invoke", "acquire", None, 1)
    result = linearizable.check(make_model("mutex"), _seq(a1, a1.ok(), a2, a2.ok()))
    assert result["valid"] is False
    assert result["counterexample"]["op"]["process"] == 1
    assert "the lock was held" in result["explanation"]


def test_kv_counterexample_names_its_key() -> None:
    w, r = Op("invoke", "write", ["k", "a"], 0), Op("invoke", "read", ["k", None], 1)
    a = Op("invoke", "append", ["k", "b"], 2)
    history = _seq(w, w.ok(), a, a.ok(), r, r.ok(["k", "a"]))
    result = linearizable.check(make_model("kv"), history)
    assert result["valid"] is False
    assert result["explanation"].startswith("key 'k': read 'a' on process 1 at 2.000 s, "
                                            "but the register held 'ab'")
    assert result["counterexample"]["op"]["index"] == 4


def test_a_model_without_a_fast_step_describes_its_state() -> None:
    """The search numbers such a model's states; the counterexample shows the state."""
    a, b, r = Op("invoke", "add", 1, 0), Op("invoke", "add", 2, 1), Op("invoke", "read", None, 2)
    history = _seq(a, a.ok(), b, b.ok(), r, r.ok([2]))
    result = linearizable.check(make_model("set"), history)
    assert result["valid"] is False and result["analyzer"] == "search"
    assert result["counterexample"]["op"]["index"] == 4
    assert result["counterexample"]["state"] == "{1, 2}"


def test_the_checker_class_and_nemesis_ops() -> None:
    n = Op("invoke", "start-partition", "majority", "nemesis")
    w, r = Op("invoke", "write", 3, 0), Op("invoke", "read", None, 1)
    history = _seq(n, w, n.complete("info", "done"), w.ok(), r, r.ok(3))
    result = linearizable.Linearizable(make_model("register", 0), time_limit=5).check(
        None, history)
    assert result["valid"] is True and result["ops"] == 2 and result["anomalies"] == []


# --- parallel workers ------------------------------------------------------------------


def test_searches_handed_to_workers_get_the_same_verdicts(monkeypatch) -> None:
    """Real forked workers (the machine has 2 cores in CI) continue the searches the
    parent started; a wrong read early in one key ends the check either way."""
    monkeypatch.setattr(linearizable, "SERIAL_SECONDS", 0.0)
    handed_over = []
    in_workers = linearizable._in_workers

    def spy(searches, budget, workers):
        handed_over.append(len(searches))
        return in_workers(searches, budget, workers)

    monkeypatch.setattr(linearizable, "_in_workers", spy)
    # each key takes several slices (4096 steps), so two searches are left to hand over
    history = simulate("kv", random.Random(7), 2000, 20, corrupt=0.0, crash=0.02)
    model = make_model("kv")
    assert linearizable.check(model, history, workers=2)["valid"] is True
    assert handed_over == [2]
    reads = [op for op in history if op.type == "ok" and op.f == "read"]
    wrong = reads[len(reads) // 4]
    wrong.value = [wrong.value[0], "never written"]
    serial = linearizable.check(model, history, workers=1, time_limit=30)
    parallel = linearizable.check(model, history, workers=2, time_limit=30)
    assert handed_over == [2, 2]
    assert serial["valid"] is parallel["valid"] is False
    assert serial["counterexample"]["op"] == parallel["counterexample"]["op"]
    assert parallel["counterexample"]["op"]["value"] == wrong.value


def test_unit_counter_counterexample_carries_the_longest_linearizable_prefix():
    """The O(n log n) path decides; the search then supplies the prefix and its state."""
    ops = []
    for p in range(3):
        a = Op("invoke", "add", 1, p)
        ops += [a, a.ok(1)]
    r = Op("invoke", "read", None, 9)
    ops += [r, r.ok(2)]
    for i, op in enumerate(ops):
        op.index = i
    result = linearizable.check(make_model("counter"), ops)
    assert result["valid"] is False and result["analyzer"] == "counter-edf"
    cx = result["counterexample"]
    assert [v["f"] for v in cx["prefix"]] == ["add", "add", "add"]
    assert cx["state"] == "count = 3" and cx["op"]["value"] == 2
