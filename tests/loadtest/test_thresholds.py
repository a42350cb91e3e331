"""Threshold grammar (every accepted form, every rejection message) and evaluation."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.thresholds import ThresholdResult, evaluate, parse_threshold

GOOD = [
    # text, name, kind, subject, stat, node, op, limit (ms for latencies)
    ("p99(delivery) < 200ms", "p99(delivery)", "latency", "delivery", "p99", None, "<", 200.0),
    ("p99(delivery@node-a) < 150ms", "p99(delivery@node-a)", "latency", "delivery", "p99",
     "node-a", "<", 150.0),
    ("p50(ack)<=1.5s", "p50(ack)", "latency", "ack", "p50", None, "<=", 1500.0),
    ("  p999(typing) < 800 us ", "p999(typing)", "latency", "typing", "p999", None, "<",
     0.8),
    ("max(reconnect_sync) >= 2e1ms", "max(reconnect_sync)", "latency", "reconnect_sync", "max",
     None, ">=", 20.0),
    ("mean(http@10.0.0.7:8080) != 0ms", "mean(http@10.0.0.7:8080)", "latency", "http", "mean",
     "10.0.0.7:8080", "!=", 0.0),
    ("min(connect) > .5ms", "min(connect)", "latency", "connect", "min", None, ">", 0.5),
    ("p95(match) < 1s", "p95(match)", "latency", "match", "p95", None, "<", 1000.0),
    ("lost == 0", "lost", "counter", "lost", None, None, "==", 0.0),
    ("duplicated == 0", "duplicated", "counter", "duplicated", None, None, "==", 0.0),
    ("reordered <= 5", "reordered", "counter", "reordered", None, None, "<=", 5.0),
    ("dropped_sends == 0", "dropped_sends", "counter", "dropped_sends", None, None, "==", 0.0),
    ("lost@node-b == 0", "lost@node-b", "counter", "lost", None, "node-b", "==", 0.0),
    ("errors.rate_limited < 3", "errors.rate_limited", "counter", "errors.rate_limited", None,
     None, "<", 3.0),
    ("rate(errors) < 0.01", "rate(errors)", "rate", "errors", None, None, "<", 0.01),
    ("rate(connect_failures@n1) <= 1e-3", "rate(connect_failures@n1)", "rate",
     "connect_failures", None, "n1", "<=", 0.001),
]


@pytest.mark.parametrize(("text", "name", "kind", "subject", "stat", "node", "op", "limit"), GOOD)
def test_parse_good(text: str, name: str, kind: str, subject: str, stat: str | None,
                    node: str | None, op: str, limit: float) -> None:
    threshold = parse_threshold(text)
    assert (threshold.name, threshold.text, threshold.kind, threshold.subject) == \
        (name, text, kind, subject)
    assert (threshold.stat, threshold.node, threshold.op) == (stat, node, op)
    assert threshold.limit == pytest.approx(limit)


BAD = [
    ("p99(delivry) < 200ms",
     "unknown metric 'delivry' in 'p99(delivry) < 200ms'; known: delivery, ack, typing, "
     "presence, match, connect, reconnect_sync, http"),
    ("p98(delivery) < 200ms", "unknown statistic 'p98' in 'p98(delivery) < 200ms'; known: p50"),
    ("p99(delivery) < 200", "missing unit in 'p99(delivery) < 200'"),
    ("p99(delivery) < 200min", "unknown unit 'min' in 'p99(delivery) < 200min'; known: us, ms"),
    ("p99(delivery) 200ms", "no comparison in 'p99(delivery) 200ms'"),
    ("p99(delivery) =< 200ms", "cannot read 'p99(delivery) =< 200ms'"),
    ("p99(delivery) < fastms", "cannot read 'p99(delivery) < fastms'"),
    ("p99 delivery < 200ms", "cannot read 'p99 delivery < 200ms'"),
    ("lots == 0", "unknown counter 'lots' in 'lots == 0'; known: sent, acked"),
    ("lost == none", "cannot read 'lost == none'"),
    ("lost == 0ms", "cannot read 'lost == 0ms'"),
    ("errors. == 0", "unknown counter 'errors.' in 'errors. == 0'"),
    ("rate(errors)", "no comparison in 'rate(errors)'"),
    ("rate(oops) < 0.1", "unknown counter 'oops' in 'rate(oops) < 0.1'"),
    ("rate(errors) < 1%", "cannot read 'rate(errors) < 1%'"),
    ("", "no comparison in ''"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_parse_bad(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_threshold(text)
    assert str(raised.value).startswith(message)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match=r"threshold must be a string.*not int"):
        parse_threshold(5)  # type: ignore[arg-type]


def _stats(count: int, p99: float) -> dict[str, Any]:
    return {"count": count, "min": 1.0, "mean": 5.0, "p50": 4.0, "p90": 8.0, "p95": 9.0,
            "p99": p99, "p999": p99 + 1, "max": p99 + 2}


SUMMARY: dict[str, Any] = {
    "started_at": 0.0, "duration_s": 10.0,
    "latency_ms": {
        "delivery": {**_stats(1000, 120.0),
                     "nodes": {"node-a": _stats(600, 90.0), "node-b": _stats(400, 180.0)}},
        "ack": {**_stats(1000, 20.0), "nodes": {}},
    },
    "counters": {"sent": 1000, "delivered": 999, "lost": 1, "reordered": 3,
                 "errors.rate_limited": 4, "errors.forbidden": 1, "connects": 90,
                 "connect_failures": 10, "http_requests": 0},
    "counters_by_node": {"node-a": {"sent": 600, "lost": 0}, "node-b": {"sent": 400, "lost": 1}},
    "gauges": {},
}

EVALUATIONS = [
    ("p99(delivery) < 200ms", 120.0, True),
    ("p99(delivery) < 100ms", 120.0, False),
    ("p99(delivery) <= 0.12s", 120.0, True),
    ("p99(delivery@node-a) < 100ms", 90.0, True),
    ("p99(delivery@node-b) < 150ms", 180.0, False),
    ("p99(delivery@node-c) < 150ms", None, False),      # a node that took no part
    ("max(ack) > 21ms", 22.0, True),
    ("p50(typing) < 1s", None, False),                  # no samples: fails
    ("lost == 0", 1.0, False),
    ("lost@node-a == 0", 0.0, True),
    ("lost@node-b <= 1", 1.0, True),
    ("lost@node-c == 0", None, False),
    ("reordered <= 5", 3.0, True),
    ("duplicated == 0", 0.0, True),                     # never counted means zero
    ("errors == 5", 5.0, True),
    ("errors.rate_limited < 4", 4.0, False),
    ("rate(errors) < 0.01", 0.005, True),
    ("rate(errors) < 0.001", 0.005, False),
    ("rate(lost@node-b) < 0.01", 0.0025, True),
    ("rate(connect_failures) <= 0.1", 0.1, True),
    ("rate(http_errors) < 0.5", None, False),           # no requests: no rate
]


@pytest.mark.parametrize(("text", "actual", "ok"), EVALUATIONS)
def test_evaluate(text: str, actual: float | None, ok: bool) -> None:
    [result] = evaluate([parse_threshold(text)], SUMMARY)
    assert isinstance(result, ThresholdResult)
    assert result.threshold.text == text
    if actual is None:
        assert result.actual is None
    else:
        assert result.actual == pytest.approx(actual)
    assert result.ok is ok


def test_evaluate_keeps_order_and_an_empty_summary_fails_latency_rules() -> None:
    rules = [parse_threshold(t) for t in ("lost == 0", "p99(delivery) < 1s", "rate(errors) < 1")]
    results = evaluate(rules, {"latency_ms": {}, "counters": {}, "counters_by_node": {}})
    assert [r.threshold for r in results] == rules
    assert [(r.actual, r.ok) for r in results] == [(0.0, True), (None, False), (None, False)]
