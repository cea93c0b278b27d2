"""Fault schedules as generators, the [nemesis] table, and user nemeses: no cluster
(the schedule is planned in virtual time; nemeses that touch nodes are tested with real
namespaces in tests/test_nemeses.py and tests/test_examples.py)."""

from __future__ import annotations

import random
import sys
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cluster.remote import NoopRemote
from harness.context import Spec
from harness.context import Test as RunContext  # not Test*: pytest would collect it
from harness.db import NoopDB
from harness.errors import UsageError
from harness.history import Op
from harness.registry import load_factory
from harness.report_history import summarize
from harness.spec_loader import build_spec
from nemeses.base import Fault, NoopNemesis
from nemeses.package import FAULTS, build_nemesis, fault_names

NODES = ["n1", "n2", "n3"]


class CapableDB(NoopDB):
    """Every capability, doing nothing: only what the schedule plans matters here."""

    def kill(self, test: RunContext, node: str) -> None: ...
    def start(self, test: RunContext, node: str) -> None: ...
    def pause(self, test: RunContext, node: str) -> None: ...
    def resume(self, test: RunContext, node: str) -> None: ...


class LeaderDB(CapableDB):
    def primaries(self, test: RunContext) -> list[str]:
        return ["n3"]


def offline(**spec: object) -> RunContext:
    return RunContext(Spec(nodes=list(NODES), system="demo", **spec), NoopRemote(), Path("/tmp"))


def timeline(names: list[str], seed: int, n: int, interval: float = 1.0,
             test: RunContext | None = None) -> list[tuple[float, Op]]:
    """The first ``n`` planned ops with their offsets from the start."""
    package = build_nemesis(names, test or offline(), LeaderDB(), random.Random(seed),
                            interval=interval)
    out, at = [], 0.0
    for delay, op in islice(package.schedule, n):
        at += delay
        out.append((at, op))
    return out


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32))
def test_faults_overlap_each_alternates_and_every_heal_names_what_it_ends(seed):
    plan = timeline(["partition", "kill"], seed, 40)
    assert plan == timeline(["partition", "kill"], seed, 40)  # from the seed alone
    assert all(b[0] >= a[0] for a, b in zip(plan, plan[1:]))
    for start, stop in (("start-partition", "stop-partition"), ("kill", "start")):
        mine = [op for _, op in plan if op.f in (start, stop)]
        assert [op.f for op in mine] == [start, stop] * (len(mine) // 2) + [start] * (
            len(mine) % 2)
        assert all(op.extra == ({"ends": start} if op.f == stop else {}) for op in mine)
    # Both threads start one interval in, give or take a quarter, and stay at least
    # three quarters of one: the second fault begins while the first is in force.
    active, overlapped = set(), False
    for _, op in plan:
        if "ends" in op.extra:
            active.discard(op.extra["ends"])
        else:
            overlapped |= bool(active)
            active.add(op.f)
    assert overlapped


def test_the_interval_comes_from_the_nemesis_table():
    fast = timeline(["kill"], 7, 10, interval=None, test=offline(nemesis_settings={
        "interval": 0.5}))  # type: ignore[arg-type]
    slow = timeline(["kill"], 7, 10, interval=None, test=offline())
    assert 0.375 * 10 <= fast[-1][0] <= 0.625 * 10
    assert slow[-1][0] == pytest.approx(fast[-1][0] * 10)  # the same draws, scaled


def test_loss_and_latency_take_their_settings_from_the_table():
    test = offline(nemesis=["loss", "latency"],
                   nemesis_settings={"loss": 0.5, "latency": 0.3, "jitter": 0.05})
    package = build_nemesis(["loss", "latency"], test, CapableDB(), random.Random(0))
    assert package.nemesis.by_f["start-loss"].probability == 0.5
    latency = package.nemesis.by_f["start-latency"]
    assert (latency.delay, latency.jitter) == (0.3, 0.05)


def test_isolate_kill_primary_plans_a_sequence_aimed_at_the_primaries():
    plan = timeline(["isolate-kill-primary"], 3, 8)
    assert [(op.f, op.value, op.extra) for _, op in plan[:4]] == [
        ("start-partition", {"target": "primaries"}, {}),
        ("kill", {"target": "isolated"}, {}),
        ("stop-partition", None, {"ends": "start-partition"}),
        ("start", None, {"ends": "kill"})]
    package = build_nemesis(["isolate-kill-primary"], offline(), LeaderDB(),
                            random.Random(0))
    assert [(op.f, op.extra["ends"]) for op in package.final] == [
        ("stop-partition", "start-partition"), ("start", "kill")]


def test_isolate_kill_primary_needs_a_system_that_names_its_primaries():
    with pytest.raises(UsageError, match="cannot say which node leads"):
        build_nemesis(["isolate-kill-primary"], offline(), CapableDB(), random.Random(0))


def test_bands_come_from_the_planned_ops_for_any_fault():
    """A user's fault the report never heard of still gets its band, from 'ends'."""
    plan = timeline(["examples.nemesis:make_fault", "kill"], 1, 8)
    history = []
    for at, op in plan:
        t = int(at * 1e9)
        history += [Op(op.type, op.f, op.value, op.process, time=t, extra=op.extra),
                    Op("info", op.f, ["n1"] if op.f == "kill" else {"n2": ["n1"]},
                       op.process, time=t + 1000)]
    history.append(Op("invoke", "read", None, 0, time=int(plan[-1][0] * 1e9) + 10**9))
    bands = summarize(history).bands
    starts = [at for at, op in plan if op.f in ("start-one-way", "kill")]
    assert [round(b.start, 6) for b in bands] == [round(t, 6) for t in sorted(starts)]
    assert {b.label for b in bands} == {"one-way", "kill n1"}


# -- the [nemesis] table -----------------------------------------------------------

def spec_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "test.toml"
    path.write_text(text)
    return str(path)


def test_a_nemesis_table_holds_the_faults_and_their_settings(tmp_path):
    spec = build_spec(spec_file(tmp_path, '[nemesis]\nfaults = ["partition", "loss"]\n'
                                          'interval = 2.5\nloss = 0.4\n'), {}, {})
    assert spec.nemesis == ["partition", "loss"]
    assert (spec.nemesis_settings.interval, spec.nemesis_settings.loss) == (2.5, 0.4)
    flagged = build_spec(str(tmp_path / "test.toml"), {}, {"nemesis": "loss"})
    assert flagged.nemesis == ["loss"] and flagged.nemesis_settings.interval == 2.5


@pytest.mark.parametrize("body, message", [
    ("intervl = 3", "line 3: unknown key 'intervl' in [nemesis]; did you mean interval?"),
    ("loss = 1.5", "line 3: nemesis.loss must be at most 1, got 1.5"),
    ("latency = inf", "line 3: nemesis.latency must be a finite number, got inf"),
    ("interval = 0", "line 3: nemesis.interval must be positive, got 0"),
    ("interval = 1e9", "line 3: nemesis.interval must be at most 3600"),
    ("jitter = \"a\"", "line 3: nemesis.jitter must be a number"),
    ("faults = 3", "line 3: nemesis must be fault names"),
])
def test_a_bad_nemesis_table_is_one_line_naming_file_and_line(tmp_path, body, message):
    path = spec_file(tmp_path, f'system = "counterd"\n[nemesis]\n{body}\n')
    with pytest.raises(UsageError) as e:
        build_spec(path, {}, {})
    assert str(e.value).startswith(path) and message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("table, message", [
    ('faults = "kill"\nloss = 0.3', "line 4: nemesis.loss has no effect without the loss fault"),
    ('faults = "partition"\njitter = 0.1',
     "line 4: nemesis.jitter has no effect without the latency fault"),
    ('faults = "none"\ninterval = 2', "line 4: nemesis.interval has no effect without faults"),
])
def test_a_setting_no_requested_fault_uses_is_refused(tmp_path, table, message):
    path = spec_file(tmp_path, f'system = "counterd"\n[nemesis]\n{table}\n')
    with pytest.raises(UsageError) as e:
        build_spec(path, {}, {})
    assert str(e.value) == f"{path} {message}"


def test_a_flag_may_add_the_fault_a_setting_is_for(tmp_path):
    path = spec_file(tmp_path, '[nemesis]\nfaults = "kill"\nloss = 0.3\n')
    assert build_spec(path, {}, {"nemesis": "loss"}).nemesis_settings.loss == 0.3
    user = spec_file(tmp_path, '[nemesis]\nfaults = "mine.faults:make"\nloss = 0.3\n')
    assert build_spec(user, {}, {}).nemesis_settings.loss == 0.3  # a user's may read it


def test_settings_outside_the_table_are_refused(tmp_path):
    with pytest.raises(UsageError, match="put the settings in a \\[nemesis\\] table"):
        build_spec(spec_file(tmp_path, "nemesis_settings = {interval = 2}\n"), {}, {})


# -- user nemeses ------------------------------------------------------------------

def not_a_fault() -> int:
    return 3


def failing_factory() -> Fault:
    raise RuntimeError("no nemesis today\nsecond line")


def deaf_fault() -> Fault:
    """Its nemesis cannot perform the stop the schedule would send."""
    return Fault(lambda test, db, rng, nodes: NoopNemesis(), "start-x", "stop-x")


def same_start_and_stop() -> Fault:
    return Fault(lambda test, db, rng, nodes: NoopNemesis(), "flip", "flip")


@pytest.mark.parametrize("name, message", [
    ("tests.test_fault_schedules:same_start_and_stop", "needs distinct, non-empty names"),
    ("meteor", "unknown fault 'meteor'; known: none, partition"),
    ("no.such.module:make", "cannot import nemesis module 'no.such.module'"),
    ("os:getcwd", "is in Python's standard library"),
    ("tests.test_fault_schedules:missing", "has no 'missing'"),
    ("tests.test_fault_schedules:not_a_fault", "did not make a fault (it made a int)"),
    ("tests.test_fault_schedules:failing_factory",
     "the nemesis factory tests.test_fault_schedules:failing_factory failed: "
     "RuntimeError: no nemesis today"),
    ("tests.test_fault_schedules:deaf_fault", "does not perform start-x, stop-x"),
    ("bad name:x", "expected package.module:factory"),
])
def test_a_bad_user_nemesis_is_one_line(name, message):
    with pytest.raises(UsageError) as e:
        fault_names([name])
        build_nemesis([name], offline(), CapableDB(), random.Random(0))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_user_nemesis_composes_with_bundled_faults():
    package = build_nemesis(["examples.nemesis:make_fault", "kill"], offline(), CapableDB(),
                            random.Random(0))
    assert {"start-one-way", "stop-one-way", "kill", "start"} <= package.nemesis.fs
    assert [op.f for op in package.final] == ["start", "stop-one-way"]  # bundled first
    assert "examples.nemesis:make_fault" not in FAULTS


def test_a_users_module_is_found_in_the_current_directory(tmp_path, monkeypatch):
    """As from a checkout: ``--nemesis examples.nemesis:make_fault`` with no PYTHONPATH."""
    (tmp_path / "sb_user_faults_mod.py").write_text(
        "from nemeses.base import Fault, NoopNemesis\n"
        "def make():\n"
        "    return Fault(lambda t, d, r, n: NoopNemesis(), 'a', 'b')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_factory("nemesis", "sb_user_faults_mod:make", {})().start == "a"


@pytest.mark.slow
@pytest.mark.root
def test_isolate_kill_primary_on_real_redis_kills_the_node_it_cut_off(tmp_path):
    """A real run: redis with async replicas names its primary; the sequence cuts that
    node off, then kills the same node, heals and restarts it (in that order)."""
    import subprocess

    from harness.history import read_jsonl

    test_file = spec_file(tmp_path, 'system = "redis"\nworkload = "register"\nnodes = 3\n'
                                    'time_limit = 6\nconcurrency = 3\n'
                                    'options = { replicas = "async" }\n\n'
                                    '[nemesis]\nfaults = "isolate-kill-primary"\n'
                                    'interval = 1.2\n')
    store = tmp_path / "store"
    r = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "run",
                        test_file, "--store", str(store)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode in (0, 1), r.stdout + r.stderr  # async replicas may read stale
    done = [op for op in read_jsonl((store / "latest").resolve() / "history.jsonl")
            if op.process == "nemesis" and op.type == "info"]
    assert [op.f for op in done[:4]] == ["start-partition", "kill", "stop-partition", "start"]
    cut = done[0].value
    isolated = sorted(n for n, drops in cut.items() if len(drops) == len(cut) - 1)
    assert isolated == ["n1"]  # redis's primary
    assert done[1].value == isolated
