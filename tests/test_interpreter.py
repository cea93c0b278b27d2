"""The interpreter against real asyncio clients written here (there is no external part:
the clients are in-process coroutines, so nothing is mocked)."""

import asyncio
import time
from collections import defaultdict

import pytest

from harness import context
from harness.cluster.remote import NoopRemote
from harness.errors import UsageError
from harness.generator import constant, from_fn, mix
from harness.history import HistoryWriter, Op, pairs, read_jsonl
from harness.interpreter import Interpreter, run_async

pytestmark = pytest.mark.timeout(30, method="thread")  # a broken timeout must not hang

NODES = ["n1", "n2", "n3"]
OUTCOMES = ["ok", "ok", "fail", "info", "raise", "garbage"]


class ScriptedClient:
    """Answers by the op's value after ``latency`` seconds (ok, fail, info, raise, hang,
    swallow, garbage), and books every client opened and closed."""

    def __init__(self, book, node, latency=0.0):
        self.book, self.node, self.latency = book, node, latency
        book["opened"].append(self)

    async def invoke(self, test, op):
        if self.latency:
            await asyncio.sleep(self.latency)
        kind = op.value
        if kind == "raise":
            raise ConnectionResetError("connection reset mid-request")
        if kind == "hang":
            await asyncio.sleep(3600)
        if kind == "swallow":  # a client that wrongly turns cancellation into a fail
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                return op.fail("cancelled")
        if kind == "garbage":
            return None
        if kind in ("fail", "info"):
            return op.complete(kind, error=f"scripted {kind}")
        return op.ok(kind)

    async def close(self):
        self.book["closed"].append(self)


def make_interpreter(tmp_path, concurrency, latency=0.0, nodes=NODES, **kw):
    book = defaultdict(list)

    async def open_client(node):
        return ScriptedClient(book, node, latency)

    history = HistoryWriter(tmp_path / "history.jsonl")
    test = context.Test(context.Spec(nodes=nodes), NoopRemote(), tmp_path)
    return Interpreter(test, history, open_client, nodes, concurrency, **kw), history, book


def recorded(history):
    history.close()
    return read_jsonl(history.path)


def run(interp, gen, **kw):
    async def main():
        began = time.monotonic()
        await interp.run(gen, **kw)
        await interp.close()
        return time.monotonic() - began
    return run_async(main())


def random_outcomes(ctx):
    return ("op", ctx.rng.choice(OUTCOMES))


def test_history_is_well_formed_and_info_moves_the_worker_to_a_new_process(tmp_path):
    c = 8
    interp, history, book = make_interpreter(tmp_path, c, latency=0.001)
    run(interp, from_fn(random_outcomes), time_limit=0.4, seed=3)
    ops = recorded(history)
    assert len(ops) > 200
    assert [o.index for o in ops] == list(range(len(ops)))
    assert all(a.time <= b.time for a, b in zip(ops, ops[1:]))
    ps = pairs(ops)  # raises if a process had two ops in flight
    assert all(p.completion is not None for p in ps)
    assert all(o.extra["node"] == NODES[(o.process % c) % len(NODES)] for o in ops)
    by_worker = defaultdict(list)
    for p in ps:
        by_worker[p.invoke.process % c].append(p)
    for prev, nxt in ((a, b) for seq in by_worker.values() for a, b in zip(seq, seq[1:])):
        step = c if prev.completion.type == "info" else 0
        assert nxt.invoke.process == prev.invoke.process + step
    retired_at = {o.process: o.index for o in ops if o.type == "info"}
    assert retired_at  # the old process never does anything after its info
    assert all(o.index <= retired_at.get(o.process, o.index) for o in ops)
    by_value = defaultdict(set)
    for p in ps:
        by_value[p.invoke.value].add((p.type, p.completion.error))
    assert by_value["ok"] == {("ok", None)}
    assert by_value["fail"] == {("fail", "scripted fail")}
    assert by_value["raise"] == {
        ("info", "ConnectionResetError: connection reset mid-request")}
    assert by_value["garbage"] == {("info", "client returned None")}
    infos = sum(p.type == "info" for p in ps)
    ended_on_info = sum(seq[-1].type == "info" for seq in by_worker.values())
    # Reopened after each info; a worker whose last op was an info may have reopened
    # too, when the time limit came while its new client was being opened.
    assert c + infos - ended_on_info <= len(book["opened"]) <= c + infos
    assert sorted(map(id, book["closed"])) == sorted(map(id, book["opened"]))


def test_time_limit_stops_new_invocations_and_in_flight_ops_finish(tmp_path):
    interp, history, _ = make_interpreter(tmp_path, 6, latency=0.05)
    elapsed = run(interp, constant("add", "ok"), time_limit=0.3, seed=0)
    ops = recorded(history)
    assert 0.3 <= elapsed < 0.3 + 0.05 + 0.2
    invoked = [o.time for o in ops if o.type == "invoke"]
    assert max(invoked) - min(invoked) < 0.32e9
    assert all(p.type == "ok" for p in pairs(ops))


def test_op_timeout_records_info_timeout(tmp_path):
    interp, history, _ = make_interpreter(tmp_path, 3, op_timeout=0.2)
    elapsed = run(interp, constant("read", "hang"), time_limit=0.1, seed=0)
    ops = recorded(history)
    assert elapsed < 0.1 + 0.2 + 0.2
    # Workers start in any order on a loaded machine: compare the set of outcomes.
    assert sorted((p.invoke.process, p.type, p.completion.error) for p in pairs(ops)) == [
        (0, "info", "timeout"), (1, "info", "timeout"), (2, "info", "timeout")]


def test_the_interpreters_timeout_is_final_and_does_not_break_the_next_one(tmp_path):
    """A client that turns the watchdog's cancellation into ``fail`` cannot know that its
    request did not land: the op is ``info`` "timeout", and the worker moves on."""
    interp, history, _ = make_interpreter(tmp_path, 1, op_timeout=0.2)
    kinds = iter(["swallow", "hang"])
    run(interp, from_fn(lambda ctx: ("read", next(kinds, None))), time_limit=0.3, seed=0)
    ps = pairs(recorded(history))
    assert [(p.invoke.process, p.type, p.completion.error) for p in ps] == [
        (0, "info", "timeout"), (1, "info", "timeout")]
    assert ps[0].completion.extra["client_said"] == "fail: cancelled"


def test_rate_is_roughly_respected_and_staggered(tmp_path):
    interp, history, _ = make_interpreter(tmp_path, 10)
    run(interp, constant("add", "ok"), time_limit=1.0, seed=0, rate=100)
    invokes = [o for o in recorded(history) if o.type == "invoke"]
    assert 70 <= len(invokes) <= 130
    first = {}
    for o in invokes:
        first.setdefault(o.process, o.time)
    assert max(first.values()) - min(first.values()) > 20e6  # not in lockstep


def test_generator_exhaustion_ends_the_worker(tmp_path):
    interp, history, _ = make_interpreter(tmp_path, 4)
    counts = defaultdict(int)

    def three_each(ctx):
        counts[ctx.process] += 1
        return ("add", "ok") if counts[ctx.process] <= 3 else None
    assert run(interp, from_fn(three_each), time_limit=5, seed=0) < 1
    assert len(recorded(history)) == 4 * 3 * 2


def test_same_seed_gives_each_worker_the_same_ops(tmp_path):
    seqs = []
    for run_no in range(2):
        d = tmp_path / str(run_no)
        d.mkdir()
        interp, history, _ = make_interpreter(d, 4)
        gen = mix([(3, constant("add", "ok")), (1, constant("read", "fail"))])
        run(interp, gen, time_limit=0.2, seed=42)
        per_worker = defaultdict(list)
        for o in recorded(history):
            if o.type == "invoke":
                per_worker[o.process].append(o.f)
        seqs.append(per_worker)
    for w in range(4):
        n = min(len(seqs[0][w]), len(seqs[1][w]))
        assert n > 10 and seqs[0][w][:n] == seqs[1][w][:n]


def test_clients_that_cannot_be_opened_are_retried_without_recording(tmp_path):
    book = defaultdict(list)
    ready_at = time.monotonic() + 0.2

    async def open_client(node):
        if time.monotonic() < ready_at:
            raise ConnectionRefusedError("not up yet")
        return ScriptedClient(book, node)
    history = HistoryWriter(tmp_path / "history.jsonl")
    test = context.Test(context.Spec(nodes=NODES), NoopRemote(), tmp_path)
    interp = Interpreter(test, history, open_client, NODES, 2)
    run(interp, constant("add", "ok"), time_limit=0.5, seed=0)
    ops = recorded(history)
    assert ops and min(o.time for o in ops) >= 0.2e9
    assert {o.process for o in ops} == {0, 1}


def test_a_client_open_that_hangs_does_not_outlive_the_time_limit(tmp_path):
    async def open_client(node):
        await asyncio.sleep(3600)
    history = HistoryWriter(tmp_path / "history.jsonl")
    test = context.Test(context.Spec(nodes=NODES), NoopRemote(), tmp_path)
    interp = Interpreter(test, history, open_client, NODES, 3, op_timeout=0.2)
    assert run(interp, constant("add", "ok"), time_limit=0.1, seed=0) < 0.6
    assert recorded(history) == []


class SlowNemesis:
    fs = frozenset({"start-partition", "stop-partition", "boom", "kill"})

    def __init__(self, seconds=0.02):
        self.seconds, self.done = seconds, []

    def setup(self, test):
        pass

    def invoke(self, test, op):
        time.sleep(self.seconds)  # blocking on purpose: it must run in a thread
        if op.f == "boom":
            raise RuntimeError("iptables said no")
        self.done.append(op.f)
        return op.complete("info", {"did": op.f})

    def teardown(self, test):
        pass


def test_nemesis_schedule_is_recorded_and_stops_at_the_time_limit(tmp_path):
    interp, history, _ = make_interpreter(tmp_path, 2, latency=0.005)
    schedule = [(0.05, Op("invoke", "start-partition", {"n1": ["n2"]})),
                (0.05, Op("invoke", "boom")), (0.05, Op("invoke", "stop-partition")),
                (10.0, Op("invoke", "kill", "n1"))]
    nemesis = SlowNemesis()
    elapsed = run(interp, constant("add", "ok"), time_limit=0.4, seed=0,
                  nemesis=nemesis, schedule=schedule)
    assert elapsed < 0.8
    ops = [o for o in recorded(history) if o.process == "nemesis"]
    assert [(o.type, o.f) for o in ops] == [
        ("invoke", "start-partition"), ("info", "start-partition"),
        ("invoke", "boom"), ("info", "boom"),
        ("invoke", "stop-partition"), ("info", "stop-partition")]
    assert ops[1].value == {"did": "start-partition"}
    assert ops[3].error == "RuntimeError: iptables said no"
    assert nemesis.done == ["start-partition", "stop-partition"]
    assert schedule[0][1].process is None  # the caller's ops are not mutated
    assert any(o.process == 0 and ops[0].time < o.time < ops[1].time
               for o in recorded(history))  # clients kept running during the fault


def test_nemesis_op_in_progress_at_the_time_limit_finishes(tmp_path):
    interp, history, _ = make_interpreter(tmp_path, 1)
    elapsed = run(interp, constant("add", "ok"), time_limit=0.1, seed=0,
                  nemesis=SlowNemesis(0.4), schedule=[(0.05, Op("invoke", "kill", "n1"))])
    assert elapsed >= 0.45
    assert [o.type for o in recorded(history) if o.process == "nemesis"] == [
        "invoke", "info"]


class FlakyClient:
    """Per node, a script of outcomes consumed one per attempt."""

    def __init__(self, script):
        self.script = script

    async def invoke(self, test, op):
        kind = self.script.pop(0)
        return op.ok(7) if kind == "ok" else op.complete(kind, error=kind)

    async def close(self):
        pass


def test_final_ops_retry_and_are_marked(tmp_path):
    scripts = {"n1": ["ok"], "n2": ["fail", "info", "ok"], "n3": ["info"] * 3, "n4": ["ok"]}
    refused = {"n4"}

    async def open_client(node):
        if node in refused:
            refused.discard(node)
            raise ConnectionRefusedError("refused")
        return FlakyClient(scripts[node])
    history = HistoryWriter(tmp_path / "history.jsonl")
    nodes = list(scripts)
    test = context.Test(context.Spec(nodes=nodes), NoopRemote(), tmp_path)
    interp = Interpreter(test, history, open_client, nodes, 4)
    done = run_async(interp.final_ops([(n, "read", None) for n in nodes], attempts=3,
                                      retry_delay=0.01, extra={"final": True}))
    assert [(o.type, o.value, o.extra["node"]) for o in done] == [
        ("ok", 7, "n1"), ("ok", 7, "n2"), ("info", None, "n3"), ("ok", 7, "n4")]
    ops = recorded(history)
    assert all(o.extra["final"] is True for o in ops)
    ps = pairs(ops)
    per_node = defaultdict(list)
    for p in ps:
        per_node[p.invoke.extra["node"]].append((p.invoke.process, p.type))
    n2 = per_node["n2"]
    assert [t for _, t in n2] == ["fail", "info", "ok"]
    assert n2[0][0] == n2[1][0] != n2[2][0]  # fail keeps the process, info does not
    assert len({p for p, _ in per_node["n3"]}) == 3
    assert [t for _, t in per_node["n4"]] == ["fail", "ok"]
    assert ps[0].invoke.process >= 4  # never a worker's process
    assert "cannot open a client" in next(
        p.completion.error for p in ps if p.invoke.extra["node"] == "n4")


def test_cancellation_completes_every_op_in_flight(tmp_path):
    interp, history, book = make_interpreter(tmp_path, 20)
    nemesis = SlowNemesis(0.3)

    async def main():
        task = asyncio.create_task(interp.run(
            constant("read", "hang"), time_limit=60, seed=0, nemesis=nemesis,
            schedule=[(0.0, Op("invoke", "kill", "n1"))]))
        await asyncio.sleep(0.1)
        began = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - began
    assert run_async(main()) >= 0.15  # the fault in progress was allowed to finish
    ops = recorded(history)
    ps = pairs(ops, include_nemesis=True)
    assert len(ps) == 21 and all(p.completion is not None for p in ps)
    assert {p.completion.error for p in ps if p.invoke.process != "nemesis"} == {
        "interrupted"}
    assert [p.completion.value for p in ps if p.invoke.process == "nemesis"] == [
        {"did": "kill"}]
    assert len(book["closed"]) == len(book["opened"]) == 20


def test_a_generator_bug_stops_the_run_with_its_own_error(tmp_path):
    interp, history, _ = make_interpreter(tmp_path, 4, latency=0.01)

    def broken(ctx):
        if ctx.process == 2 and ctx.elapsed > 0.05:
            raise UsageError("no such register")
        return ("read", "ok")
    with pytest.raises(UsageError, match="no such register"):
        run(interp, from_fn(broken), time_limit=5, seed=0)
    ps = pairs(recorded(history))
    assert ps and all(p.completion is not None for p in ps)


def test_a_slow_fault_does_not_push_the_planned_ones_later(tmp_path):
    """Offsets hold from the plan's start: overlapping faults planned on one timeline
    (nemeses.schedule) land when planned, however long each takes to inject."""
    interp, history, _ = make_interpreter(tmp_path, 1)
    schedule = [(0.05, Op("invoke", "kill", "n1")), (0.45, Op("invoke", "start", "n1"))]
    run(interp, constant("add", "ok"), time_limit=1.0, seed=0,
        nemesis=SlowNemesis(0.3), schedule=schedule)
    invokes = [o.time for o in recorded(history)
               if o.process == "nemesis" and o.type == "invoke"]
    assert len(invokes) == 2
    gap = (invokes[1] - invokes[0]) / 1e9
    assert 0.4 <= gap < 0.7, gap  # 0.45 as planned, not 0.3 of kill plus 0.45


def test_faults_due_while_a_slow_one_ran_keep_their_spacing_and_the_time_limit(tmp_path):
    """A restart that blocks past the next ops' due times: those go one after another
    at their planned spacing from then on, none of them after the time limit."""
    interp, history, _ = make_interpreter(tmp_path, 1)
    schedule = [(0.0, Op("invoke", "start", "n1")), (0.05, Op("invoke", "stop-partition")),
                (0.3, Op("invoke", "kill", "n1")), (0.05, Op("invoke", "start-partition"))]
    run(interp, constant("add", "ok"), time_limit=0.8, seed=0,
        nemesis=SlowNemesis(0.4), schedule=schedule)
    invokes = [o for o in recorded(history) if o.process == "nemesis" and o.type == "invoke"]
    assert [o.f for o in invokes] == ["start", "stop-partition"]  # kill would be due at 1.2
    assert (invokes[1].time - invokes[0].time) / 1e9 >= 0.35  # after the slow start returned
