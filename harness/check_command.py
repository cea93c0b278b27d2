"""``splitbrain check``: check a recorded history (ours, Jepsen's, Porcupine's) offline.

Everything a person can get wrong (a missing file, bad JSON for ``--initial``, a model
that does not exist or does not fit the history's operations) becomes a one-line
``UsageError`` before the search starts, so the only thing left to go wrong in the
search is the history itself.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import click

from checkers import linearizable
from checkers.base import UNKNOWN as UNKNOWN_VERDICT
from checkers.calls import Budget
from checkers.counter_linear import check_unit_counter_streaming
from checkers.models import MODELS, UNKNOWN, Counter, Model
from harness.errors import UsageError
from harness.formats import detect_file_format, op_lines, read_history
from harness.history import NEMESIS, HistoryError, Op, iter_records
from harness.reading import BudgetExceeded

# Porcupine's key-value model starts every key at the empty string, so a get of a key
# never written returns "" there; without this a user would have to know to say so.
_FORMAT_DEFAULT_INITIAL: dict[tuple[str, str], Any] = {("porcupine", "kv"): ""}
STREAM_EXPLAIN_OPS = 100_000
"""From how many ops an invalid unit-counter history is explained from columns instead
of a list of ops (and without the search's prefix): about 150 MB of ops and calls."""


def check_file(path: Path | str, *, model: str = "counter", fmt: str = "auto",
               initial: str | None = None, time_limit: float | None = None,
               memory_limit_mb: int | None = None) -> dict[str, Any]:
    """Reads ``path``, checks it for linearizability against ``model``, prints the
    verdict and explanation, and returns the checker's result.

    The time and memory budgets cover the whole command, reading included: a history
    that takes longer than ``time_limit`` to read is "unknown", like one whose search
    does."""
    started = time.monotonic()
    path = Path(path)
    for option, limit in (("--time-limit", time_limit), ("--memory-limit", memory_limit_mb)):
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise UsageError(f"{option} must be a positive finite number, got {limit}")
    budget = Budget(None if time_limit is None else started + time_limit,
                    memory_limit_mb or linearizable.DEFAULT_MEMORY_LIMIT_MB)
    initial_value = parse_initial(initial)
    if fmt == "auto":
        fmt = detect_file_format(path)
    if initial is None:
        initial_value = _FORMAT_DEFAULT_INITIAL.get((fmt, model))
    m = build_model(model, initial_value)
    try:
        result = _proved_streaming(path, fmt, m, budget)
        if result is None:
            history = read_history(path, fmt, limits=budget)
    except BudgetExceeded as e:
        result = _unknown_while_reading(m, e, time.monotonic() - started)
    if result is None:
        check_types(m, history, path, fmt)
        check_fit(m, history)
        remaining = None if budget.deadline is None else \
            max(budget.deadline - time.monotonic(), 1e-3)
        result = linearizable.check(m, history, time_limit=remaining,
                                    memory_limit_mb=budget.memory_limit_mb)
    shown_initial = "" if initial_value is None else f", initial {json.dumps(initial_value)}"
    click.echo(f"{path} ({fmt}{shown_initial})")
    click.echo(linearizable.render(result))
    return result


def _proved_streaming(path: Path, fmt: str, model: Model,
                      budget: Budget) -> dict[str, Any] | None:
    """The verdict of a unit-counter ``history.jsonl``, decided in one streaming pass
    that holds no op (a million ops would take hundreds of MB as a list), and explained,
    when it is invalid and long, from a second pass into columns; None when the history
    is anything else: the caller reads it whole and checks it the usual way, which
    names an ill-typed line, and for a short history adds the search's prefix."""
    if fmt != "jsonl" or type(model) is not Counter or type(model.initial) is not int:
        return None   # (an ill-typed initial state is check_fit's to explain)
    started = time.monotonic()
    try:   # (an ill-typed read or delta is no proof either: the full path names it)
        unit = check_unit_counter_streaming(
            lambda plain: iter_records(path, limits=budget, plain=plain), model.initial,
            explain_from=STREAM_EXPLAIN_OPS)
    except HistoryError:
        return None
    if unit is None:
        return None
    return {"model": model.name, **unit,
            "stats": {"elapsed_s": round(time.monotonic() - started, 4)}}


def _unknown_while_reading(model: Model, e: BudgetExceeded, elapsed: float) -> dict[str, Any]:
    return {"valid": UNKNOWN_VERDICT, "model": model.name, "analyzer": "none", "ops": 0,
            "reason": str(e), "explanation": f"undecided: {e}", "anomalies": [],
            "stats": {"elapsed_s": round(elapsed, 4)}}


def check_types(model: Model, history: list[Op], path: Path, fmt: str) -> None:
    """Raises UsageError, naming the file and line, for a number the model needs that
    is not one: a counter's delta, or the value an ok counter read returned.

    A counter read of "abc" is not a read the system could have returned; checking it
    would call a correct system invalid over a recording fault."""
    if not isinstance(model, Counter):
        return
    for position, op in enumerate(history):
        if op.process == NEMESIS:
            continue
        if op.type == "invoke" and op.f == "add":
            what = "delta"
        elif op.type == "ok" and op.f == "read":
            what = "read value"
        else:
            continue
        v = op.value
        if (type(v) is int or type(v) is float) and math.isfinite(v):
            continue
        lines = op_lines(path, fmt, position + 1)
        line = lines[position] if position < len(lines) else f"op {op.index}"
        raise UsageError(f"{path}:{line}: a counter {what} must be a number, got "
                         f"{json.dumps(v, default=str)[:60]}")


def parse_initial(initial: str | None) -> Any:
    """The ``--initial`` option: JSON text, or None when absent."""
    if initial is None:
        return None
    try:
        return json.loads(initial, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # bad JSON, an int over 4,300 digits, depth
        why = e.msg if isinstance(e, json.JSONDecodeError) else str(e).split(";")[0]
        raise UsageError(f"--initial is not valid JSON: {initial!r:.60} ({why})") from None


def _no_constant(name: str) -> Any:
    """NaN and the infinities are not JSON, and equal no state a model could reach."""
    raise ValueError(f"{name} is not a number a history can hold")


def build_model(name: str, initial: Any = None) -> Model:
    """A bundled model by name, or a user's as ``package.module:factory`` (a class or a
    function taking the optional initial state)."""
    if name in MODELS:
        factory: Any = MODELS[name]
    elif ":" in name:
        from harness.registry import load_factory  # (pydantic, asyncio: a user's model only)

        factory = load_factory("model", name, {})
    else:
        raise UsageError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))}; "
                         "or package.module:factory)")
    try:
        model = factory() if initial is None else factory(initial)
    except (TypeError, ValueError) as e:
        if initial is None:
            raise UsageError(f"cannot make the {name} model: {e}") from None
        raise UsageError(f"--initial {json.dumps(initial)} does not suit the {name} "
                         f"model ({e})") from None
    if not isinstance(model, Model):
        raise UsageError(f"{name} is not a model: it needs name, init(), "
                         "step(state, f, arg, result) and describe(state)")
    return model


def check_fit(model: Model, history: list[Op]) -> None:
    """Raises UsageError when the history has operations the model cannot take.

    Each distinct operation is tried once from the initial state with an unknown
    result, and so is each distinct kind of result an ``ok`` completion returned (a
    set read that returned a number, say); a model that cannot take one raises, and the
    message names the models that would take every operation of this history.
    """
    samples: dict[tuple[str, str | None], tuple[Op, Any, Op]] = {}
    invoked: dict[Any, Op] = {}
    for op in history:
        if op.process == NEMESIS:
            continue
        if op.type == "invoke":
            samples.setdefault((op.f, None), (op, UNKNOWN, op))
            invoked[op.process] = op
        elif op.type == "ok" and op.process in invoked:
            inv = invoked[op.process]
            samples.setdefault((op.f, type(op.value).__name__), (inv, op.value, op))
    if model.name in ("register", "cas-register") and _keyed_reads(history):
        raise UsageError(f"every read names a key ([key, null]), as in a Jepsen "
                         f"independent history; the {model.name} model would take the "
                         f"[key, value] pairs for values: use --model kv, a cas-register "
                         f"per key")
    misfit = _misfit(model, samples)
    if misfit is None:
        return
    if _misfit(type(model)(), samples) is None:
        raise UsageError(f"the initial state does not suit the {model.name} model: {misfit}")
    fitting = [name for name, cls in sorted(MODELS.items()) if _misfit(cls(), samples) is None]
    hint = f"; try --model {' or '.join(fitting)}" if fitting else ""
    raise UsageError(f"the {model.name} model cannot take this history: {misfit}{hint}")


def _keyed_reads(history: list[Op]) -> bool:
    """Whether every read was invoked as ``[key, null]``: a single register's reads are
    invoked with null alone."""
    reads = [op.value for op in history
             if op.process != NEMESIS and op.type == "invoke" and op.f == "read"]
    return bool(reads) and all(isinstance(v, list) and len(v) == 2 and v[1] is None
                               for v in reads)


def _misfit(model: Model, samples: dict[tuple[str, str | None], tuple[Op, Any, Op]]
            ) -> str | None:
    for invoked, result, op in samples.values():
        try:
            model.step(model.init(), invoked.f, invoked.value, result)
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            shown = json.dumps(op.value, default=str)
            what = f"{op.f} {shown}" if op is invoked else f"{op.f} returned {shown}"
            return f"op {op.index} ({what}): {e}"
    return None
