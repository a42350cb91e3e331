"""Recorder and DeliveryTracker: exact merging across processes, intervals, loss bookkeeping."""

from __future__ import annotations

import json
import pickle
import random
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from loadtest.delivery import DeliveryTracker
from loadtest.measure import (
    HIGHEST_US,
    LATENCIES,
    Recorder,
    SnapshotJoiner,
    counts_index,
    decode_histogram,
    encode_histogram,
    new_histogram,
    percentiles_us,
)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _workload(seed: int, n: int) -> list[tuple[float, str, float, str | None]]:
    """(time step, metric, seconds, node) samples over several seconds, wide value range."""
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        metric = rng.choice(("delivery", "delivery", "ack", "typing", "connect"))
        seconds = rng.choice((rng.expovariate(1 / 0.02), rng.uniform(0, 0.002),
                              rng.uniform(1, 30)))
        samples.append((rng.uniform(0, 0.004), metric, seconds,
                        rng.choice(("node-a", "node-b", None))))
    return samples


def _interval_view(recorder: Recorder) -> dict[tuple[str, int], tuple[int, dict[float, int]]]:
    view = {}
    for second in recorder.interval_seconds():
        for metric in LATENCIES:
            histogram = recorder.interval_histogram(metric, second)
            if histogram is not None:
                view[(metric, second)] = (histogram.get_total_count(),
                                          percentiles_us(histogram, (0, 50, 90, 99, 99.9, 100)))
    return view


@pytest.mark.parametrize("transport", ["json", "pickle"])
def test_merged_snapshots_equal_one_recorder_of_everything(transport: str) -> None:
    clock = FakeClock()
    workers = [Recorder(clock=clock) for _ in range(3)]
    everything = Recorder(clock=clock)
    rng = random.Random(7)
    for step, metric, seconds, node in _workload(1, 6000):
        clock.now += step
        worker = rng.choice(workers)
        worker.latency(metric, seconds, node)
        everything.latency(metric, seconds, node)
        worker.count("sent", 2, node)
        everything.count("sent", 2, node)
    for index, worker in enumerate(workers):
        worker.gauge("open_sockets", 10 + index)
    everything.gauge("open_sockets", 33)

    def ship(snapshot: dict[str, Any]) -> dict[str, Any]:
        if transport == "json":
            return json.loads(json.dumps(snapshot))  # type: ignore[no-any-return]
        return pickle.loads(pickle.dumps(snapshot))  # type: ignore[no-any-return]

    merged = Recorder.merge([ship(w.snapshot()) for w in workers], clock=clock)
    expected = everything.summary()
    assert merged.summary() == expected
    assert expected["latency_ms"]["delivery"]["count"] > 1000
    assert set(expected["latency_ms"]["delivery"]["nodes"]) == {"node-a", "node-b"}
    assert expected["gauges"] == {"open_sockets": 33.0}
    assert len(merged.interval_seconds()) >= 10
    assert _interval_view(merged) == _interval_view(everything)
    for second in everything.interval_seconds():
        assert merged.interval_counters(second) == everything.interval_counters(second)


def test_folded_samples_match_recording_each_value_in_hdrhistogram() -> None:
    recorder = Recorder(clock=FakeClock())
    reference = HdrHistogram(1, HIGHEST_US, 3)
    rng = random.Random(3)
    values_us = [0, 1, 2047, 2048, 2049, 4095, 4096, 1_000_000, HIGHEST_US]
    values_us += [int(rng.lognormvariate(9, 2)) % HIGHEST_US for _ in range(5000)]
    total = 0
    for us in values_us:
        recorder.latency("delivery", us / 1_000_000)
        reference.record_value(us)
        total += us
    distribution = recorder.distribution("delivery")
    assert distribution is not None
    histogram = distribution.histogram
    assert histogram.get_total_count() == reference.get_total_count() == len(values_us)
    for percentile in (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0):
        assert percentiles_us(histogram, [percentile])[percentile] == \
            reference.get_value_at_percentile(percentile)
    assert histogram.get_max_value() == reference.get_max_value()
    assert distribution.sum_us == total
    assert histogram.get_min_value() == reference.get_min_value()
    for us in values_us:
        assert counts_index(us) == reference._counts_index_for(us)
        assert histogram.get_count_at_value(us) == reference.get_count_at_value(us)


def test_minimum_of_samples_above_zero_is_kept() -> None:
    recorder = Recorder(clock=FakeClock())
    for seconds in (0.25, 0.0031, 1.5):
        recorder.latency("presence", seconds)
    stats = recorder.summary()["latency_ms"]["presence"]
    assert stats["min"] == pytest.approx(3.1, rel=1e-3)
    assert stats["max"] == pytest.approx(1500, rel=1e-3)


def test_merge_keeps_the_minimum_of_non_zero_histograms() -> None:
    clock = FakeClock()
    first, second = Recorder(clock=clock), Recorder(clock=clock)
    first.latency("ack", 0.005)
    second.latency("ack", 0.009)
    merged = Recorder.merge([first.snapshot(), second.snapshot()], clock=clock)
    stats = merged.summary()["latency_ms"]["ack"]
    assert stats["count"] == 2
    assert stats["min"] == pytest.approx(5.0, rel=1e-3)
    assert stats["max"] == pytest.approx(9.0, rel=1e-3)
    assert stats["mean"] == pytest.approx(7.0)
    # the interval view adds both parts into a fresh histogram
    interval = merged.interval_histogram("ack", int(clock.now))
    assert interval is not None
    assert interval.get_min_value() == pytest.approx(5000, rel=1e-3)


def test_latency_clamps_out_of_range_values_and_rejects_unknown_metrics() -> None:
    recorder = Recorder(clock=FakeClock())
    recorder.latency("http", -0.5)
    recorder.latency("http", 500.0)
    stats = recorder.summary()["latency_ms"]["http"]
    assert stats["count"] == 2
    assert stats["min"] == 0.0
    assert stats["max"] == pytest.approx(HIGHEST_US / 1000, rel=1e-3)
    with pytest.raises(ValueError, match=r"unknown latency metric 'delivry'.*delivery"):
        recorder.latency("delivry", 0.1)


def test_intervals_follow_wall_clock_seconds_and_counters_too() -> None:
    clock = FakeClock(1000.5)
    recorder = Recorder(clock=clock)
    recorder.latency("delivery", 0.010)
    recorder.count("sent")
    clock.now = 1001.1
    recorder.latency("delivery", 0.020)
    recorder.latency("delivery", 0.030)
    recorder.count("sent", 3, node="n1")
    clock.now = 1003.9
    recorder.count("errors.rate_limited")
    assert recorder.interval_seconds() == [1000, 1001, 1003]
    first = recorder.interval_histogram("delivery", 1000)
    later = recorder.interval_histogram("delivery", 1001)
    assert first is not None and later is not None
    assert first.get_total_count() == 1
    assert later.get_total_count() == 2
    assert recorder.interval_histogram("delivery", 1003) is None
    assert recorder.interval_counters(1001) == {"sent": 3}
    assert recorder.interval_counters(1003) == {"errors.rate_limited": 1}
    summary = recorder.summary()
    assert summary["counters"] == {"errors.rate_limited": 1, "sent": 4}
    assert summary["counters_by_node"] == {"n1": {"sent": 3}}
    assert summary["duration_s"] == pytest.approx(3.4)
    recorder.finish()
    clock.now = 2000.0
    assert recorder.summary()["duration_s"] == pytest.approx(3.4)


def test_snapshot_is_plain_data_and_round_trips() -> None:
    clock = FakeClock()
    recorder = Recorder(clock=clock)
    for step, metric, seconds, node in _workload(5, 500):
        clock.now += step
        recorder.latency(metric, seconds, node)
    recorder.count("delivered", 5)
    snapshot = recorder.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert pickle.loads(pickle.dumps(snapshot)) == snapshot
    again = Recorder.merge([snapshot], clock=clock)
    assert again.snapshot()["latency"] == snapshot["latency"]
    assert Recorder.merge([again.snapshot()], clock=clock).summary() == recorder.summary()


def test_snapshots_of_merged_views_merge_again() -> None:
    clock = FakeClock(50.0)
    parts = []
    for index in range(4):
        recorder = Recorder(clock=clock)
        recorder.latency("match", 0.001 * (index + 1))
        recorder.count("sent")
        parts.append(recorder.snapshot())
    pairs = [Recorder.merge(parts[:2], clock=clock).snapshot(),
             Recorder.merge(parts[2:], clock=clock).snapshot()]
    assert Recorder.merge(pairs, clock=clock).summary() == \
        Recorder.merge(parts, clock=clock).summary()
    histogram = Recorder.merge(pairs, clock=clock).interval_histogram("match", 50)
    assert histogram is not None and histogram.get_total_count() == 4


def test_delta_snapshots_joined_equal_full_snapshots() -> None:
    clock = FakeClock()
    workers = [Recorder(clock=clock) for _ in range(2)]
    joiners = [SnapshotJoiner() for _ in workers]
    rng = random.Random(9)
    joined: list[dict[str, Any]] = [{}, {}]
    delta_seconds: list[int] = []
    for step, (advance, metric, seconds, node) in enumerate(_workload(4, 4000)):
        clock.now += advance
        worker = workers[step % 2]
        worker.latency(metric, seconds, node)
        worker.count("sent", rng.randint(1, 3), node)
        if step % 150 == 0:   # about every 0.3 s: ship both workers, through JSON
            for index, recorder in enumerate(workers):
                delta = json.loads(json.dumps(recorder.snapshot(delta=True)))
                delta_seconds.append(len({s for rows in delta["intervals"].values()
                                          for s, _ in rows}))
                joined[index] = joiners[index].add(delta)
    for index, recorder in enumerate(workers):
        joined[index] = joiners[index].add(recorder.snapshot(delta=True))
    full = [w.snapshot() for w in workers]
    for one, other in zip(joined, full, strict=True):
        assert one["intervals"] == other["intervals"]
        assert one["interval_counters"] == other["interval_counters"]
        assert one["latency"] == other["latency"]
    from_joined = Recorder.merge(joined, clock=clock)
    from_full = Recorder.merge(full, clock=clock)
    assert from_joined.summary() == from_full.summary()
    assert _interval_view(from_joined) == _interval_view(from_full)
    assert len(from_full.interval_seconds()) >= 8
    assert max(delta_seconds[2:]) <= 2   # only the open second and the one before it
    with pytest.raises(ValueError, match="delta snapshot"):
        Recorder.merge([workers[0].snapshot(delta=True)])


def test_merge_rejects_snapshots_of_another_version() -> None:
    snapshot = Recorder(clock=FakeClock()).snapshot()
    snapshot["version"] = 99
    with pytest.raises(ValueError, match="snapshot version 99"):
        Recorder.merge([snapshot])


def test_merge_of_nothing_is_empty() -> None:
    summary = Recorder.merge([], clock=FakeClock(10.0)).summary()
    assert summary["latency_ms"] == {}
    assert summary["counters"] == {}


def test_encoding_round_trips_through_standard_hdr_format() -> None:
    histogram = new_histogram()
    for value in (1, 10, 100, 1000, 10_000):
        histogram.record_value(value)
    decoded = decode_histogram(encode_histogram(histogram))
    assert decoded.get_total_count() == 5
    assert decoded.get_max_value() == histogram.get_max_value()
    assert encode_histogram(histogram).startswith("HISTF")


# (events, expected results of the "received" events, expected lost at the end)
DELIVERY_CASES = [
    pytest.param([("s", 0), ("s", 1), ("r", 0), ("r", 1)], ["ok", "ok"], 0, id="in order"),
    pytest.param([("s", 0), ("r", 0), ("r", 0)], ["ok", "duplicate"], 0, id="duplicate"),
    pytest.param([("s", 0), ("s", 1), ("s", 2), ("r", 0), ("r", 2), ("r", 1)],
                 ["ok", "ok", "reordered"], 0, id="reordered"),
    pytest.param([("s", 0), ("s", 1), ("s", 2), ("r", 0), ("r", 2)], ["ok", "ok"], 1,
                 id="lost in the middle"),
    pytest.param([("s", 0), ("s", 1)], [], 2, id="nothing received"),
    pytest.param([("s", 0), ("r", 5), ("r", -1)], ["unknown", "unknown"], 1,
                 id="never sent"),
    pytest.param([("s", 0), ("s", 3), ("r", 2), ("s", 2), ("r", 2), ("r", 3), ("r", 0)],
                 ["unknown", "ok", "ok", "reordered"], 0, id="gap filled later"),
    pytest.param([("s", 0), ("r", 0), ("s", 0), ("r", 0)], ["ok", "duplicate"], 0,
                 id="resent after delivery"),
    pytest.param([("s", 5), ("s", 4), ("r", 5), ("r", 4), ("r", 4)],
                 ["ok", "reordered", "duplicate"], 0, id="sent below the first"),
]


@pytest.mark.parametrize(("events", "expected", "lost"), DELIVERY_CASES)
def test_delivery_tracker(events: list[tuple[str, int]], expected: list[str],
                          lost: int) -> None:
    tracker = DeliveryTracker()
    results = []
    for kind, seq in events:
        if kind == "s":
            tracker.sent("a->b", seq)
        else:
            results.append(tracker.received("a->b", seq))
    assert results == expected
    assert tracker.lost() == lost
    assert tracker.in_flight("a->b") == lost


def test_delivery_tracker_keeps_streams_apart() -> None:
    tracker = DeliveryTracker()
    tracker.sent("a->b", 0)
    tracker.sent("b->a", 0)
    assert tracker.received("a->b", 0) == "ok"
    assert tracker.received("c->d", 0) == "unknown"
    assert tracker.lost() == 1
    assert tracker.in_flight("b->a") == 1
