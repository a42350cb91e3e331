"""Reports: the end table, the live line, summary.json, the HDR log and the HTML page."""

from __future__ import annotations

import io
import json
import random
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hdrh.log import HistogramLogReader

from loadtest.measure import Recorder, new_histogram
from loadtest.report import LiveProgress, print_summary, write_outputs
from loadtest.thresholds import ThresholdResult, evaluate, parse_threshold

NASTY = '<script>alert("x")</script>&'
START = 1_700_000_000.4


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _run(clock: FakeClock, seconds: int = 6) -> Recorder:
    """A recorder fed like a two-node chat run: deliveries, acks, counters, an error code."""
    recorder = Recorder(clock=clock)
    rng = random.Random(11)
    for _ in range(seconds * 200):
        clock.now += 0.005
        node = rng.choice(("node-a", NASTY))
        recorder.count("sent", node=node)
        recorder.latency("delivery", rng.expovariate(1 / 0.02), node)
        recorder.count("delivered", node=node)
        recorder.latency("ack", rng.expovariate(1 / 0.004), node)
    recorder.count("errors.rate_limited", 2)
    recorder.latency("connect", 0.003)
    recorder.gauge("open_sockets", 40)
    recorder.finish()
    return recorder


def _results(recorder: Recorder) -> list[ThresholdResult]:
    rules = ["p99(delivery) < 10s", "lost == 0", "p99(typing) < 1s", "rate(errors) < 0.5"]
    return evaluate([parse_threshold(r) for r in rules], recorder.summary())


class StrictParser(HTMLParser):
    """Checks nesting and records every tag and attribute the page uses."""

    VOID = {"meta", "rect", "line", "circle", "polyline", "br", "img", "link", "input", "path"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.style = ""
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(k, v or "") for k, v in attrs]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(k, v or "") for k, v in attrs]

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "style":
            self.style += data
        self.text.append(data)


def test_write_outputs_writes_three_self_contained_files(tmp_path: Path) -> None:
    recorder = _run(FakeClock())
    results = _results(recorder)
    scenario = {"name": NASTY, "targets": [{"ws": "ws://127.0.0.1:1/v1/ws",
                                            "http": "http://127.0.0.1:2"}]}
    paths = write_outputs(recorder, results, tmp_path / "out", title=f"smoke {NASTY}",
                          scenario=scenario)
    assert set(paths) == {"json", "hlog", "html"}
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in paths.values())

    page = paths["html"].read_text(encoding="utf-8")
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert parser.tags.count("svg") >= 5   # 3 over time (delivery, ack, connect), 3 dist., 1 tput
    assert "polyline" in parser.tags
    assert not {"script", "link", "img", "iframe", "object"} & set(parser.tags)
    for name, value in parser.attributes:
        assert "http://" not in value and "https://" not in value, (name, value)
        assert not name.startswith("on"), name
    assert "url(" not in parser.style and "@import" not in parser.style
    assert "<script>alert" not in page
    text = "".join(parser.text)
    assert f"smoke {NASTY}" in text              # shown, but escaped
    assert "@" + NASTY in text                   # the node row
    assert "FAIL" in text and "PASS" in text and "p99(typing) &lt; 1s" in page

    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert {"title", "scenario", "thresholds", "passed", "started_at", "duration_s",
            "latency_ms", "counters", "counters_by_node", "gauges", "series"} <= set(data)
    assert data["scenario"] == scenario
    assert data["passed"] is False
    assert [t["rule"] for t in data["thresholds"]] == [r.threshold.text for r in results]
    assert [t["ok"] for t in data["thresholds"]] == [True, True, False, True]
    assert data["latency_ms"]["delivery"]["count"] == 1200
    assert set(data["latency_ms"]["delivery"]["nodes"]) == {"node-a", NASTY}
    assert sum(data["series"]["latency_ms"]["delivery"]["count"]) == 1200
    assert sum(data["series"]["per_s"]["sent"]) == 1200
    assert len(data["series"]["t"]) == len(data["series"]["per_s"]["sent"])

    reader = HistogramLogReader(str(paths["hlog"]), new_histogram())
    per_tag: dict[str, int] = {}
    starts = []
    while (histogram := reader.get_next_interval_histogram()) is not None:
        per_tag[histogram.get_tag()] = per_tag.get(histogram.get_tag(), 0) + \
            histogram.get_total_count()
        starts.append(histogram.get_start_time_stamp() / 1000)
    reader.close()
    assert per_tag == {"delivery": 1200, "ack": 1200, "connect": 1}
    assert min(starts) == int(START)
    assert starts == sorted(starts)
    assert len(set(starts)) == len(recorder.interval_seconds())


def test_empty_run_still_writes_a_report(tmp_path: Path) -> None:
    recorder = Recorder(clock=FakeClock())
    results = evaluate([parse_threshold("p99(delivery) < 1s")], recorder.summary())
    paths = write_outputs(recorder, results, tmp_path, title="empty", scenario={})
    page = paths["html"].read_text(encoding="utf-8")
    assert "No latency samples." in page
    parser = StrictParser()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["passed"] is False


def test_print_summary_lists_metrics_nodes_counters_and_thresholds() -> None:
    recorder = _run(FakeClock())
    summary = recorder.summary()
    out = io.StringIO()
    print_summary(summary, _results(recorder), out)
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if line.startswith("latency (ms)"))
    assert header.split()[2:] == ["count", "p50", "p90", "p99", "p99.9", "max"]
    delivery = next(line for line in lines if line.startswith("delivery "))
    stats = summary["latency_ms"]["delivery"]
    assert delivery.split()[1] == "1200"
    assert delivery.split()[4] == f"{stats['p99']:.2f}"
    assert any(line.startswith("delivery @node-a ") for line in lines)
    assert any(line.startswith("ack @" + NASTY) for line in lines)
    assert any(line.split() == ["errors.rate_limited", "2"] for line in lines)
    assert any(line.split()[:1] == ["sent"] and len(line.split()) == 3 for line in lines)
    assert "  PASS  p99(delivery) < 10s  (actual " in out.getvalue()
    assert "  FAIL  p99(typing) < 1s  (actual no data)" in out.getvalue()
    # columns line up: every row of the latency table is as wide as its header
    start = lines.index(header)
    table = lines[start:lines.index("", start)]
    assert len(table) == 1 + 3 + 2 * 2   # header, 3 metrics, 2 metrics on 2 nodes
    assert len({len(line) for line in table}) == 1


def test_print_summary_single_node_has_no_node_block() -> None:
    recorder = Recorder(clock=FakeClock())
    recorder.latency("delivery", 0.01, "only")
    out = io.StringIO()
    print_summary(recorder.summary(), [], out)
    assert "@only" not in out.getvalue()
    assert "thresholds" not in out.getvalue()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [False, True])
def test_live_progress_prints_one_line_per_interval(tty: bool) -> None:
    clock = FakeClock(START)
    recorder = Recorder(clock=clock)
    out: io.StringIO = Tty() if tty else io.StringIO()
    progress = LiveProgress(out, interval_s=1.0, clock=clock)
    for step in range(3):
        for i in range(500):
            clock.now = START + step + i * 0.001
            recorder.count("sent")
            recorder.count("delivered")
            recorder.latency("delivery", 0.002 * (step + 1))   # exact in HDR buckets
        recorder.gauge("open_sockets", 8)
        clock.now = START + step + 0.95
        progress.update(recorder, phase="steady", users=4)
        clock.now += 0.5
        progress.update(recorder, phase="steady", users=4)   # too soon: no new line
    recorder.count("lost", 2)
    recorder.count("errors.forbidden")
    clock.now = START + 4.0
    progress.update(recorder, phase="ramp down", users=2)
    progress.close()
    text = out.getvalue()
    lines = text.replace("\r", "\n").strip("\n").split("\n")
    assert len(lines) == 4
    if tty:
        assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    else:
        assert "\r" not in text and text.count("\n") == 4
    first, second, _, last = (line.strip() for line in lines)
    assert "steady" in first and "users 4" in first and "sockets 8" in first
    assert "delivery p50 2.00ms p99 2.00ms" in first
    assert "sent/s 500" in second and "delivered/s 500" in second
    assert "delivery p50 4.00ms p99 4.00ms" in second     # the last complete second
    assert "lost 2" in last and "errors 1" in last and "ramp down" in last
    idle = LiveProgress(io.StringIO(), clock=clock).line(Recorder(clock=clock), clock.now)
    assert "delivery p50 - p99 -" in idle and "sent/s 0" in idle
