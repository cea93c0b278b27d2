"""The run loop: cluster up, clients and faults, heal, final reads, teardown, check.

Teardown is the part that must never be skipped: every fault healed, every node's logs
collected, every namespace and process removed, on a normal end, an exception, Ctrl-C
or SIGTERM. Both signals end the run the same way: outside the event loop they raise
KeyboardInterrupt; while clients run they cancel the loop's main task instead, because an
exception raised inside an event-loop callback (uvloop's resolver, for one) is swallowed
and the signal would be lost. A second signal during teardown is ignored, so cleaning up
cannot itself be interrupted. What was recorded before an interruption stays in
history.jsonl, and the verdict is "unknown".
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from checkers.base import UNKNOWN
from harness.cluster.remote import Remote, on_each_node
from harness.context import Spec, Test
from harness.db import LogFiles
from harness.history import HistoryWriter, read_jsonl
from harness.interpreter import Interpreter, run_async
from harness.pairing import client_factory
from harness.progress import run_progress
from harness.registry import load_system, load_workload
from harness.report import write_report
from harness.spec_loader import build_spec
from harness.store import new_run_dir, write_json
from harness.summary import print_summary
from nemeses.package import NemesisPackage, build_nemesis, fault_names
from workloads.base import Workload

log = logging.getLogger("splitbrain")

OP_TIMEOUT = 5.0
"""Backstop for a client op; clients enforce their own, shorter, timeouts."""
DEFAULT_RECOVERY_TIME = 2.0
"""Seconds between healing and the final reads, for systems that do not say."""
CONVERGENCE_TIME = 10.0
"""Seconds, beyond the recovery time, that the final reads may take to converge."""
FINAL_READ_INTERVAL = 0.5
"""Seconds between two rounds of final reads."""


def run_from_cli(test_file: str | None, options: dict[str, str],
                 flags: dict[str, Any]) -> dict[str, Any]:
    return run(build_spec(test_file, options, flags))


def run(spec: Spec) -> dict[str, Any]:
    """Runs one test end to end and returns the checker's result (also in results.json)."""
    fault_names(spec.nemesis)
    system = load_system(spec.system, spec.options)
    workload: Workload = load_workload(spec.workload, spec.options)
    client_factory(spec.system, system, workload.name)  # an unsupported pair stops here
    remote = _make_remote(spec)
    run_dir = new_run_dir(spec.store, spec.name)
    _log_to(run_dir / "splitbrain.log")
    write_json(run_dir / "test.json", spec.to_dict())
    test = Test(spec, remote, run_dir)
    history = HistoryWriter(run_dir / "history.jsonl")
    interrupted = False
    notes: list[str] = []  # what the user should know about how the run was set up
    log.info("run %s in %s (seed %d)", spec.name, run_dir, spec.seed)
    with _Interrupts() as interrupts:
        try:
            _run_cluster(test, system, workload, history, interrupts, notes)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: healing faults and tearing the cluster down")
    history.close()
    return _check_and_report(test, system, workload, interrupted, notes)


def _make_remote(spec: Spec) -> Remote:
    from harness.cluster.backends import make_remote

    return make_remote(spec)


def _run_cluster(test: Test, system: Any, workload: Workload, history: HistoryWriter,
                 interrupts: _Interrupts, notes: list[str]) -> None:
    """Everything that needs the cluster; tears it down on every exit path."""
    db = system.db(test)
    # Before any cluster exists: a fault asked for by name that cannot act is refused.
    faults = build_nemesis(test.spec.nemesis, test, db, random.Random(test.spec.seed),
                           nodes=system.serving_nodes(test))
    notes.extend(faults.notes)
    for note in faults.notes:
        log.info("%s", note)
    package: NemesisPackage | None = None
    try:
        test.remote.setup(test.nodes)
        on_each_node(test.nodes, lambda node: db.setup(test, node))
        package = faults
        package.nemesis.setup(test)
        try:
            run_async(interrupts.cancelling(
                _clients_and_faults(test, system, workload, history, package)))
        except asyncio.CancelledError:
            if interrupts.received is None:
                raise
            raise KeyboardInterrupt from None
    finally:
        with _signals_ignored():
            _teardown(test, db, package, history)


async def _clients_and_faults(test: Test, system: Any, workload: Workload,
                              history: HistoryWriter, package: NemesisPackage) -> None:
    spec = test.spec
    serving = system.serving_nodes(test)
    open_client = client_factory(spec.system, system, workload.name)
    interp = Interpreter(test, history, lambda node: open_client(test, node),
                         serving, spec.concurrency, op_timeout=OP_TIMEOUT)
    try:
        with run_progress(history) as progress:
            progress.phase("clients and faults", spec.time_limit)
            await interp.run(workload.generator, time_limit=spec.time_limit, seed=spec.seed,
                             rate=spec.rate, nemesis=package.nemesis,
                             schedule=package.schedule)
            history.sync()
            progress.phase("healing")
            log.info("healing: %s",
                     ", ".join(op.f for op in package.final) or "nothing to heal")
            for op in package.final:
                await interp.nemesis_op(package.nemesis, op)
            if workload.final is not None:
                recovery = getattr(system, "recovery_time", DEFAULT_RECOVERY_TIME)
                progress.phase("waiting for recovery", recovery)
                await asyncio.sleep(recovery)
                progress.phase("final reads")
                await _converged_final_reads(interp, serving, workload.final,
                                             recovery + CONVERGENCE_TIME)
        history.sync()
    finally:
        await interp.close()


async def _converged_final_reads(interp: Interpreter, serving: list[str],
                                 final: tuple[str, Any], budget: float) -> None:
    """Takes the final reads on every serving node until they agree and stop changing.

    A replica cut off by a partition may still be catching up when healing is over: a
    read of it then shows what it has not received yet, not what was lost. So the reads
    are taken in rounds, every ``FINAL_READ_INTERVAL`` seconds, until two rounds in a
    row succeed on every node with one and the same value, or ``budget`` seconds pass.
    Every attempt is recorded (marked final); the checker judges the last read of each
    node and says "final reads disagree" instead of counting losses when they never
    agreed.
    """
    f, value = final
    loop = asyncio.get_running_loop()
    give_up = loop.time() + budget
    previous: list[Any] | None = None
    while True:
        done = await interp.final_ops([(node, f, value) for node in serving],
                                      attempts=1, extra={"final": True})
        # A set's read is a list in whatever order the server keeps: compare contents.
        values = [sorted(op.value, key=repr) if isinstance(op.value, list) else op.value
                  for op in done if op.type == "ok"]
        agreed = len(values) == len(done) and all(v == values[0] for v in values)
        if agreed and previous == values:
            return
        previous = values if agreed else None
        if loop.time() + FINAL_READ_INTERVAL >= give_up:
            log.warning("final reads did not converge within %g s: %s", budget, ", ".join(
                f"{op.extra.get('node')} {op.value if op.type == 'ok' else op.type}"
                for op in done))
            return
        await asyncio.sleep(FINAL_READ_INTERVAL)


def _teardown(test: Test, db: Any, package: NemesisPackage | None,
              history: HistoryWriter) -> None:
    """Heals, collects logs, removes the system and the cluster; logs every failure."""
    steps: list[tuple[str, Callable[[], None]]] = []
    if package is not None:
        steps.append(("heal faults", lambda: package.nemesis.teardown(test)))
    if isinstance(db, LogFiles):
        steps.append(("collect logs", lambda: _collect_logs(test, db)))
    steps.append(("tear down the system",
                  lambda: on_each_node(test.nodes, lambda n: db.teardown(test, n))))
    steps.append(("tear down the cluster", test.remote.teardown))
    for what, step in steps:
        try:
            step()
        except Exception as e:  # keep going: later steps remove what this one could not
            log.error("could not %s: %s", what, e)
    with suppress(OSError):
        history.sync()


def _collect_logs(test: Test, db: LogFiles) -> None:
    for node in test.nodes:
        dest = test.run_dir / "nodes" / node
        dest.mkdir(parents=True, exist_ok=True)
        for path in db.log_files(test, node):
            try:
                test.remote.download(node, path, str(dest / Path(path).name))
            except Exception as e:
                log.warning("no log %s from %s: %s", path, node, e)


def _check_and_report(test: Test, system: Any, workload: Workload,
                      interrupted: bool, notes: list[str]) -> dict[str, Any]:
    history = read_jsonl(test.run_dir / "history.jsonl", tolerate_torn_tail=True)
    if interrupted:
        result: dict[str, Any] = {"valid": UNKNOWN, "anomalies": [],
                                  "reason": "the run was interrupted before its final reads"}
    else:
        with run_progress() as progress:
            progress.phase("checking the history")
            result = workload.checker.check(test, history)
    result["run_dir"] = str(test.run_dir)
    if notes:
        result["notes"] = notes
    write_json(test.run_dir / "results.json", result)
    report = None
    try:
        report = write_report(test.run_dir)
    except Exception as e:  # the verdict stands without its report; say why it is missing
        log.error("could not write report.html: %s", e, exc_info=True)
    print_summary(test, history, result, system.serving_nodes(test), report)
    return result


def _log_to(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class _Interrupts:
    """SIGINT and SIGTERM end the run; how depends on whether the event loop is running.

    Outside the loop the handler raises KeyboardInterrupt, as Ctrl-C always does. Inside
    it, the handler only cancels the main task: the loop then records every op in flight
    as interrupted and unwinds, and ``_run_cluster`` turns the cancellation back into
    KeyboardInterrupt. The handler never raises inside a loop callback, where the
    exception would be swallowed and the run would carry on as if nothing happened.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._task: asyncio.Task[Any] | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        self._saved = {s: signal.signal(s, self._handle) for s in self._SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: object) -> None:
        first = self.received is None
        if first:
            self.received = signum
        task = self._task
        if task is None:
            raise KeyboardInterrupt
        if first:
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def cancelling(self, main: Coroutine[Any, Any, None]) -> None:
        """Runs ``main`` as the task a signal cancels."""
        self._task = asyncio.current_task()
        try:
            if self.received is not None:  # a signal came while the loop was starting
                raise asyncio.CancelledError
            await main
        finally:
            self._task = None
            main.close()


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Teardown must finish: a second Ctrl-C or SIGTERM while it runs is ignored."""
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
