"""The run loop: cluster up, clients and faults, heal, final reads, teardown, check.

Teardown is the part that must never be skipped: every fault healed, every node's logs
collected, every namespace and process removed, on a normal end, an exception, Ctrl-C
or SIGTERM. Signals follow the process's one contract (``harness.stop``): a signal stops
setup, the clients or the check; the teardown, the results and the report always finish,
and a verdict reached before a signal is kept, marked as interrupted.

Every run that got as far as its history ends with ``results.json``, the report and the
summary, whatever stopped it: "unknown" with the reason when a signal or the environment
(``EnvironmentFailure``: a server that would not start, a node that failed a command, a
full store) cut it short. A store that cannot take the run's records is named in one
line, after the verdict it could not record.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkers.base import UNKNOWN
from harness.cluster.remote import Remote, on_each_node
from harness.context import Spec, Test
from harness.db import LogFiles
from harness.errors import EnvironmentFailure, SplitbrainError, StoreError
from harness.history import HistoryError, HistoryWriter, read_jsonl
from harness.interpreter import Interpreter, run_async
from harness.pairing import client_factory
from harness.progress import run_progress
from harness.registry import SYSTEMS, load_system, load_workload
from harness.report import write_report
from harness.spec_loader import build_spec
from harness.stop import STOP
from harness.store import LogFile, logging_to, new_run_dir, write_json
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
    """Runs one test end to end and returns the checker's result (also in results.json).

    Raises, after the teardown, the results and the summary: EnvironmentFailure when the
    environment failed the run (the result is "unknown"), StoreError when the store could
    not take the run's records (its ``exit_code`` is the verdict's when there was one).
    """
    with STOP.installed():
        fault_names(spec.nemesis)
        system = load_system(spec.system, spec.options)
        workload: Workload = load_workload(spec.workload, spec.options)
        client_factory(spec.system, system, workload.name)  # an unsupported pair stops here
        remote = _make_remote(spec)
        run_dir = new_run_dir(spec.store, spec.name)
        with logging_to(run_dir / "splitbrain.log") as log_file:
            write_json(run_dir / "test.json", spec.to_dict())
            test = Test(spec, remote, run_dir)
            history = HistoryWriter(run_dir / "history.jsonl")
            log.info("run %s in %s (seed %d)", spec.name, run_dir, spec.seed)
            ending = _run_and_tear_down(test, system, workload, history)
            return _check_and_report(test, system, workload, ending, log_file)


def _make_remote(spec: Spec) -> Remote:
    from harness.cluster.backends import make_remote

    return make_remote(spec)


@dataclass
class _Ending:
    """Why the cluster phase ended early, if it did."""

    interrupted: bool = False
    failure: EnvironmentFailure | None = None
    store_errors: list[StoreError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the user should know about how the run was set up."""


def _run_and_tear_down(test: Test, system: Any, workload: Workload,
                       history: HistoryWriter) -> _Ending:
    ending = _Ending()
    teardown = _Teardown(test, history)
    try:
        try:
            try:
                _run_cluster(test, system, workload, history, teardown, ending.notes)
            finally:
                teardown.run()
        finally:
            # Again, in case the first signal landed just as the finally above began: it
            # acts once, so this call cannot be cut short too; otherwise a no-op.
            teardown.run()
    except KeyboardInterrupt:
        ending.interrupted = True
        log.warning("interrupted (%s): faults healed, cluster torn down", STOP.describe())
    except EnvironmentFailure as e:
        ending.failure = e
        _point_at_collected_log(test, e)
        log.error("the environment failed the run: %s\n%s", e, e.detail, exc_info=True)
    try:
        history.close()
    except StoreError as e:
        if ending.failure is None:
            ending.failure = e
    if isinstance(ending.failure, StoreError):
        ending.store_errors.append(ending.failure)
    return ending


def _run_cluster(test: Test, system: Any, workload: Workload, history: HistoryWriter,
                 teardown: _Teardown, notes: list[str]) -> None:
    """Everything that needs the cluster; ``teardown`` learns what to undo as it is made."""
    with _system_code(test, "db()"):
        db = system.db(test)
    with _system_code(test, "serving_nodes()"):
        serving = system.serving_nodes(test)
    # Before any cluster exists: a fault asked for by name that cannot act is refused.
    package = build_nemesis(test.spec.nemesis, test, db, random.Random(test.spec.seed),
                            nodes=serving)
    notes.extend(package.notes)
    for note in package.notes:
        log.info("%s", note)
    teardown.db = db  # from here on there is something to tear down
    test.remote.setup(test.nodes)
    on_each_node(test.nodes, lambda node: _setup_node(test, db, node))
    teardown.package = package
    package.nemesis.setup(test)
    with STOP.event_loop():
        run_async(STOP.cancelling(
            _clients_and_faults(test, system, workload, history, package)))


def _setup_node(test: Test, db: Any, node: str) -> None:
    with _system_code(test, f"setup on {node}"):
        db.setup(test, node)


@contextmanager
def _system_code(test: Test, what: str) -> Iterator[None]:
    """Calls into a user's system (``--system package.module:factory``): whatever it
    raises means it could not be set up here, an environment failure, not a bug in
    splitbrain. A bundled system's exceptions other than splitbrain's own are bugs."""
    try:
        yield
    except SplitbrainError:
        raise
    except (Exception, SystemExit) as e:
        if test.spec.system in SYSTEMS:
            raise
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise EnvironmentFailure(f"the system's {what} failed: {type(e).__name__}"
                                 + (f": {text}" if text else "")) from e


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


@dataclass
class _Teardown:
    """Undoes what ``_run_cluster`` made, once: heals, collects logs, removes the system
    and the cluster, logging every step that fails and going on with the next."""

    test: Test
    history: HistoryWriter
    db: Any = None
    package: NemesisPackage | None = None
    done: bool = False

    def run(self) -> None:
        STOP.finish_first("the teardown")
        if self.done:
            return
        self.done = True
        test, db, package = self.test, self.db, self.package
        steps: list[tuple[str, Callable[[], None]]] = []
        if package is not None:
            steps.append(("heal faults", lambda: package.nemesis.teardown(test)))
        if db is not None and isinstance(db, LogFiles):
            steps.append(("collect logs", lambda: _collect_logs(test, db)))
        if db is not None:
            steps.append(("tear down the system",
                          lambda: on_each_node(test.nodes, lambda n: db.teardown(test, n))))
        steps.append(("tear down the cluster", test.remote.teardown))
        for what, step in steps:
            try:
                step()
            except Exception as e:  # keep going: later steps remove what this one could not
                log.error("could not %s: %s", what, e)
        with suppress(SplitbrainError):  # a failed history says so at close
            self.history.sync()


def _collect_logs(test: Test, db: LogFiles) -> None:
    for node in test.nodes:
        dest = test.run_dir / "nodes" / node
        dest.mkdir(parents=True, exist_ok=True)
        for path in db.log_files(test, node):
            try:
                test.remote.download(node, path, str(dest / Path(path).name))
            except Exception as e:
                log.warning("no log %s from %s: %s", path, node, e)


def _point_at_collected_log(test: Test, failure: EnvironmentFailure) -> None:
    """The node's own log is gone after teardown: name the copy in the store instead."""
    if failure.node and failure.log_file:
        copy = test.run_dir / "nodes" / failure.node / Path(failure.log_file).name
        if copy.is_file():
            failure.log_file = str(copy)


def _check_and_report(test: Test, system: Any, workload: Workload, ending: _Ending,
                      log_file: LogFile) -> dict[str, Any]:
    STOP.finish_first("the results and the report")
    unreadable: HistoryError | None = None
    try:
        history = read_jsonl(test.run_dir / "history.jsonl", tolerate_torn_tail=True)
    except HistoryError as e:  # e.g. a user client's reply nested past the reader's bound
        history, unreadable = [], e
    try:
        result = (_verdict(test, workload, history, ending) if unreadable is None else
                  {"valid": UNKNOWN, "anomalies": [],
                   "reason": f"the recorded history cannot be read back: {unreadable}"})
        STOP.finish_first("the results and the report")  # inside: a signal before it counts
    except KeyboardInterrupt:
        result = {"valid": UNKNOWN, "anomalies": [], "interrupted": STOP.describe(),
                  "reason": f"interrupted ({STOP.describe()}) while checking the history"}
    result["run_dir"] = str(test.run_dir)
    if ending.notes:
        result["notes"] = ending.notes
    _mark_interrupted(result)
    _save_results(test, result, ending)
    report = None
    try:
        report = write_report(test.run_dir)
    except StoreError as e:
        ending.store_errors.append(e)
    except Exception as e:  # the verdict stands without its report; say why it is missing
        log.error("could not write report.html: %s", e, exc_info=True)
    print_summary(test, history, result, system.serving_nodes(test), report)
    if _mark_interrupted(result):
        _save_results(test, result, ending)  # a signal came while the report was drawn
    if log_file.failed:
        ending.store_errors.append(StoreError(f"could not write {log_file.path}",
                                              path=log_file.path))
    if ending.failure is not None and not isinstance(ending.failure, StoreError):
        raise ending.failure
    if ending.store_errors:
        raise _store_failure(test, ending.store_errors, result)
    return result


def _verdict(test: Test, workload: Workload, history: list[Any],
             ending: _Ending) -> dict[str, Any]:
    if ending.failure is not None:
        return {"valid": UNKNOWN, "anomalies": [], "reason": str(ending.failure)}
    if ending.interrupted:
        return {"valid": UNKNOWN, "anomalies": [], "interrupted": STOP.describe(),
                "reason": f"the run was interrupted ({STOP.describe()}) before its final reads"}
    STOP.arm()  # a check may take long: a signal stops it (KeyboardInterrupt)
    with run_progress() as progress:
        progress.phase("checking the history")
        return workload.checker.check(test, history)


def _mark_interrupted(result: dict[str, Any]) -> bool:
    """Marks a verdict reached from a complete history that a signal came with: the
    verdict stands, and the command exits 2."""
    if not STOP.signals or "interrupted" in result:
        return False
    result["interrupted"] = (f"{STOP.describe()} after the history was complete: "
                             "the verdict stands")
    return True


def _save_results(test: Test, result: dict[str, Any], ending: _Ending) -> None:
    try:
        write_json(test.run_dir / "results.json", result)
    except StoreError as e:
        if e not in ending.store_errors:
            ending.store_errors.append(e)


def _store_failure(test: Test, errors: list[StoreError], result: dict[str, Any]) -> StoreError:
    """One line for everything the store could not take, with the verdict's exit code
    when the run reached one (it was printed, only its record is missing)."""
    names: list[str] = []
    for e in errors:
        name = Path(str(e.path)).name if e.path is not None else str(e)
        if name not in names:
            names.append(name)
    causes = [c for e in errors if isinstance(c := e.__cause__, OSError)]
    full = any(c.errno in (errno.ENOSPC, errno.EDQUOT) for c in causes)
    why = sorted({c.strerror for c in causes if c.strerror})
    state = "is full" if full else "could not be written"
    verdict = result.get("valid")
    reached = (verdict is True or verdict is False) and not STOP.signals
    code = (0 if verdict is True else 1) if reached else StoreError.exit_code
    kept = "the verdict above stands" if reached else "the run ends unknown"
    return StoreError(f"the store at {test.spec.store} {state}"
                      + (f" ({', '.join(why)})" if why else "")
                      + f": could not write {', '.join(names)} of {test.run_dir}; {kept}",
                      exit_code=code)
