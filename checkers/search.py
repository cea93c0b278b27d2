"""Wing & Gong's linearizability search with Lowe's memoization, tuned for CPython.

The history becomes a doubly linked list of call and return entries in real-time order
(as in Porcupine). The search walks the list from its head: every call entry met before
the first return entry is a candidate for the next linearization point. Linearizing a
call lifts its call and return entries out of the list (dancing links, O(1) to undo);
meeting a return entry means no candidate fits, so the search backtracks.

Why it is fast, in Python too:

* A configuration (set of linearized ops, model state) is memoized once visited. The ok
  ops' set is kept as a *window*: the lowest ok op not yet linearized plus a small int
  of the linearized ones above it, so a key costs O(concurrency), not O(history), in
  time and memory. Crashed ops are kept apart, as a mask, because of the next point.
* Crashed ops (``info`` or never completed) have no return entry: each may be
  linearized at any point after its call, or never, and the search succeeds once every
  ``ok`` op is linearized. Since linearizing one is never required, a configuration
  whose crashed set contains a visited one's (same ok ops, same state) can do nothing
  that one could not: it is pruned (subsumption).
* Identical ops are interchangeable, so of two identical candidates only the one that
  must go first is tried (see ``_twins``): twenty crashed writes of five values no
  longer give a million subsets to try, only how many of each value.
* Read-only ops (``model.read_only``) are forced moves: if one fits the current state,
  linearizing it now loses nothing (it changes no state and every op that must precede
  it is already linearized), so the search takes it without a choice point. A crashed
  read-only op constrains nothing and is dropped before the search. So a choice is
  only made where no read-only op fits; back at it, the scan skips them.
* Where appends only extend a value (a kv key), a read that must be linearized before
  any op invoked later, with only appends besides it, tells which appends may go next
  (``fast_steps.append_target``): the orders of appends are not tried one by one.
  And a value that no read or cas of the key expects, nor any of its extensions, can
  never be observed: all such values are one state (``fast_steps.dead_value_test``),
  so the orders of appends that a write later wipes out unread are one configuration.
* The stack is a chain of tuples, so the longest linearizable prefix is remembered by
  keeping one reference, never by copying; the built-in models step through plain
  functions on values frozen once (``checkers.fast_steps``), and most of their ops
  through no call at all: a guard gives the state an op needs and its effect, checked
  inline. Other models' states are numbered and each (state, op) is stepped once: their
  steps may rebuild whole maps, and the scan meets the same pairs again and again. The
  cyclic garbage collector, which would rescan millions of cache tuples, is paused.
* The search is a generator that yields every 4096 steps, so budgets are checked
  cheaply, several keys can take turns in one process, and a search can be continued
  in a forked worker.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from checkers.calls import Budget, Call, SearchOutcome
from checkers.fast_steps import (
    ANY,
    CALL,
    DEAD,
    MEMO,
    SAME,
    NumberedSteps,
    append_target,
    dead_aware,
    dead_value_test,
    extends_to,
    fast_guard,
    fast_step,
)
from checkers.models import INCONSISTENT, Model, freeze
from harness.reading import gc_paused

_CHECK_EVERY = 4095  # a slice ends every 4096 model steps (a mask)
def search(model: Model, calls: list[Call], budget: Budget,
           read_only: list[bool] | None = None) -> SearchOutcome:
    """Decides whether ``calls`` (sorted by start) linearize under ``model``, within
    ``budget``. See ``search_slices`` for the arguments."""
    with gc_paused():
        return run_slices(search_slices(model, calls, read_only), budget)


def run_slices(slices: Generator[int, str | None, SearchOutcome],
               budget: Budget) -> SearchOutcome:
    """Runs a ``search_slices`` generator to the end, checking the budget between
    slices."""
    try:
        next(slices)
        while True:
            slices.send(budget.exceeded())
    except StopIteration as done:
        return done.value


def _no_step(state: Any, f: str, arg: Any, result: Any) -> Any:
    raise AssertionError("a model without a fast step steps through its numbered states")


def search_slices(model: Model, calls: list[Call], read_only: list[bool] | None = None
                  ) -> Generator[int, str | None, SearchOutcome]:
    """The search, resumable: it yields its step count every 4096 model steps and
    expects back None to go on, or the reason to stop (the outcome is then "unknown",
    with how far it got). Several searches can so share one process in turns, and the
    caller checks budgets between turns.

    ``read_only[i]`` marks calls whose step never changes the state; crashed read-only
    calls must already be dropped by the caller.
    """
    n = len(calls)
    pure = read_only or [False] * n
    # Window ids: ok ops and crashed ops are numbered apart, each in call order.
    # Entries 1..E in real-time order; 0 is the head, E+1 the tail. ent_op[e] is the op
    # of a call entry, -2-op for a return entry, -1 for the tail. (History positions
    # are distinct, so sorting them orders the entries.)
    is_ok = [False] * n
    bit = [0] * n
    at: dict[int, int] = {}
    n_ok = n_crashed = 0
    for o, c in enumerate(calls):
        at[c.start] = o
        if c.end is None:
            bit[o], n_crashed = n_crashed, n_crashed + 1
        else:
            at[c.end] = -2 - o
            is_ok[o] = True
            bit[o], n_ok = n_ok, n_ok + 1
    n_entries = len(at)
    if n_entries != n + n_ok:
        raise ValueError("internal error: two calls share a history position")
    tail = n_entries + 1
    ent_op = [-1] + [at[t] for t in sorted(at)] + [-1]
    match = [-1] * (n_entries + 2)
    call_entry = [0] * n
    for e in range(1, tail):
        x = ent_op[e]
        if x >= 0:
            call_entry[x] = e
        else:
            match[call_entry[-2 - x]] = e
    nxt = list(range(1, n_entries + 2)) + [tail]
    prv = [0] + list(range(n_entries + 1))

    lin = bytearray(n)  # lin[o]: op o is linearized
    fs = [c.f for c in calls]
    state: Any = model.init()
    step = fast_step(model)
    guard = fast_guard(model)
    need, then = [ANY] * n, [CALL] * n
    states: list | None = None  # the model's states by number, if numbered
    if step is None:  # the model's own step, on numbered states (see NumberedSteps)
        numbered = NumberedSteps(model, fs, [c.arg for c in calls],
                                 [c.result for c in calls])
        memo, first_same, step_once = numbered.memo, numbered.first_same, numbered.step
        states, then, state = numbered.states, [MEMO] * n, 0
        twin = _twins(calls)
    else:  # fast steps take values frozen once, here
        args = [freeze(c.arg) for c in calls]
        results = [freeze(c.result) for c in calls]
        twin = _twins(calls, args, results)
        if guard is not None and n:  # what each op needs and does: mostly one comparison
            need, then = map(list, zip(*map(guard, fs, args, results)))
    # Appends only extend a kv key's value; a read that must come before any other op
    # then tells which appends can be next (see ``append_target``), and values no op
    # can observe are all one (see ``dead_value_test``).
    if step is None:
        step = _no_step   # numbered states step through MEMO, never CALL
    extends = getattr(model, "calls_extend", False)
    is_dead = dead_value_test(need) if extends else None
    if is_dead is not None:
        step = dead_aware(step, is_dead)
        then = [DEAD if is_dead(t) else t for t in then]
    # Memo: (low, win, state) -> masks of crashed ops linearized in visited
    # configurations. Linearizing a crashed op is never needed, so a configuration
    # whose crashed set contains a visited one's (same ok ops, same state) can only do
    # less than that one, which failed or is being explored: it is pruned.
    seen: dict[tuple, list[int]] = {}
    n_seen = 0
    low = win = cmask = 0
    top: tuple | None = None  # (entry, state before, low, win, cmask, forced, below)
    depth = 0
    remaining = n_ok
    steps = 0
    best_depth = -1
    best: tuple[tuple | None, Any, int] = (None, state, tail)
    if remaining == 0:
        return SearchOutcome(True)

    # The loop's constants as locals (cheaper to load than globals).
    any_, same, call, memo_, inconsistent = ANY, SAME, CALL, MEMO, INCONSISTENT
    check_every = _CHECK_EVERY
    e = nxt[0]
    choice: tuple | None = None
    resumed = False  # scanning on after a backtrack: no read-only op fits (see below)
    target = None  # what that read returned, if known in this configuration
    while True:
        o = ent_op[e]
        if o >= 0:
            if pure[o]:
                if resumed:
                    e = nxt[e]  # it did not fit this state before the backtrack
                    continue
            elif choice is not None:
                e = nxt[e]  # a choice is made; only a forced move could replace it
                continue
            t = twin[o]
            if t >= 0 and not lin[t]:
                e = nxt[e]  # its identical twin goes first (see _twins)
                continue
            steps += 1
            if not steps & check_every:
                reason = yield steps
                if reason:
                    out = _outcome(model, calls, best, ent_op, states, "unknown", steps,
                                   n_seen)
                    out.reason = reason
                    return out
            x = need[o]
            if x is not any_ and x != state:
                e = nxt[e]
                continue
            new = then[o]
            if new is same:
                new = state
            elif new is call:
                new = step(state, fs[o], args[o], results[o])
                if new is inconsistent:
                    e = nxt[e]
                    continue
            elif new is memo_:
                new = memo.get(state * n + first_same[o])
                if new is None:
                    new = step_once(state, o)
                if new is inconsistent:
                    e = nxt[e]
                    continue
            i = bit[o]
            ncm = cmask
            if not is_ok[o]:
                key = (low, win, new)
                ncm = cmask | (1 << i)
            elif i == low:
                x = win | 1
                t = (x ^ (x + 1)).bit_length() - 1
                key = (low + t, x >> t, new)
            else:
                key = (low, win | (1 << (i - low)), new)
            masks = seen.get(key)
            fresh = True
            if masks is not None:
                if not n_crashed:  # no crashed ops: every mask is empty
                    fresh = False
                else:
                    for m in masks:
                        if m & ncm == m:  # m is a subset of ncm
                            fresh = False
                            break
            if fresh:
                if pure[o]:
                    choice = (e, new, key, ncm, masks, True)
                else:
                    if resumed and target is not None and not extends_to(new, target):
                        e = nxt[e]
                        continue
                    choice = (e, new, key, ncm, masks, False)
                    if not resumed:
                        e = nxt[e]
                        continue
            elif pure[o]:
                # The forced move leads to a configuration already explored and
                # failed, so this configuration fails too.
                choice = None
                e = tail
                continue
            else:
                e = nxt[e]
                continue
        if choice is not None:
            if extends and not resumed and not choice[5]:
                target = append_target(e, nxt, ent_op, pure, need, then)
                if target is not None and not extends_to(choice[1], target):
                    e, choice, resumed = nxt[choice[0]], None, True  # the next choice
                    continue
            e, new, key, ncm, masks, forced = choice
            choice = None
            if masks is None:
                seen[key] = [ncm]
            else:  # keep only the minimal crashed sets: supersets can prune nothing
                masks[:] = [m for m in masks if m & ncm != ncm]
                masks.append(ncm)
            n_seen += 1
            lin[ent_op[e]] = 1
            top = (e, state, low, win, cmask, forced, target, top)
            target = None
            state = new
            low, win, cmask = key[0], key[1], ncm
            p, q = prv[e], nxt[e]
            nxt[p] = q
            prv[q] = p
            r = match[e]
            if r >= 0:
                p, q = prv[r], nxt[r]
                nxt[p] = q
                prv[q] = p
                remaining -= 1
                if remaining == 0:
                    return SearchOutcome(True, steps, n_seen)
            depth += 1
            e = nxt[0]
            resumed = False
            continue
        # No candidate fits: backtrack, through forced moves, to the last real choice.
        if depth > best_depth:
            best_depth = depth
            b = nxt[0]
            while ent_op[b] >= 0:
                b = nxt[b]
            best = (top, state, b)
        while True:
            if top is None:
                return _outcome(model, calls, best, ent_op, states, False, steps, n_seen)
            e, state, low, win, cmask, forced, target, top = top
            lin[ent_op[e]] = 0
            depth -= 1
            r = match[e]
            if r >= 0:
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                remaining += 1
            nxt[prv[e]] = e
            prv[nxt[e]] = e
            if not forced:
                break
        # A real choice is only made once the scan has met every candidate and no
        # read-only op fitted; so the scan goes on with the others, and the first that
        # fits is the next choice.
        e = nxt[e]
        resumed = True


def _twins(calls: list[Call], args: list | None = None, results: list | None = None
           ) -> list[int]:
    """For each op, the identical op (same f, argument and result) that the search
    linearizes before it, or -1.

    Identical ops are interchangeable: if ``p`` was invoked before ``o`` and returns no
    later (crashed ops return never), a linearization that places ``o`` before ``p``
    stays one when the two swap places. So ``o`` need only be tried once ``p`` is
    linearized, which removes the factorial blow-up of, say, twenty crashed writes of
    the same five values. ``args`` and ``results``: the calls' values, if already
    frozen.
    """
    twin = [-1] * len(calls)
    last: dict[tuple, int] = {}
    for o, c in enumerate(calls):
        try:
            k = ((c.f, freeze(c.arg), c.end is None, freeze(c.result)) if args is None
                 or results is None else (c.f, args[o], c.end is None, results[o]))
            hash(k)
        except TypeError:  # an unhashable value: no twins for it
            continue
        p = last.get(k)
        # (same key, so p is crashed exactly when c is)
        if p is not None and (c.end is None or (calls[p].end or 0) < c.end):
            twin[o] = p
        last[k] = o
    return twin


def _outcome(model: Model, calls: list[Call], best: tuple, ent_op: list[int],
             states: list | None, valid: bool | str, steps: int, n_seen: int
             ) -> SearchOutcome:
    """The outcome with the longest linearizable prefix seen, for counterexamples and
    for saying how far an interrupted search got (``states``: the model's states by
    number, when the search numbered them). A ``DEAD`` state is replayed from the
    prefix, so the person reading the counterexample sees the real value."""
    top, state, blocked_entry = best
    if states is not None:
        state = states[state]
    prefix: list[Call] = []
    while top is not None:
        prefix.append(calls[ent_op[top[0]]])
        top = top[-1]
    prefix.reverse()
    if state is DEAD:
        state = model.init()
        for c in prefix:
            state = model.step(state, c.f, c.arg, c.result)
    x = ent_op[blocked_entry]
    blocked = calls[-2 - x] if x <= -2 else None
    pending: list[Call] = []
    if blocked is not None:
        done = {id(c) for c in prefix}
        pending = [c for c in calls if id(c) not in done and c is not blocked
                   and c.start < blocked.end and (c.end is None or c.end > blocked.start)]
    return SearchOutcome(valid, steps, n_seen, prefix=prefix, state=state,
                         blocked=blocked, pending=pending)
