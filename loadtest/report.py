"""What a load-tester sees: a live progress line, the end table, and the files of a run.

`write_outputs` writes three files into the run's directory:
- summary.json: `Recorder.summary()` plus title, scenario, threshold results and per-second
  series (what CI and dashboards read);
- latency.hlog: the standard HdrHistogram interval log, one histogram per metric per second,
  tagged with the metric name (HistogramLogReader, HdrHistogramVisualizer, hdr-plot read it);
- report.html: one self-contained page with inline SVG charts (see html_report).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from hdrh.log import HistogramLogWriter

from loadtest.html_report import render_html
from loadtest.measure import LATENCIES, Recorder, percentiles_us
from loadtest.thresholds import ThresholdResult

TABLE_STATS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))
# percentiles of the distribution chart: evenly spaced on log10(1 / (1 - p)), 0 .. 99.999 %
DISTRIBUTION_PERCENTILES = tuple(100.0 * (1.0 - 10 ** (-step / 10)) for step in range(51))
THROUGHPUT_COUNTERS = ("sent", "delivered", "acked", "connects", "disconnects", "http_requests")


def _errors(counters: dict[str, int]) -> int:
    return sum(n for name, n in counters.items() if name.startswith("errors."))


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 100 else f"{value:.2f}"


def _with_ms(value: float | None) -> str:
    return "-" if value is None else f"{_ms(value)}ms"


class LiveProgress:
    """One compact status line per interval; rewritten in place with \\r on a terminal."""

    def __init__(self, out: TextIO = sys.stderr, interval_s: float = 1.0, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._out = out
        self._interval_s = interval_s
        self._clock = clock
        self._tty = bool(getattr(out, "isatty", lambda: False)())
        self._last_at: float | None = None
        self._last_counters: dict[str, int] = {}
        self._width = 0

    def update(self, recorder: Recorder, *, phase: str = "", users: int = 0) -> None:
        """Print a line if `interval_s` passed since the last one; cheap to call more often."""
        now = self._clock()
        # 5 % slack: a caller on a 1-second timer must not lose every other line to jitter
        if self._last_at is not None and now - self._last_at < self._interval_s * 0.95:
            return
        line = self.line(recorder, now, phase=phase, users=users)
        if self._tty:
            padded = line.ljust(self._width)
            self._width = len(line)
            self._out.write("\r" + padded)
        else:
            self._out.write(line + "\n")
        self._out.flush()

    def line(self, recorder: Recorder, now: float, *, phase: str = "", users: int = 0) -> str:
        """The status line; rates are counter differences since the previous line."""
        counters = recorder.counters()
        elapsed = max(0.0, now - recorder.started_at)
        span = (now - self._last_at) if self._last_at is not None else elapsed
        previous = self._last_counters

        def per_s(name: str) -> float:
            return (counters.get(name, 0) - previous.get(name, 0)) / span if span > 0 else 0.0

        self._last_at, self._last_counters = now, counters
        p50, p99 = _last_interval_delivery(recorder, int(now))
        gauges = recorder.gauges()
        parts = [f"{elapsed:7.1f}s"]
        if phase:
            parts.append(phase)
        parts += [
            f"users {users}",
            f"sockets {int(gauges.get('open_sockets', 0))}",
            f"sent/s {per_s('sent'):.0f}",
            f"delivered/s {per_s('delivered'):.0f}",
            f"delivery p50 {_with_ms(p50)} p99 {_with_ms(p99)}",
            f"lost {counters.get('lost', 0)}",
            f"errors {_errors(counters)}",
        ]
        return "  ".join(parts)

    def close(self) -> None:
        """End the in-place line on a terminal so later output starts on a fresh line."""
        if self._tty and self._width:
            self._out.write("\n")
            self._out.flush()
        self._width = 0


def _last_interval_delivery(recorder: Recorder, now_second: int) -> tuple[float | None,
                                                                          float | None]:
    """p50/p99 of the newest complete second with deliveries (workers ship every second)."""
    for second in reversed(recorder.interval_seconds()):
        if second >= now_second:
            continue
        histogram = recorder.interval_histogram("delivery", second)
        if histogram is not None:
            values = percentiles_us(histogram, (50.0, 99.0))
            return values[50.0] / 1000, values[99.0] / 1000
        if now_second - second > 5:
            break
    return None, None


def print_summary(summary: dict[str, Any], results: Sequence[ThresholdResult],
                  out: TextIO = sys.stdout) -> None:
    """The end-of-run table: latencies (ms), per node when several, counters, thresholds."""
    latency: dict[str, Any] = summary.get("latency_ms", {})
    out.write(f"duration {summary.get('duration_s', 0):.1f}s\n")
    rows: list[list[str]] = []
    for metric, stats in latency.items():
        rows.append(_row(metric, stats))
    nodes = sorted({node for stats in latency.values() for node in stats.get("nodes", {})}
                   | set(summary.get("counters_by_node", {})))
    if len(nodes) > 1:
        for node in nodes:
            for metric, stats in latency.items():
                node_stats = stats.get("nodes", {}).get(node)
                if node_stats:
                    rows.append(_row(f"{metric} @{node}", node_stats))
    header = ["latency (ms)", "count", *(label for _, label in TABLE_STATS)]
    if rows:
        _table(out, header, rows)
    else:
        out.write("no latency samples\n")
    counters: dict[str, int] = summary.get("counters", {})
    if counters:
        out.write("\n")
        _table(out, ["counter", "total"], [[name, str(n)] for name, n in counters.items()])
    if len(nodes) > 1:
        by_node: dict[str, dict[str, int]] = summary.get("counters_by_node", {})
        names = sorted({name for c in by_node.values() for name in c})
        if names:
            out.write("\n")
            _table(out, ["counter", *nodes],
                   [[name, *(str(by_node.get(n, {}).get(name, 0)) for n in nodes)]
                    for name in names])
    if results:
        out.write("\nthresholds\n")
        for result in results:
            verdict = "PASS" if result.ok else "FAIL"
            out.write(f"  {verdict}  {result.threshold.text}  (actual "
                      f"{_actual(result)})\n")


def _row(label: str, stats: dict[str, Any]) -> list[str]:
    return [label, str(stats.get("count", 0)), *(_ms(stats.get(key)) for key, _ in TABLE_STATS)]


def _actual(result: ThresholdResult) -> str:
    if result.actual is None:
        return "no data"
    if result.threshold.kind == "latency":
        return f"{_ms(result.actual)} ms"
    if result.threshold.kind == "rate":
        return f"{result.actual:.4g}"
    return f"{result.actual:g}"


def _table(out: TextIO, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                          strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")


def threshold_data(results: Sequence[ThresholdResult]) -> list[dict[str, Any]]:
    return [{"rule": r.threshold.text, "name": r.threshold.name, "kind": r.threshold.kind,
             "actual": r.actual, "ok": r.ok} for r in results]


def series(recorder: Recorder) -> dict[str, Any]:
    """Per-second p50/p99/count per metric and counter rates, from the first to the last second."""
    seconds = recorder.interval_seconds()
    if not seconds:
        return {"t": [], "latency_ms": {}, "per_s": {}}
    span = list(range(seconds[0], seconds[-1] + 1))
    offset = recorder.started_at
    latency: dict[str, Any] = {}
    for metric in recorder.metrics():
        p50: list[float | None] = []
        p99: list[float | None] = []
        counts: list[int] = []
        for second in span:
            histogram = recorder.interval_histogram(metric, second)
            if histogram is None:
                p50.append(None)
                p99.append(None)
                counts.append(0)
                continue
            values = percentiles_us(histogram, (50.0, 99.0))
            p50.append(values[50.0] / 1000)
            p99.append(values[99.0] / 1000)
            counts.append(int(histogram.get_total_count()))
        latency[metric] = {"p50": p50, "p99": p99, "count": counts}
    per_s: dict[str, list[int]] = {}
    names = set(THROUGHPUT_COUNTERS) & set(recorder.counters())
    for name in (n for n in THROUGHPUT_COUNTERS if n in names):
        per_s[name] = [recorder.interval_counters(s).get(name, 0) for s in span]
    errors = [_errors(recorder.interval_counters(s)) for s in span]
    if any(errors):
        per_s["errors"] = errors
    return {"t": [round(s - offset, 3) for s in span], "latency_ms": latency, "per_s": per_s}


def distributions(recorder: Recorder) -> dict[str, list[list[float]]]:
    """Per metric: [percentile, ms] points of the whole run, 0 .. 99.999 %."""
    result: dict[str, list[list[float]]] = {}
    for metric in recorder.metrics():
        distribution = recorder.distribution(metric)
        if distribution is None:
            continue
        values = percentiles_us(distribution.histogram, DISTRIBUTION_PERCENTILES)
        result[metric] = [[p, values[p] / 1000] for p in DISTRIBUTION_PERCENTILES]
    return result


def write_hlog(recorder: Recorder, path: Path, *, title: str) -> None:
    """The HDR interval log: a histogram per metric per second, `Tag=<metric>`, values in us."""
    seconds = recorder.interval_seconds()
    base = math.floor(min([recorder.started_at, *seconds]))
    with path.open("w", encoding="utf-8") as handle:
        writer = HistogramLogWriter(handle)
        writer.output_log_format_version()
        writer.output_comment(f"[Rendezvous load test: {' '.join(title.split())}; values in us]")
        # HistogramLogWriter.output_start_time formats with a method datetime lacks; write it here
        handle.write(f"#[StartTime: {base:.3f} (seconds since epoch), "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(base))} UTC]\n")
        writer.output_base_time(base * 1000)
        writer.base_time = base * 1000
        writer.output_legend()
        for second in seconds:
            for metric in LATENCIES:
                histogram = recorder.interval_histogram(metric, second)
                if histogram is None:
                    continue
                histogram.set_start_time_stamp(second * 1000)
                histogram.set_end_time_stamp((second + 1) * 1000)
                handle.write(f"Tag={metric},")
                writer.output_interval_histogram(histogram, max_value_unit_ratio=1000.0)


def write_outputs(recorder: Recorder, results: Sequence[ThresholdResult], out_dir: Path, *,
                  title: str, scenario: dict[str, Any]) -> dict[str, Path]:
    """Write summary.json, latency.hlog and report.html into `out_dir`; return their paths.

    Blocking file I/O and histogram work: call it after the run (or from a thread).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "title": title,
        "generated_at": time.time(),
        "passed": all(r.ok for r in results),
        **recorder.summary(),
        "thresholds": threshold_data(results),
        "scenario": scenario,
        "series": series(recorder),
    }
    paths = {"json": out_dir / "summary.json", "hlog": out_dir / "latency.hlog",
             "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    write_hlog(recorder, paths["hlog"], title=title)
    html = render_html({**data, "distributions": distributions(recorder)})
    paths["html"].write_text(html, encoding="utf-8")
    return paths
