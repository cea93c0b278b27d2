"""The report's pictures, as plain geometry: rectangles, points, lines and labels.

Python decides where everything goes; the template (``templates/report.html.j2``) only
draws it as inline SVG. So the report is one self-contained file with no scripts and no
fonts or libraries fetched from anywhere, and the geometry can be tested as data.

Three pictures:

* operations over time: completions per time slice, stacked by ok / fail / info, under
  bands that show when each fault was active;
* latency: every op's latency (log scale) at its invocation time, coloured by outcome,
  under the same bands;
* a counterexample, drawn as Porcupine draws one: a row per process, a bar per op from
  invocation to completion, the op that cannot be linearized in red, the longest
  linearizable prefix in green, the other concurrent ops in grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.history import FAIL, INFO, INVOKE, NEMESIS, OK, Op, Pair

WIDTH, HEIGHT = 900, 200
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 30, 28
MAX_POINTS = 4000
"""Latency points drawn at most; above that an even sample, and the chart says so."""
HEALS = {"stop-partition": "start-partition", "start": "kill", "resume": "pause",
         "stop-loss": "start-loss", "stop-latency": "start-latency"}
"""Nemesis op -> the op whose fault it ends."""
COLOURS = {OK: "#3a9d5d", FAIL: "#e0a030", INFO: "#d9534f"}


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    title: str = ""


@dataclass
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass
class Chart:
    """One SVG picture: shapes, axis ticks and labels, and a caption."""

    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    points: list[tuple[float, float, str]] = field(default_factory=list)
    lines: list[tuple[float, float, float, float]] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    caption: str = ""


@dataclass
class Band:
    """An interval in which a fault was active, in seconds since the run started."""

    start: float
    end: float
    label: str
    detail: str = ""


def fault_bands(history: list[Op], end: float) -> list[Band]:
    """When each fault was active: from its invocation to the invocation of the op that
    healed it (a fault never healed lasts to ``end``). What the fault did (which nodes,
    which grudge) is in its completion."""
    invoked: dict[str, float] = {}
    open_faults: dict[str, list[Band]] = {}
    bands: list[Band] = []
    for op in history:
        if op.process != NEMESIS:
            continue
        t = op.time / 1e9
        started = HEALS.get(op.f)
        if op.type == INVOKE:
            if started is None:
                invoked[op.f] = t
            else:
                for band in open_faults.pop(started, []):
                    band.end = t
                    bands.append(band)
        elif started is None and op.f in invoked:
            label, detail = _fault_label(op)
            open_faults.setdefault(op.f, []).append(Band(invoked.pop(op.f), end, label,
                                                         detail))
    for opened in open_faults.values():
        bands += opened
    return sorted(bands, key=lambda b: b.start)


def _fault_label(completion: Op) -> tuple[str, str]:
    """A short label and a longer description of a fault from its completion."""
    name, v = completion.f.removeprefix("start-"), completion.value
    if isinstance(v, list) and v:
        return f"{name} {', '.join(map(str, v))}", ""
    if isinstance(v, dict) and v:
        return name, "; ".join(f"{k} drops {', '.join(map(str, d))}" if isinstance(d, list)
                               else f"{k}: {d}" for k, d in v.items())
    return name, "" if v is None else str(v)


def _x_axis(chart: Chart, t0: float, t1: float, unit: str = "s") -> None:
    plot_w = chart.width - LEFT - RIGHT
    base = chart.height - BOTTOM
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
    plot_w, plot_h = chart.width - LEFT - RIGHT, chart.height - TOP - BOTTOM
    for i, b in enumerate(bands):
        x0 = LEFT + b.start / t1 * plot_w
        x1 = LEFT + min(b.end, t1) / t1 * plot_w
        detail = f" ({b.detail})" if b.detail else ""
        chart.rects.append(Rect(x0, TOP, max(x1 - x0, 1.5), plot_h, "#8888cc33",
                                f"{b.label}: {b.start:.2f} s to {b.end:.2f} s{detail}"))
        chart.texts.append(Text(x0 + 2, TOP - 4 - 11 * (i % 2), b.label, "start"))


def throughput_chart(history: list[Op], bands: list[Band], duration: float) -> Chart:
    """Completions per time slice, stacked by type."""
    chart = Chart(WIDTH, HEIGHT)
    t1 = max(duration, 1e-9)
    slices = max(10, min(120, int(t1 * 4)))
    width = t1 / slices
    counts = [{OK: 0, FAIL: 0, INFO: 0} for _ in range(slices)]
    for op in history:
        if op.process != NEMESIS and op.type in counts[0]:
            counts[min(int(op.time / 1e9 / width), slices - 1)][op.type] += 1
    peak = max((sum(c.values()) for c in counts), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    _draw_bands(chart, bands, t1)
    bar_w = plot_w / slices
    for i, c in enumerate(counts):
        y = HEIGHT - BOTTOM
        for kind in (OK, FAIL, INFO):
            h = c[kind] / peak * plot_h
            if h > 0:
                y -= h
                chart.rects.append(Rect(LEFT + i * bar_w, y, max(bar_w - 1, 0.5), h,
                                        COLOURS[kind], f"{c[kind]} {kind} in "
                                        f"{i * width:.2f}–{(i + 1) * width:.2f} s"))
    _x_axis(chart, 0, t1)
    chart.texts.append(Text(LEFT - 6, TOP + 4, f"{peak / width:,.0f}/s", "end"))
    chart.texts.append(Text(LEFT - 6, HEIGHT - BOTTOM, "0", "end"))
    chart.caption = (f"completed operations per {width:.2g} s slice (peak "
                     f"{peak:,}), by outcome; shaded: faults")
    return chart


def latency_chart(pairs: list[Pair], bands: list[Band], duration: float) -> Chart:
    """Latency of every completed op (log scale) at the time it was invoked."""
    chart = Chart(WIDTH, HEIGHT)
    done = [(p.invoke.time / 1e9, max((p.completion.time - p.invoke.time) / 1e6, 0.01),
             p.completion.type) for p in pairs if p.completion is not None]
    t1 = max(duration, 1e-9)
    _draw_bands(chart, bands, t1)
    _x_axis(chart, 0, t1)
    if not done:
        chart.caption = "no completed operations"
        return chart
    lo, hi = math.log10(min(d[1] for d in done)), math.log10(max(d[1] for d in done))
    lo, hi = math.floor(lo), max(math.ceil(hi), math.floor(lo) + 1)
    stride = max(1, math.ceil(len(done) / MAX_POINTS))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    for t, ms, kind in done[::stride]:
        y = HEIGHT - BOTTOM - (math.log10(ms) - lo) / (hi - lo) * plot_h
        chart.points.append((LEFT + t / t1 * plot_w, y, COLOURS[kind]))
    for e in range(lo, hi + 1):
        y = HEIGHT - BOTTOM - (e - lo) / (hi - lo) * plot_h
        chart.lines.append((LEFT - 4, y, LEFT, y))
        chart.texts.append(Text(LEFT - 6, y + 4, _ms(10.0 ** e), "end"))
    shown = len(done[::stride])
    chart.caption = ("latency of each operation at its invocation, log scale; green ok, "
                     "orange fail, red info" + (f" (every {stride}th of {len(done):,})"
                                                if stride > 1 else f" ({shown:,})"))
    return chart


def _ms(v: float) -> str:
    return f"{v / 1000:g} s" if v >= 1000 else f"{v:g} ms"


def counterexample_chart(cx: dict[str, Any], max_prefix: int = 10) -> Chart | None:
    """Porcupine's picture of a counterexample; None when the history had no times."""
    op = cx["op"]
    shown: dict[int, tuple[dict[str, Any], str]] = {}
    for v in cx.get("prefix", [])[-max_prefix:]:
        shown[v["index"]] = (v, "#3a9d5d")
    for v in cx.get("concurrent", []):
        shown.setdefault(v["index"], (v, "#9a9a9a"))
    shown[op["index"]] = (op, "#d9534f")
    views = [v for v in shown.values() if v[0].get("start") is not None]
    if len(views) < len(shown) or not views:
        return None
    t0 = min(v["start"] for v, _ in views)
    t1 = max(max(v["end"] or v["start"] for v, _ in views), t0 + 1e-6)
    t1 += (t1 - t0) * 0.08  # room for ops that never completed
    processes = sorted({str(v["process"]) for v, _ in views},
                       key=lambda p: min(v["start"] for v, _ in views
                                         if str(v["process"]) == p))
    row_h = 26
    chart = Chart(WIDTH, TOP + BOTTOM + row_h * len(processes))
    plot_w = WIDTH - LEFT - RIGHT
    for r, p in enumerate(processes):
        chart.texts.append(Text(LEFT - 6, TOP + r * row_h + 17, f"process {p}", "end"))
    for v, colour in sorted(views, key=lambda vc: vc[0]["start"]):
        r = processes.index(str(v["process"]))
        x0 = LEFT + (v["start"] - t0) / (t1 - t0) * plot_w
        end = v["end"] if v["end"] is not None else t1
        x1 = LEFT + (end - t0) / (t1 - t0) * plot_w
        label = f"{v['f']} {_value(v['value'])}".strip()
        times = f"{v['start']:.6f} s – " + (f"{v['end']:.6f} s" if v["end"] is not None
                                             else "never completed")
        chart.rects.append(Rect(x0, TOP + r * row_h + 3, max(x1 - x0, 2), row_h - 6,
                                colour, f"process {v['process']} {label} ({v['type']}), "
                                f"{times}"))
        chart.texts.append(Text(x0 + 3, TOP + r * row_h + 17, label, "start"))
    _x_axis(chart, t0, t1)
    chart.caption = ("red: the operation that cannot be linearized; green: the end of the "
                     "longest linearizable prefix; grey: other concurrent operations; a bar "
                     "spans invocation to completion (to the edge if it never completed)")
    return chart


def _value(v: Any) -> str:
    return "" if v is None else str(v)
