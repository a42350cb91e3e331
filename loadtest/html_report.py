"""The HTML report: one self-contained page, charts drawn as inline SVG in Python.

No scripts, fonts, stylesheets or images from anywhere: the file is attached to CI runs and
opened offline. Everything that came from a scenario or a server (titles, node names, error
codes) is escaped. `render_html` is a pure function of the data that goes into summary.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 32, 12, 36
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
Point = tuple[float, float]

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 28px; } h3 { font-size: 14px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.pass { color: #17803d; font-weight: bold; } .fail { color: #c01c28; font-weight: bold; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; } figcaption { font-weight: bold; margin-bottom: 4px; }
svg text { font: 11px sans-serif; fill: #444; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return _e(value)


def nice_step(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above `value` (readable tick spacing)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def _label(value: float) -> str:
    return f"{round(value, 6):g}" if abs(value) < 1e5 else f"{value:.3g}"


def line_chart(series: Sequence[tuple[str, Sequence[Point | None]]], *, x_range: Point,
               x_ticks: Sequence[tuple[float, str]], y_label: str, x_label: str) -> str:
    """An SVG line chart; a None point breaks the line (a second without samples)."""
    x0, x1 = x_range
    x_span = (x1 - x0) or 1.0
    y_top = max((p[1] for _, points in series for p in points if p), default=0.0)
    y_step = nice_step(y_top / 4)
    y_ticks = max(1, math.ceil(y_top / y_step - 1e-9))
    y_max = y_step * y_ticks
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / x_span * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y / y_max) * plot_h

    out = [f'<svg width="{WIDTH}" height="{HEIGHT + 18 * ((len(series) + 3) // 4)}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT + 18 * ((len(series) + 3) // 4)}" role="img">',
           f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" '
           f'stroke="#bbb"/>']
    for i in range(y_ticks + 1):
        y = y_step * i
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
                   f'stroke="#eee"/><text x="{LEFT - 4}" y="{sy(y) + 4:.1f}" '
                   f'text-anchor="end">{_e(_label(y))}</text>')
    for x, text in x_ticks:
        out.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{TOP + plot_h}" '
                   f'y2="{TOP + plot_h + 4}" stroke="#888"/><text x="{sx(x):.1f}" '
                   f'y="{TOP + plot_h + 16}" text-anchor="middle">{_e(text)}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 2}" text-anchor="middle">'
               f'{_e(x_label)}</text>')
    out.append(f'<text x="12" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 12 {TOP + plot_h / 2:.0f})">{_e(y_label)}</text>')
    for index, (name, points) in enumerate(series):
        color = COLORS[index % len(COLORS)]
        for segment in _segments(points):
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in segment)
            if len(segment) == 1:
                x, y = segment[0]
                out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{color}"/>')
            else:
                out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" '
                           f'stroke-width="1.5"/>')
        lx, ly = LEFT + (index % 4) * 150, HEIGHT + 12 + 18 * (index // 4)
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="{ly + 1}">{_e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _segments(points: Sequence[Point | None]) -> list[list[Point]]:
    segments: list[list[Point]] = [[]]
    for point in points:
        if point is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append(point)
    return [s for s in segments if s]


def _time_ticks(t: Sequence[float]) -> tuple[Point, list[tuple[float, str]]]:
    start, end = (t[0], t[-1]) if t else (0.0, 1.0)
    end = max(end, start + 1)
    step = nice_step((end - start) / 6)
    first = math.ceil(start / step) * step
    ticks = []
    value = first
    while value <= end + 1e-9:
        ticks.append((value, _label(round(value, 6))))
        value += step
    return (start, end), ticks


def _latency_over_time(data: dict[str, Any]) -> str:
    timeline = data.get("series", {})
    t: list[float] = timeline.get("t", [])
    (x_range, ticks) = _time_ticks(t)
    figures = []
    for metric, values in timeline.get("latency_ms", {}).items():
        lines = [(label, [None if y is None else (x, y) for x, y in zip(t, values[key],
                                                                       strict=False)])
                 for key, label in (("p50", "p50"), ("p99", "p99"))]
        figures.append(_figure(f"{metric}: latency over time", line_chart(
            lines, x_range=x_range, x_ticks=ticks, y_label="ms", x_label="seconds")))
    return "".join(figures) or "<p>No latency samples.</p>"


def _distribution_charts(data: dict[str, Any]) -> str:
    ticks = [(float(k), label) for k, label in
             enumerate(("0%", "90%", "99%", "99.9%", "99.99%", "99.999%"))]
    figures = []
    for metric, points in data.get("distributions", {}).items():
        line = [(-math.log10(max(1 - p / 100, 1e-5)), ms) for p, ms in points]
        figures.append(_figure(f"{metric}: percentile distribution", line_chart(
            [(metric, line)], x_range=(0.0, 5.0), x_ticks=ticks, y_label="ms",
            x_label="percentile")))
    return "".join(figures)


def _throughput(data: dict[str, Any]) -> str:
    timeline = data.get("series", {})
    t: list[float] = timeline.get("t", [])
    per_s: dict[str, list[int]] = timeline.get("per_s", {})
    if not per_s or not t:
        return "<p>No counted events.</p>"
    x_range, ticks = _time_ticks(t)
    lines = [(name, [(x, float(y)) for x, y in zip(t, values, strict=False)])
             for name, values in per_s.items()]
    return _figure("throughput (events per second)", line_chart(
        lines, x_range=x_range, x_ticks=ticks, y_label="per second", x_label="seconds"))


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{_e(caption)}</figcaption>{svg}</figure>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STATS = (("count", "count"), ("min", "min"), ("mean", "mean"), ("p50", "p50"), ("p90", "p90"),
         ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))


def _latency_table(data: dict[str, Any]) -> str:
    rows = []
    for metric, stats in data.get("latency_ms", {}).items():
        rows.append([_e(metric), *(_num(stats.get(k)) for k, _ in STATS)])
        for node, node_stats in stats.get("nodes", {}).items():
            rows.append([f"&nbsp;&nbsp;@{_e(node)}", *(_num(node_stats.get(k)) for k, _ in STATS)])
    if not rows:
        return "<p>No latency samples.</p>"
    return _table(["metric (ms)", *(label for _, label in STATS)], rows)


def _counter_tables(data: dict[str, Any]) -> str:
    counters: dict[str, int] = data.get("counters", {})
    html = _table(["counter", "total"], [[_e(k), _num(v)] for k, v in counters.items()])
    by_node: dict[str, dict[str, int]] = data.get("counters_by_node", {})
    if by_node:
        nodes = sorted(by_node)
        names = sorted({name for c in by_node.values() for name in c})
        html += "<h3>per node</h3>" + _table(
            ["counter", *nodes], [[_e(name), *(_num(by_node[n].get(name, 0)) for n in nodes)]
                                  for name in names])
    gauges: dict[str, float] = data.get("gauges", {})
    if gauges:
        html += "<h3>gauges (last values)</h3>" + _table(
            ["gauge", "value"], [[_e(k), _num(v)] for k, v in gauges.items()])
    return html


def _threshold_table(data: dict[str, Any]) -> str:
    results: list[dict[str, Any]] = data.get("thresholds", [])
    if not results:
        return "<p>No thresholds.</p>"
    rows = []
    for result in results:
        verdict = '<span class="pass">PASS</span>' if result["ok"] else \
            '<span class="fail">FAIL</span>'
        actual = "no data" if result["actual"] is None else _num(float(result["actual"]))
        rows.append([verdict, _e(result["rule"]), actual])
    return _table(["", "rule", "actual"], rows)


def render_html(data: dict[str, Any]) -> str:
    """The whole page for the data of summary.json plus "distributions" (percentile points)."""
    title = str(data.get("title", "load test"))
    passed = data.get("passed", True)
    verdict = '<span class="pass">PASSED</span>' if passed else '<span class="fail">FAILED</span>'
    scenario = json.dumps(data.get("scenario", {}), indent=2, default=str, sort_keys=True)
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)} {verdict}</h1>",
        f"<p>duration {_num(float(data.get('duration_s', 0.0)))} s</p>",
        "<h2>Thresholds</h2>", _threshold_table(data),
        "<h2>Latency</h2>", _latency_table(data),
        "<h2>Latency over time</h2><div class=\"charts\">", _latency_over_time(data), "</div>",
        "<h2>Percentile distribution</h2><div class=\"charts\">", _distribution_charts(data),
        "</div>",
        "<h2>Throughput</h2><div class=\"charts\">", _throughput(data), "</div>",
        "<h2>Counters</h2>", _counter_tables(data),
        "<h2>Scenario</h2>", f"<pre>{_e(scenario)}</pre>",
        "</body></html>\n",
    ])
