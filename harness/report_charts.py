"""The report's pictures, as plain geometry: rectangles, dots, lines and labels.

Python decides where everything goes; the template (``templates/report.html.j2``) only
draws it as inline SVG. So the report is one self-contained file with no scripts and no
fonts or libraries fetched from anywhere, and the geometry can be tested as data.

Every picture has a bounded number of shapes, however long the run: the history is
folded into time buckets first (``harness.report_history``), and the pictures draw the
buckets, never the ops.

* operations over time: completions per time slice, stacked by ok / fail / info, under
  bands that show when each fault was active;
* latency over time, as Jepsen's latency-quantiles plot: per time slice the median,
  99th percentile and longest latency of ok ops (log scale), with the median latency of
  failed and indeterminate ops as dots, under the same bands;
* a counterexample, drawn as Porcupine draws one: a row per process, a bar per op from
  invocation to completion, the op that cannot be linearized in red, the end of the
  longest linearizable prefix in green, the other concurrent ops in grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.history import FAIL, INFO, OK
from harness.report_history import CAP, OUTCOMES, Band, Timeline, bin_value

WIDTH, HEIGHT = 900, 200
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 30, 28
LEGEND = 16
"""Height of a legend row under a chart's axis."""
MAX_BARS = 120
"""Time slices drawn at most."""
COLOURS = {OK: "#3a9d5d", FAIL: "#e0a030", INFO: "#d9534f"}
BLAMED, PREFIX, CONCURRENT = "#d9534f", "#3a9d5d", "#9a9a9a"
"""Colours of the counterexample's ops."""
QUANTILES = ((0.5, "median", "#1f6e3d"), (0.99, "p99", "#5cb37e"), (1.0, "max", "#9ccfae"))
"""Latency lines drawn for ok ops: quantile, name, colour."""


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    title: str = ""


@dataclass
class Dot:
    x: float
    y: float
    fill: str
    title: str = ""


@dataclass
class Polyline:
    points: list[tuple[float, float]]
    stroke: str
    title: str = ""


@dataclass
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"
    fill: str = "#222"


@dataclass
class Chart:
    """One SVG picture: shapes, axis ticks and labels, and a caption."""

    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    polylines: list[Polyline] = field(default_factory=list)
    lines: list[tuple[float, float, float, float]] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    caption: str = ""
    bottom: int = BOTTOM
    """Room under the plot: the axis labels, and a legend if there is one."""


@dataclass
class Slices:
    """The timeline's buckets regrouped into at most MAX_BARS slices for drawing."""

    width: float  # seconds
    counts: dict[str, list[int]]
    hist: dict[str, list[list[int]]]
    top: dict[str, list[int]]

    @property
    def n(self) -> int:
        return len(self.counts[OK])

    @property
    def span(self) -> float:
        return self.n * self.width


def slices(tl: Timeline, duration: float) -> Slices:
    used = min(CAP, int(duration * 1e9) // tl.width + 1)
    k = math.ceil(used / MAX_BARS)
    counts, hist, top = tl.grouped([range(i, min(i + k, used)) for i in range(0, used, k)])
    return Slices(k * tl.width / 1e9, counts, hist, top)


def _x_axis(chart: Chart, t0: float, t1: float, unit: str = "s") -> None:
    plot_w = chart.width - LEFT - RIGHT
    base = chart.height - chart.bottom
    chart.lines.append((LEFT, base, chart.width - RIGHT, base))
    for t in _ticks(t0, t1):
        x = LEFT + (t - t0) / (t1 - t0) * plot_w
        chart.lines.append((x, base, x, base + 4))
        chart.texts.append(Text(x, base + 16, f"{t:g} {unit}"))


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round values between lo and hi."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 9) for i in range(int((hi - first) / step) + 1)]


def _draw_bands(chart: Chart, bands: list[Band], t1: float) -> None:
    """Shaded intervals, each labelled where the label has room (two rows of labels;
    every band keeps its description as a tooltip)."""
    plot_w, plot_h = chart.width - LEFT - RIGHT, chart.height - TOP - chart.bottom
    free = [0.0, 0.0]  # where each row of labels has room again
    for b in bands:
        x0 = LEFT + min(b.start, t1) / t1 * plot_w
        x1 = LEFT + min(b.end, t1) / t1 * plot_w
        detail = f" ({b.detail})" if b.detail else ""
        chart.rects.append(Rect(x0, TOP, max(x1 - x0, 1.5), plot_h, "#8888cc33",
                                f"{b.label}: {b.start:.2f} s to {b.end:.2f} s{detail}"))
        row = 0 if x0 >= free[0] else 1 if x0 >= free[1] else None
        if row is not None and x0 + 6 * len(b.label) <= chart.width:
            chart.texts.append(Text(x0 + 2, TOP - 4 - 11 * row, b.label, "start"))
            free[row] = x0 + 6 * len(b.label) + 10


def throughput_chart(s: Slices, bands: list[Band]) -> Chart:
    """Completions per time slice, stacked by outcome."""
    chart = Chart(WIDTH, HEIGHT)
    t1 = max(s.span, 1e-9)
    peak = max((sum(s.counts[o][i] for o in OUTCOMES) for i in range(s.n)), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    _draw_bands(chart, bands, t1)
    bar_w = plot_w / s.n
    for i in range(s.n):
        y = float(HEIGHT - BOTTOM)
        for kind in OUTCOMES:
            n = s.counts[kind][i]
            if n:
                h = n / peak * plot_h
                y -= h
                chart.rects.append(Rect(LEFT + i * bar_w, y, max(bar_w - 1, 0.5), h,
                                        COLOURS[kind], f"{n} {kind} in {i * s.width:.2f}–"
                                        f"{(i + 1) * s.width:.2f} s"))
    _x_axis(chart, 0, t1)
    chart.texts.append(Text(LEFT - 6, TOP + 4, f"{peak / s.width:,.0f}/s", "end"))
    chart.texts.append(Text(LEFT - 6, HEIGHT - BOTTOM, "0", "end"))
    chart.caption = (f"completed operations per {_ms(s.width * 1000)} slice (peak "
                     f"{peak:,}), by outcome: green ok, orange fail, red info; shaded: "
                     f"faults")
    return chart


def _quantile(hist: list[int], q: float) -> float | None:
    """The latency (ns) at quantile ``q`` of a histogram, or None if it is empty."""
    total = sum(hist)
    if not total:
        return None
    rank, seen = q * total, 0
    for b, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return bin_value(b)
    return None


def latency_chart(s: Slices, bands: list[Band]) -> Chart:
    """Per time slice, quantiles of ok latencies and the median of fail and info ones,
    at the time the ops were invoked, on a log scale; a legend under the axis."""
    chart = Chart(WIDTH, HEIGHT + LEGEND, bottom=BOTTOM + LEGEND)
    t1 = max(s.span, 1e-9)
    _draw_bands(chart, bands, t1)
    _x_axis(chart, 0, t1)
    series: list[tuple[str, str, list[float | None]]] = []
    for q, name, colour in QUANTILES:
        if q == 1:  # the longest is known exactly
            values = [float(s.top[OK][i]) if sum(s.hist[OK][i]) else None
                      for i in range(s.n)]
        else:
            values = [_quantile(s.hist[OK][i], q) for i in range(s.n)]
        series.append((name, colour, values))
    marks = {kind: [_quantile(s.hist[kind][i], 0.5) for i in range(s.n)]
             for kind in (FAIL, INFO)}
    every = [v for _, _, vs in series for v in vs if v] + [
        v for vs in marks.values() for v in vs if v]
    if not every:
        chart.caption = "no completed operations with times"
        return chart
    lo = math.floor(math.log10(min(every) / 1e6))
    hi = max(math.ceil(math.log10(max(every) / 1e6)), lo + 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (i + 0.5) / s.n * plot_w

    def y(ns: float) -> float:
        return HEIGHT - BOTTOM - (math.log10(ns / 1e6) - lo) / (hi - lo) * plot_h

    for name, colour, values in reversed(series):  # the median on top
        run: list[tuple[float, float]] = []
        for i, v in enumerate(values + [None]):
            if v:
                run.append((x(i), y(v)))
            elif run:
                chart.polylines.append(Polyline(run, colour, f"{name} latency of ok ops"))
                run = []
    for kind, values in marks.items():
        for i, v in enumerate(values):
            if v:
                n = sum(s.hist[kind][i])
                chart.dots.append(Dot(x(i), y(v), COLOURS[kind],
                                      f"{n:,} {kind} in {i * s.width:.2f}–"
                                      f"{(i + 1) * s.width:.2f} s, median {_ms(v / 1e6)}"))
    for e in range(lo, hi + 1):
        ye = HEIGHT - BOTTOM - (e - lo) / (hi - lo) * plot_h
        chart.lines.append((LEFT - 4, ye, LEFT, ye))
        chart.texts.append(Text(LEFT - 6, ye + 4, _ms(10.0 ** e), "end"))
    legend_x = float(LEFT)
    for label, colour in [(n, c) for _, n, c in QUANTILES] + [
            ("fail", COLOURS[FAIL]), ("info", COLOURS[INFO])]:
        chart.texts.append(Text(legend_x, chart.height - 3, f"■ {label}", "start", colour))
        legend_x += 7 * len(label) + 26
    chart.caption = (f"latency by time of invocation, per {_ms(s.width * 1000)} slice, log "
                     "scale: "
                     "median, 99th percentile and longest of ok ops (lines), median of "
                     "failed (orange) and indeterminate (red) ops (dots); quantiles are "
                     "read from a histogram with five bins per decade")
    return chart


def _ms(v: float) -> str:
    return f"{v / 1000:g} s" if v >= 1000 else f"{v:g} ms"


def counterexample_chart(views: list[tuple[dict[str, Any], str]], hidden: int = 0
                         ) -> Chart | None:
    """Porcupine's picture of a counterexample, from views with their colours (already
    cut to a window); None when the history had no times."""
    timed = [vc for vc in views if vc[0]["start"] is not None]
    if len(timed) < len(views) or not timed:
        return None
    t0 = min(v["start"] for v, _ in timed)
    t1 = max(max(v["end"] or v["start"] for v, _ in timed), t0 + 1e-6)
    blamed = next((v for v, c in views if c == BLAMED), None)
    if blamed is not None:  # ops invoked long before (never completed) are cut at the left
        span = (blamed["end"] or t1) - blamed["start"]
        t0 = max(t0, blamed["start"] - max(20 * span, 1e-3))
    t1 += (t1 - t0) * 0.08  # room for ops that never completed
    first: dict[str, float] = {}
    for v, _ in sorted(timed, key=lambda vc: vc[0]["start"]):
        first.setdefault(v["process"], v["start"])
    rows = {p: r for r, p in enumerate(first)}
    row_h = 26
    chart = Chart(WIDTH, TOP + BOTTOM + row_h * len(rows))
    plot_w = WIDTH - LEFT - RIGHT
    for p, r in rows.items():
        chart.texts.append(Text(LEFT - 6, TOP + r * row_h + 17, f"process {p}", "end"))
    for v, colour in sorted(timed, key=lambda vc: vc[0]["start"]):
        r = rows[v["process"]]
        x0 = LEFT + (max(v["start"], t0) - t0) / (t1 - t0) * plot_w
        end = v["end"] if v["end"] is not None else t1
        x1 = LEFT + (end - t0) / (t1 - t0) * plot_w
        label = f"{v['f']} {v['value']}".strip()
        times = f"{v['start']:.6f} s – " + (f"{v['end']:.6f} s" if v["end"] is not None
                                             else "never completed")
        chart.rects.append(Rect(x0, TOP + r * row_h + 3, max(x1 - x0, 2), row_h - 6,
                                colour, f"process {v['process']} {label} ({v['type']}), "
                                f"{times}"))
        cut = "◂ " if v["start"] < t0 else ""
        chart.texts.append(Text(x0 + 3, TOP + r * row_h + 17, cut + label[:40], "start"))
    _x_axis(chart, t0, t1)
    chart.caption = ("red: the operation that cannot be linearized; green: the end of the "
                     "longest linearizable prefix; grey: other concurrent operations; a bar "
                     "spans invocation to completion (to the edge if it never completed; "
                     "◂ marks one invoked earlier than the picture begins)"
                     + (f"; {hidden:,} further operations are in the table only, or in "
                        "results.json" if hidden else ""))
    return chart
