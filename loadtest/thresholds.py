"""Pass/fail rules of a load run (they set the CLI's exit code for CI).

Three forms, one rule per string:

    <stat>(<metric>[@<node>]) <op> <number><unit>   p99(delivery) < 200ms, max(ack@node-a) <= 1s
    <counter>[@<node>] <op> <number>                 lost == 0, reordered <= 5
    rate(<counter>[@<node>]) <op> <number>           rate(errors) < 0.01

stat: p50 p90 p95 p99 p999 min mean max; metric: one of `measure.LATENCIES`; unit: us, ms, s;
op: < <= > >= == !=. Counters are the engine's counter names; `errors` is the sum of every
`errors.<code>` counter. A rate divides a counter by its denominator (RATE_DENOMINATORS:
connect_failures by connection attempts, http_errors and http_refused by http_requests (a
refusal is an answer the step expects, like `quota_exceeded`: not an error), everything else by
`sent`); a rate with a zero denominator has no value.

A rule without a value fails: a latency metric with no samples, a node that took no part, a
rate over nothing. A run that measured nothing must not pass CI.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.measure import LATENCIES

STATS = ("p50", "p90", "p95", "p99", "p999", "min", "mean", "max")
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
COUNTERS = ("sent", "acked", "delivered", "lost", "duplicated", "reordered", "dropped_sends",
            "connects", "connect_failures", "reconnects", "disconnects", "http_requests",
            "http_errors", "http_refused", "expect_timeouts", "chaos_drops", "errors")
# counter -> the counters whose sum is its denominator in rate(counter); default ("sent",)
RATE_DENOMINATORS: dict[str, tuple[str, ...]] = {
    "connect_failures": ("connects", "connect_failures"),
    "http_errors": ("http_requests",),
    "http_refused": ("http_requests",),
}

_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
_NODE = r"(?:@(?P<node>[^\s()<>=!]+))?"
_OP = r"(?P<op><=|>=|==|!=|<|>)"
_NUMBER = r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_LATENCY = re.compile(rf"^(?P<stat>{_NAME})\((?P<metric>{_NAME}){_NODE}\)\s*{_OP}\s*{_NUMBER}"
                      r"\s*(?P<unit>[A-Za-zµ]*)$")
_COUNTER = re.compile(rf"^(?P<counter>{_NAME}){_NODE}\s*{_OP}\s*{_NUMBER}$")
_LOOSE = re.compile(rf"^(?P<left>.+?)\s*{_OP}\s*(?P<right>.*)$")


@dataclass(frozen=True)
class Threshold:
    """One parsed rule. `name` is its left-hand side ("p99(delivery)"), `text` the original."""

    name: str
    text: str
    kind: str                  # "latency" | "counter" | "rate"
    subject: str               # latency metric or counter name
    op: str
    limit: float               # latencies in milliseconds
    stat: str | None = None
    node: str | None = None

    def check(self, actual: float) -> bool:
        return OPERATORS[self.op](actual, self.limit)


@dataclass(frozen=True)
class ThresholdResult:
    threshold: Threshold
    actual: float | None       # ms for latencies; None when there was nothing to measure
    ok: bool


def _known_counter(name: str) -> bool:
    return name in COUNTERS or (name.startswith("errors.") and len(name) > len("errors."))


def _check_counter(counter: str, text: str) -> None:
    if not _known_counter(counter):
        raise ValueError(f"unknown counter {counter!r} in {text!r}; known: "
                         f"{', '.join(COUNTERS)}, errors.<code>")


def parse_threshold(text: str) -> Threshold:
    """Parse one rule; ValueError says which part of which rule is wrong and what would fit."""
    if not isinstance(text, str):
        raise ValueError(f"threshold must be a string like 'p99(delivery) < 200ms', "
                         f"not {type(text).__name__}")
    rule = text.strip()
    loose = _LOOSE.match(rule)
    if loose is None:
        raise ValueError(f"no comparison in {text!r}; use one of {' '.join(OPERATORS)}, "
                         f"e.g. 'p99(delivery) < 200ms' or 'lost == 0'")
    left = loose["left"]
    if left.startswith("rate(") and left.endswith(")"):
        return _parse_rate(text, rule)
    if "(" in left:
        return _parse_latency(text, rule)
    return _parse_counter(text, rule)


def _parse_latency(text: str, rule: str) -> Threshold:
    match = _LATENCY.match(rule)
    if match is None:
        raise ValueError(f"cannot read {text!r}; expected '<stat>(<metric>[@node]) <op> "
                         f"<number><unit>', e.g. 'p99(delivery) < 200ms'")
    stat, metric, unit = match["stat"], match["metric"], match["unit"]
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r} in {text!r}; known: {', '.join(STATS)}")
    if metric not in LATENCIES:
        raise ValueError(f"unknown metric {metric!r} in {text!r}; known: {', '.join(LATENCIES)}")
    if not unit:
        raise ValueError(f"missing unit in {text!r}; write the limit as e.g. 200ms, 1.5s or "
                         f"500us")
    if unit not in UNITS_MS:
        raise ValueError(f"unknown unit {unit!r} in {text!r}; known: {', '.join(UNITS_MS)}")
    limit = _number(text, match["value"]) * UNITS_MS[unit]
    node = match["node"]
    name = f"{stat}({metric}@{node})" if node else f"{stat}({metric})"
    return Threshold(name=name, text=text, kind="latency", subject=metric, op=match["op"],
                     limit=limit, stat=stat, node=node)


def _parse_counter(text: str, rule: str) -> Threshold:
    match = _COUNTER.match(rule)
    if match is None:
        raise ValueError(f"cannot read {text!r}; expected '<counter>[@node] <op> <number>' "
                         f"(e.g. 'lost == 0') or '<stat>(<metric>) <op> <number><unit>'")
    counter, node = match["counter"], match["node"]
    _check_counter(counter, text)
    name = f"{counter}@{node}" if node else counter
    return Threshold(name=name, text=text, kind="counter", subject=counter, op=match["op"],
                     limit=_number(text, match["value"]), node=node)


def _parse_rate(text: str, rule: str) -> Threshold:
    inner = re.match(rf"^rate\((?P<counter>{_NAME}){_NODE}\)\s*{_OP}\s*{_NUMBER}$", rule)
    if inner is None:
        raise ValueError(f"cannot read {text!r}; expected 'rate(<counter>[@node]) <op> "
                         f"<fraction>', e.g. 'rate(errors) < 0.01'")
    counter, node = inner["counter"], inner["node"]
    _check_counter(counter, text)
    name = f"rate({counter}@{node})" if node else f"rate({counter})"
    return Threshold(name=name, text=text, kind="rate", subject=counter, op=inner["op"],
                     limit=_number(text, inner["value"]), node=node)


def _number(text: str, raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"limit {raw!r} in {text!r} is not a finite number")
    return value


def evaluate(thresholds: Sequence[Threshold], summary: dict[str, Any]) -> list[ThresholdResult]:
    """Check each rule against `Recorder.summary()`; a rule without a value fails."""
    results = []
    for threshold in thresholds:
        actual = actual_value(threshold, summary)
        ok = actual is not None and threshold.check(actual)
        results.append(ThresholdResult(threshold=threshold, actual=actual, ok=ok))
    return results


def actual_value(threshold: Threshold, summary: dict[str, Any]) -> float | None:
    """The measured value a rule compares (ms for latencies), or None if nothing was measured."""
    if threshold.kind == "latency":
        stats = summary.get("latency_ms", {}).get(threshold.subject)
        if stats is not None and threshold.node is not None:
            stats = stats.get("nodes", {}).get(threshold.node)
        if not stats or not stats.get("count"):
            return None
        return float(stats[threshold.stat])
    counters = _counters(summary, threshold.node)
    if counters is None:
        return None
    value = float(_counter(counters, threshold.subject))
    if threshold.kind == "counter":
        return value
    denominator = sum(_counter(counters, name)
                      for name in RATE_DENOMINATORS.get(threshold.subject, ("sent",)))
    return value / denominator if denominator else None


def _counters(summary: dict[str, Any], node: str | None) -> dict[str, int] | None:
    if node is None:
        counters: dict[str, int] = summary.get("counters", {})
        return counters
    by_node: dict[str, dict[str, int]] = summary.get("counters_by_node", {})
    if node in by_node:
        return by_node[node]
    latency_nodes = {n for stats in summary.get("latency_ms", {}).values()
                     for n in stats.get("nodes", {})}
    return {} if node in latency_nodes else None


def _counter(counters: dict[str, int], name: str) -> int:
    if name == "errors":
        return sum(n for key, n in counters.items() if key.startswith("errors."))
    return int(counters.get(name, 0))
