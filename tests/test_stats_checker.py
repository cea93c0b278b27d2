"""The stats checker, and its place in every workload's checker (crafted histories)."""

from __future__ import annotations

from checkers.stats import StatsChecker
from harness.history import Op
from workloads.counter import make_workload


def _history(adds: list[tuple[str, str | None]], reads: int = 1) -> list[Op]:
    ops: list[Op] = []
    for i, (outcome, error) in enumerate(adds):
        inv = Op("invoke", "add", 1, i)
        ops += [inv, inv.ok(1) if outcome == "ok" else inv.complete(outcome, error=error)]
    for j in range(reads):
        inv = Op("invoke", "read", None, 1000 + j, extra={"final": True, "node": "n1"})
        ops += [inv, inv.ok(sum(o == "ok" for o, _ in adds), final=True, node="n1")]
    nemesis = Op("invoke", "kill", None, "nemesis")
    ops += [nemesis, nemesis.complete("info", ["n1"])]
    for k, op in enumerate(ops):
        op.index, op.time = k, k * 1000
    return ops


def test_a_kind_that_never_succeeded_is_unknown_with_the_commonest_error():
    adds = [("fail", "connection-refused")] * 4113 + [("info", "timeout")] * 2
    r = StatsChecker().check(None, _history(adds))
    assert r["valid"] == "unknown"
    assert r["summary"] == ("no add succeeded: 4,113 failed, 2 indeterminate, "
                            "mostly connection-refused")
    assert r["by_f"]["add"] == {"ok": 0, "fail": 4113, "info": 2, "never_completed": 0}
    assert "kill" not in r["by_f"]  # the nemesis is not a client


def test_one_success_is_enough():
    r = StatsChecker().check(None, _history([("fail", "refused"), ("ok", None)]))
    assert r["valid"] is True
    assert r["summary"] == "add: 1 ok of 2, read: 1 ok of 1"


def test_every_workload_refuses_to_pass_a_run_where_no_add_succeeded():
    history = _history([("fail", "connection-refused")] * 3)
    result = make_workload({}).checker.check(None, history)
    assert result["counter"]["valid"] is True  # "all 0 acknowledged increments present"
    assert result["stats"]["summary"] == "no add succeeded: 3 failed, connection-refused"
    assert result["valid"] == "unknown"
