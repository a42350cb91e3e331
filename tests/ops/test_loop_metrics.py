"""The loop-counted metrics export what `prometheus_client`'s own would, sample for sample."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runtime.tasks import stop_tasks
from server.loop_metrics import LoopCounter, LoopHistogram, watch_loop_lag
from server.metrics import LATENCY_BUCKETS
from tests.helpers import wait_until


def samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples
            if not s.name.endswith("_created")}


def test_a_loop_histogram_matches_a_prometheus_histogram() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    values = [0.0001, 0.0005, 0.003, 0.01, 0.3, 7.0, 0.0025]
    plain = LoopHistogram("x_seconds", "doc", buckets=LATENCY_BUCKETS, registry=ours)
    labelled = LoopHistogram("y_seconds", "doc", ["op"], buckets=LATENCY_BUCKETS,
                             registry=ours)
    ref_plain = Histogram("x_seconds", "doc", buckets=LATENCY_BUCKETS, registry=theirs)
    ref_labelled = Histogram("y_seconds", "doc", ["op"], buckets=LATENCY_BUCKETS,
                             registry=theirs)
    for v in values:
        plain.observe(v)
        ref_plain.observe(v)
        labelled.labels("save").observe(v)
        ref_labelled.labels("save").observe(v)
    assert samples(ours) == samples(theirs)


def test_a_loop_counter_matches_a_prometheus_counter() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = LoopCounter("frames", "doc", ["type"], registry=ours)
    ref = Counter("frames", "doc", ["type"], registry=theirs)
    for kind, n in (("send", 3), ("ack", 1)):
        for _ in range(n):
            mine.labels(kind).inc()
            ref.labels(kind).inc()
    assert samples(ours) == samples(theirs)
    assert ours.get_sample_value("frames_total", {"type": "send"}) == 3


async def test_loop_lag_sees_a_blocked_loop() -> None:
    registry = CollectorRegistry()
    lag = LoopHistogram("lag_seconds", "doc", buckets=LATENCY_BUCKETS, registry=registry)
    watcher = asyncio.create_task(watch_loop_lag(lag, interval_s=0.05))
    try:
        await asyncio.sleep(0.01)  # the watcher is asleep
        time.sleep(0.2)  # noqa: ASYNC251 - the point: something holds the loop
        await wait_until(lambda: registry.get_sample_value("lag_seconds_count") or 0)
    finally:
        await stop_tasks([watcher])
    assert (registry.get_sample_value("lag_seconds_sum") or 0) >= 0.1
