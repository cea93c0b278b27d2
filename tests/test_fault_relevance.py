"""Faults that cannot act on the run are refused when asked for by name, and left out of
the default with a note (nemeses.package.cannot_act)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster.remote import NoopRemote
from harness.context import Spec
from harness.context import Test as RunContext  # not Test*: pytest would collect it
from harness.db import NoopDB
from harness.errors import UsageError
from nemeses.base import NoopNemesis
from nemeses.package import build_nemesis

NODES = ["n1", "n2", "n3"]


class KillableDB(NoopDB):
    """Kill and start that do nothing: only the capability matters here."""

    def kill(self, test: RunContext, node: str) -> None:
        pass

    def start(self, test: RunContext, node: str) -> None:
        pass


def offline(system: str = "demo") -> RunContext:
    return RunContext(Spec(nodes=list(NODES), system=system), NoopRemote(), Path("/tmp"))


@pytest.mark.parametrize("fault", ["partition", "partition-one", "partition-ring", "loss",
                                   "latency"])
def test_a_network_fault_asked_for_on_a_single_node_system_is_refused(fault):
    with pytest.raises(UsageError) as e:
        build_nemesis([fault], offline(), KillableDB(), random.Random(0), nodes=["n1"])
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"fault {fault} cannot act on this run: ")
    assert "runs on n1 alone" in message and "controller" in message
    package = build_nemesis([fault], offline(), KillableDB(), random.Random(0),
                            nodes=["n1", "n2"])  # two nodes: the fault can act
    assert package.notes == [] and package.final


def test_the_default_leaves_out_what_cannot_act_and_says_so():
    package = build_nemesis(None, offline(), KillableDB(), random.Random(0), nodes=["n1"])
    assert package.nemesis.fs == {"kill", "start"}
    assert [op.f for op in package.final] == ["start"]
    [note] = package.notes
    assert note.startswith("default fault partition left out: partition acts on the "
                           "traffic between nodes, and system demo runs on n1 alone")
    everything = build_nemesis(None, offline(), KillableDB(), random.Random(0), nodes=NODES)
    assert everything.notes == []
    assert everything.nemesis.fs == {"kill", "start", "start-partition", "stop-partition"}


def test_a_default_that_cannot_act_at_all_injects_nothing():
    package = build_nemesis(None, offline(), NoopDB(), random.Random(0), nodes=["n1"])
    assert isinstance(package.nemesis, NoopNemesis)
    assert list(package.schedule) == [] and package.final == []
    assert [n.split(":")[0] for n in package.notes] == [
        "default fault partition left out", "default fault kill left out"]
    assert package.notes[1].endswith("system demo cannot be killed: it has no kill/start")


@pytest.mark.parametrize(("fault", "words"), [("kill", "cannot be killed"),
                                              ("pause", "cannot be paused")])
def test_a_process_fault_asked_for_without_its_capability_is_refused(fault, words):
    with pytest.raises(UsageError, match=words):
        build_nemesis([fault], offline(), NoopDB(), random.Random(0), nodes=NODES)


CLI = [sys.executable, "-c", "from harness.cli import main; main()"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the local backend needs root")
def test_the_command_line_refuses_in_one_line_and_notes_what_the_default_dropped(tmp_path):
    store = tmp_path / "store"
    base = [*CLI, "run", "--system", "tests.misbehaving:exiting", "--nodes", "3",
            "--time-limit", "0.5", "--concurrency", "1", "--store", str(store)]
    refused = subprocess.run([*base, "--nemesis", "partition"], capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 254
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "fault partition cannot act on this run" in refused.stderr
    ran = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert "note default fault partition left out" in ran.stdout
    results = json.loads((store / "latest" / "results.json").read_text())
    assert [n.split(":")[0] for n in results["notes"]] == [
        "default fault partition left out", "default fault kill left out"]
