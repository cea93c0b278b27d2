"""The final phase reads every node until the reads agree and stop changing
(harness.runner._converged_final_reads), with in-process replicas that catch up late:
real coroutines, nothing mocked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from checkers.counter import CounterChecker
from harness import context
from harness.cluster.remote import NoopRemote
from harness.history import HistoryWriter, Op, read_jsonl
from harness.interpreter import Interpreter, run_async
from harness.runner import FINAL_READ_INTERVAL, _converged_final_reads

pytestmark = pytest.mark.timeout(60, method="thread")

NODES = ["n1", "n2", "n3"]


class Replicas:
    """A counter at 10 whose replica n2 shows 6 until ``catch_up`` seconds have passed
    (forever if None): a member cut off by a partition, catching up after the heal."""

    def __init__(self, catch_up: float | None) -> None:
        self.began = time.monotonic()
        self.catch_up = catch_up

    def value(self, node: str) -> int:
        behind = node == "n2" and (
            self.catch_up is None or time.monotonic() - self.began < self.catch_up)
        return 6 if behind else 10


class ReplicaClient:
    def __init__(self, replicas: Replicas, node: str) -> None:
        self.replicas, self.node = replicas, node

    async def invoke(self, test, op: Op) -> Op:
        return op.ok(self.replicas.value(self.node))

    async def close(self) -> None:
        pass


def final_phase(tmp_path: Path, catch_up: float | None, budget: float):
    replicas = Replicas(catch_up)

    async def open_client(node):
        return ReplicaClient(replicas, node)

    history = HistoryWriter(tmp_path / "history.jsonl")
    for _ in range(10):  # ten acknowledged increments before the final phase
        inv = history.append(Op("invoke", "add", 1, 0, extra={"node": "n1"}))
        history.append(inv.ok(1, node="n1"))
    test = context.Test(context.Spec(nodes=NODES), NoopRemote(), tmp_path)
    interp = Interpreter(test, history, open_client, NODES, 1, op_timeout=1.0)
    began = time.monotonic()
    run_async(_converged_final_reads(interp, NODES, ("read", None), budget))
    elapsed = time.monotonic() - began
    history.close()
    return read_jsonl(history.path), elapsed


def rounds(ops: list[Op]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for op in ops:
        if op.type == "ok" and op.extra.get("final"):
            if not out or op.extra["node"] in out[-1]:
                out.append({})
            out[-1][op.extra["node"]] = op.value
    return out


def test_final_reads_wait_for_a_replica_that_is_behind(tmp_path):
    ops, elapsed = final_phase(tmp_path, catch_up=1.2, budget=10)
    seen = rounds(ops)
    assert seen[0]["n2"] == 6  # behind at first
    assert seen[-1] == seen[-2] == {"n1": 10, "n2": 10, "n3": 10}  # agreed, twice
    assert elapsed < 1.2 + 3 * FINAL_READ_INTERVAL + 2
    r = CounterChecker().check(None, ops)
    assert r["valid"] is True and r["lost"] == 0, r["summary"]


def test_final_reads_that_never_agree_end_at_the_budget_and_claim_no_loss(tmp_path):
    ops, elapsed = final_phase(tmp_path, catch_up=None, budget=1.5)
    assert 1.5 - FINAL_READ_INTERVAL <= elapsed < 1.5 + 2
    assert len(rounds(ops)) >= 2
    r = CounterChecker().check(None, ops)
    assert r["lost"] == 0
    assert {a["type"] for a in r["anomalies"]} == {"stale-read", "final-reads-disagree"}
    assert "final reads disagree (n1 10, n2 6, n3 10)" in r["summary"]


def test_agreeing_final_reads_take_two_rounds_only(tmp_path):
    ops, elapsed = final_phase(tmp_path, catch_up=0, budget=10)
    assert len(rounds(ops)) == 2
    assert elapsed < FINAL_READ_INTERVAL + 1.5
