"""Everything the report needs from a history, folded in one pass with bounded memory.

A history can hold millions of operations; the report shows a page that a person can
read and a browser can open. So nothing here keeps the history: one fold
(``summarize``) reads the ops once, in recording order, and keeps only

* per time bucket, the completions by outcome and a log-scale latency histogram (the
  buckets double in width as the run goes on, so there are never more than ``CAP``);
* the faults: the bands when each was active, and the first nemesis ops as rows;
* short windows of consecutive ops around the operations the checkers blamed;
* the invocation time of each process's op in flight, to measure latencies.

Each of these is capped, and whatever was left out is counted so the page can say so.
Ops with unusable fields (a time that is not a non-negative integer, a process that is
neither an integer nor a string) are counted and left out of what they would distort.
"""

from __future__ import annotations

import json
import math
import operator
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.history import FAIL, INFO, INVOKE, NEMESIS, OK, Op, Record

OUTCOMES = (OK, FAIL, INFO)
CAP = 256
"""Time buckets at most; when a run outlasts them, each pair merges into one."""
FIRST_WIDTH_NS = 1_000_000
"""The first buckets are a millisecond wide."""
BINS_PER_DECADE = 5
LATENCY_BINS = 20 * BINS_PER_DECADE
"""Latency histogram bins: 1 ns to 10^20 ns, five per decade."""
MAX_TIME_NS = 10 ** 18
"""A time beyond ~30 years is not a time this harness recorded."""
MAX_OPEN = 100_000
"""Invocations awaiting completion at most; the oldest are forgotten beyond that."""
MAX_BANDS = 200
MAX_FAULT_ROWS = 60
WINDOW = 10
"""Ops shown before and after each operation the checkers blamed."""
MAX_WINDOW_ROWS = 6 * WINDOW
"""A window that keeps meeting blamed ops closes at this many rows."""
MAX_WINDOWS = 5


class Timeline:
    """Completions and latencies per time bucket; buckets merge as time grows."""

    def __init__(self) -> None:
        self.width = FIRST_WIDTH_NS
        self.counts = {k: [0] * CAP for k in OUTCOMES}
        self.hist = {k: [0] * (CAP * LATENCY_BINS) for k in OUTCOMES}
        """Per outcome, the latency histogram of bucket b at [b * LATENCY_BINS, ...)."""
        self.top = {k: [0] * CAP for k in OUTCOMES}
        """The longest latency (ns) per bucket and outcome."""

    def bucket(self, t: int) -> int:
        """The bucket of time ``t`` (ns), widening the buckets until it fits."""
        factor = 2
        while t // (self.width * factor) >= CAP:
            factor *= 2
        if t // self.width >= CAP:
            self.width *= factor
            groups = [range(i, min(i + factor, CAP)) for i in range(0, CAP, factor)]
            counts, hist, top = self.grouped(groups)
            pad = CAP - len(groups)
            for k in OUTCOMES:
                self.counts[k] = counts[k] + [0] * pad
                self.hist[k] = [n for row in hist[k] for n in row] + [0] * (pad * LATENCY_BINS)
                self.top[k] = top[k] + [0] * pad
        return t // self.width

    def grouped(self, groups: list[range]) -> tuple[dict[str, list[int]],
                                                    dict[str, list[list[int]]],
                                                    dict[str, list[int]]]:
        """Counts, histograms (one list per group) and longest latencies of groups of
        consecutive buckets."""
        counts = {k: [sum(self.counts[k][b] for b in g) for g in groups] for k in OUTCOMES}
        hist = {k: [self._summed(k, g) for g in groups] for k in OUTCOMES}
        top = {k: [max(self.top[k][b] for b in g) for g in groups] for k in OUTCOMES}
        return counts, hist, top

    def _summed(self, k: str, g: range) -> list[int]:
        n, h = LATENCY_BINS, self.hist[k]
        row = h[g.start * n:(g.start + 1) * n]
        for b in g[1:]:
            row = list(map(operator.add, row, h[b * n:(b + 1) * n]))
        return row


def bin_value(b: int) -> float:
    """The latency (ns) a histogram bin stands for: its geometric middle."""
    return float(10 ** ((b + 0.5) / BINS_PER_DECADE))


@dataclass
class Band:
    """An interval in which a fault was active, in seconds since the run started."""

    start: float
    end: float
    label: str
    detail: str = ""


class FaultBands:
    """When each fault was active: from its invocation to the invocation of the op that
    healed it (a fault never healed lasts to the end). What the fault did (which nodes,
    which grudge) is in its completion. A healing op says which op it ends in
    ``extra["ends"]`` (``nemeses.schedule``), so any nemesis, a user's too, gets bands."""

    def __init__(self) -> None:
        self.invoked: dict[str, float] = {}
        self.open: dict[str, list[Band]] = {}
        self.bands: list[Band] = []
        self.dropped = 0

    def feed(self, op: Op, t: float) -> None:
        f = op.f if isinstance(op.f, str) else str(op.f)
        ends = op.extra.get("ends") if isinstance(op.extra, dict) else None
        started = ends if isinstance(ends, str) else None
        if op.type == INVOKE:
            if started is None:
                if f in self.invoked or len(self.invoked) < MAX_BANDS:
                    self.invoked[f] = t
            else:
                for band in self.open.pop(started, []):
                    band.end = t
                    self._keep(band)
        elif f in self.invoked:
            if len(self.bands) + sum(map(len, self.open.values())) >= MAX_BANDS:
                self.invoked.pop(f)
                self.dropped += 1
                return
            label, detail = fault_label(op)
            self.open.setdefault(f, []).append(Band(self.invoked.pop(f), t, label, detail))

    def _keep(self, band: Band) -> None:
        if len(self.bands) < MAX_BANDS:
            self.bands.append(band)
        else:
            self.dropped += 1

    def finish(self, end: float) -> list[Band]:
        for opened in self.open.values():
            for band in opened:
                band.end = end
                self._keep(band)
        self.open.clear()
        return sorted(self.bands, key=lambda b: b.start)


def fault_label(completion: Op) -> tuple[str, str]:
    """A short label and a longer description of a fault from its completion."""
    name, v = str(completion.f).removeprefix("start-"), completion.value
    if isinstance(v, list) and v:
        return short(f"{name} {', '.join(map(str, v[:20]))}", 60), ""
    if isinstance(v, dict) and v:
        return name, short("; ".join(
            f"{k} drops {', '.join(map(str, d))}" if isinstance(d, list) else f"{k}: {d}"
            for k, d in list(v.items())[:20]))
    return short(name, 60), "" if v is None else short(str(v))


def short(v: Any, limit: int = 160) -> str:
    """``v`` as at most ``limit`` characters of text (JSON unless it is a string)."""
    if isinstance(v, str):
        text = v
    else:
        try:
            text = json.dumps(v, default=str, ensure_ascii=False)
        except (ValueError, RecursionError):
            text = "…"
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass(order=True)
class TimeAnchor:
    """An op invoked at about ``time`` (ns) by ``process`` (any process if None): the
    first such invocation no earlier than ``time`` and no later than
    ``time + SLACK_NS``."""

    time: int
    why: str = field(compare=False)
    process: Any = field(default=None, compare=False)


SLACK_NS = 2_000_000
"""Times in results.json are rounded to the millisecond: a blamed op is looked for from
half a millisecond before the time given to this long after it."""


@dataclass
class Anchors:
    """Operations the checkers blamed, by history index or by invocation time (ns)."""

    indexes: dict[int, str] = field(default_factory=dict)
    times: list[TimeAnchor] = field(default_factory=list)  # sorted by time

    def __len__(self) -> int:
        return len(self.indexes) + len(self.times)


@dataclass
class Window:
    """Consecutive ops of the history around one blamed operation."""

    why: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    remaining: int = WINDOW


@dataclass
class HistorySummary:
    ops: int = 0
    duration: float = 0.0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    untimed: int = 0
    timeline: Timeline = field(default_factory=Timeline)
    bands: list[Band] = field(default_factory=list)
    bands_dropped: int = 0
    faults: list[dict[str, Any]] = field(default_factory=list)
    faults_total: int = 0
    windows: list[Window] = field(default_factory=list)
    windows_dropped: int = 0


def row(op: Op | Record, blamed: bool = False) -> dict[str, Any]:
    """One op as a row of the page's tables."""
    op = _op(op)
    t = op.time
    extra = op.extra if isinstance(op.extra, dict) else {}
    return {"index": op.index, "time": t / 1e9 if _usable_time(t) else None,
            "process": short(op.process, 40), "type": short(op.type, 20),
            "f": short(op.f, 40), "value": short(op.value, 80),
            "extra": short({k: extra[k] for k in list(extra)[:6]}, 120) if extra else "",
            "blamed": blamed}


def _usable_time(t: Any) -> bool:
    return type(t) is int and 0 <= t <= MAX_TIME_NS


def _op(op: Op | Record) -> Op:
    return op if type(op) is Op else op.to_op(op.f)  # type: ignore[union-attr]


def summarize(history: Iterable[Op | Record], anchors: Anchors | None = None
              ) -> HistorySummary:
    """The one pass over ``history`` (see the module's docstring). It runs once per op
    of histories of millions, so its loop keeps everything in local names. The ops may
    be ``Record``s as the reader decodes them (``iter_records``): only an op that shows
    on the page (a fault, a window's row) is made an ``Op``."""
    out = HistorySummary()
    anchors = anchors or Anchors()
    tl = out.timeline
    counts, hist, top = tl.counts, tl.hist, tl.top
    width = tl.width
    faults = FaultBands()
    in_flight: dict[Any, int] = {}
    watcher = _Watcher(out, anchors)
    recent, watch = watcher.recent, bool(anchors)
    next_index, next_time, in_window = watcher.next_index, watcher.next_time, False
    tmax = n = untimed = 0
    log10, bins, per_decade, limit = math.log10, LATENCY_BINS, BINS_PER_DECADE, MAX_TIME_NS
    invoke, ok, fail, info, nemesis = INVOKE, OK, FAIL, INFO, NEMESIS
    for op in history:
        n += 1
        t: int = op.time  # type: ignore[assignment]  # checked here: timed or not
        timed = type(t) is int and 0 <= t <= limit
        if watch:
            i = op.index
            if type(i) is not int:
                i = -1
            if i >= next_index or (timed and t >= next_time) or in_window:
                watcher.see(op, i, t if timed else -1)
                next_index, next_time = watcher.next_index, watcher.next_time
                in_window = watcher.window is not None
            recent.append(op)
        if not timed:
            untimed += 1
            continue
        if t > tmax:
            tmax = t
        p = op.process
        kind = op.type
        if kind == invoke:
            if p == nemesis:
                _fault(out, faults, op, t)
            elif type(p) is int or type(p) is str:
                in_flight[p] = t
                if len(in_flight) > MAX_OPEN:
                    del in_flight[next(iter(in_flight))]
            else:
                untimed += 1
            continue
        if p == nemesis:
            _fault(out, faults, op, t)
            continue
        if (kind != ok and kind != fail and kind != info) or (
                type(p) is not int and type(p) is not str):
            untimed += 1
            continue
        b = t // width
        if b >= CAP:
            b = tl.bucket(t)
            counts, hist, top, width = tl.counts, tl.hist, tl.top, tl.width
        counts[kind][b] += 1
        start = in_flight.pop(p, None)
        if start is not None and start <= t:
            ns = t - start  # below 10^18, so its bin is below 90
            sb = start // width
            hist[kind][sb * bins + (int(log10(ns) * per_decade) if ns else 0)] += 1
            if ns > top[kind][sb]:
                top[kind][sb] = ns
    out.ops, out.untimed = n, untimed
    out.duration = tmax / 1e9
    out.bands = faults.finish(out.duration)
    out.bands_dropped = faults.dropped
    out.outcomes = {k: sum(counts[k]) for k in OUTCOMES}
    return out


def _fault(out: HistorySummary, faults: FaultBands, record: Op | Record, t: int) -> None:
    op = _op(record)
    out.faults_total += 1
    if len(out.faults) < MAX_FAULT_ROWS:
        out.faults.append(row(op))
    faults.feed(op, t / 1e9)


class _Watcher:
    """Collects the windows around blamed ops. The fold calls ``see`` only when an op
    reaches ``next_index`` or ``next_time``, or while a window is open, so watching
    costs the fold two comparisons per op."""

    def __init__(self, out: HistorySummary, anchors: Anchors) -> None:
        self.out = out
        self.indexes = sorted(anchors.indexes.items())
        self.times = anchors.times
        self.armed: list[TimeAnchor] = []  # time reached, op not met yet
        self.i = self.j = 0
        self.window: Window | None = None
        self.recent: deque[Op | Record] = deque(maxlen=WINDOW)
        self.next_index = self.next_time = MAX_TIME_NS + 1
        self._advance(None, -1, -1)

    def _advance(self, op: Op | Record | None, index: int, t: int) -> str | None:
        """Passes the anchors at or before ``index`` and ``t``; what blamed this op."""
        blamed = None
        while self.i < len(self.indexes) and self.indexes[self.i][0] <= index:
            if self.indexes[self.i][0] == index:
                blamed = self.indexes[self.i][1]
            self.i += 1
        while self.j < len(self.times) and self.times[self.j].time <= t:
            self.armed.append(self.times[self.j])
            self.j += 1
        for a in list(self.armed):
            if op is not None and op.type == INVOKE and a.process in (None, op.process):
                blamed = blamed or a.why  # one window for anchors this close
                self.armed.remove(a)
            elif t > a.time + SLACK_NS:
                self.armed.remove(a)  # never met: the window is only a help
        self.next_index = self.indexes[self.i][0] if self.i < len(self.indexes) \
            else MAX_TIME_NS + 1
        self.next_time = -1 if self.armed else self.times[self.j].time \
            if self.j < len(self.times) else MAX_TIME_NS + 1
        return blamed

    def see(self, op: Op | Record, index: int, t: int) -> None:
        blamed = self._advance(op, index, t)
        w = self.window
        if w is not None:
            w.rows.append(row(op, blamed is not None))
            w.remaining = WINDOW if blamed is not None else w.remaining - 1
            if blamed is not None and blamed not in w.why and len(w.why) < 300:
                w.why = f"{w.why}; {blamed}"
            if w.remaining <= 0 or len(w.rows) >= MAX_WINDOW_ROWS:
                self.window = None
        elif blamed is not None:
            if len(self.out.windows) < MAX_WINDOWS:
                self.window = Window(blamed, [row(o) for o in self.recent] + [row(op, True)])
                self.out.windows.append(self.window)
            else:
                self.out.windows_dropped += 1
