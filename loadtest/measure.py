"""What a load run measured: HDR latency histograms, counters, gauges and delivery bookkeeping.

A worker process owns one `Recorder`; every second it ships `Recorder.snapshot()` (plain
JSON/pickle-able data) to the parent, which builds the run-wide view with `Recorder.merge()`.
Merging is exact: histograms of the same shape add bucket by bucket, counters sum. For long
runs a worker can ship `snapshot(delta=True)` and the parent rebuild the full snapshot with a
`SnapshotJoiner`, so the per-second series crosses the pipe once.

Latencies are kept in microseconds, 1 us .. 120 s, 3 significant digits. `latency()` is on the
engine's hot path (once per delivered message), so it only appends to a list; the samples are
folded into histograms when the 1-second interval rolls over or a snapshot is taken. Folding
counts samples per counts-array index and writes each counter once (`Tally`), instead of three
`HdrHistogram.record_value` calls per sample (overall, node, interval; pure Python, 1-3 us each).
benchmarks/loadtest_recorder_bench.py prints the costs.

Besides the run-wide and per-node histograms, each metric keeps one histogram per wall-clock
second (keyed by the integer epoch second, so intervals of different processes line up); they
give the latency-over-time series and the HDR interval log. A closed interval is stored encoded
(tens of bytes to a few KB) rather than as a live histogram (150 KB of counters). The wall
clock is assumed not to step back during a run.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import accumulate
from typing import Any

from hdrh.histogram import HdrHistogram

LATENCIES = ("delivery", "ack", "typing", "presence", "match", "connect", "reconnect_sync", "http",
             "unsend")
LOWEST_US = 1
HIGHEST_US = 120_000_000
SIGNIFICANT_DIGITS = 3
SNAPSHOT_VERSION = 1
STAT_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}

_KNOWN = frozenset(LATENCIES)


def new_histogram() -> HdrHistogram:
    """An empty histogram of the one shape every recorder uses (so adds are exact)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def encode_histogram(histogram: HdrHistogram) -> str:
    """The standard compressed, base64 HDR encoding (readable by every HdrHistogram port)."""
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def decode_histogram(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded.encode("ascii"))


def add_histogram(target: HdrHistogram, other: HdrHistogram) -> None:
    """`target += other` (same shape: one C loop over the counters)."""
    if other.get_total_count():
        target.add(other)


def percentiles_us(histogram: HdrHistogram, percentiles: Iterable[float]) -> dict[float, int]:
    """Values at percentiles with HdrHistogram's own semantics, without its per-bucket Python loop.

    `get_value_at_percentile` walks 18k buckets in Python per call (about 2 ms); here the
    ctypes counters are copied and accumulated in C and each percentile is a bisection.
    """
    total = histogram.get_total_count()
    wanted = list(percentiles)
    if not total:
        return dict.fromkeys(wanted, 0)
    last = histogram.get_counts_array_index(histogram.max_value) + 1
    cumulative = list(accumulate(histogram.counts[:last]))
    result: dict[float, int] = {}
    for percentile in wanted:
        target = max(int(min(percentile, 100.0) * total / 100 + 0.5), 1)
        index = min(bisect_left(cumulative, target), last - 1)
        value = histogram.get_value_from_index(index)
        if percentile:
            result[percentile] = int(histogram.get_highest_equivalent_value(value))
        else:
            result[percentile] = int(histogram.get_lowest_equivalent_value(value))
    return result


class Distribution:
    """One HDR histogram plus the exact sum of its samples (HDR's own mean is a slow estimate)."""

    __slots__ = ("histogram", "sum_us")

    def __init__(self, histogram: HdrHistogram | None = None, sum_us: int = 0) -> None:
        self.histogram = histogram if histogram is not None else new_histogram()
        self.sum_us = sum_us

    @property
    def count(self) -> int:
        return int(self.histogram.get_total_count())

    def record(self, tally: Tally) -> None:
        tally.apply(self.histogram)
        self.sum_us += tally.sum_us

    def add(self, other: Distribution) -> None:
        add_histogram(self.histogram, other.histogram)
        self.sum_us += other.sum_us

    def to_data(self) -> dict[str, Any]:
        return {"hdr": encode_histogram(self.histogram), "sum_us": self.sum_us}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Distribution:
        return cls(decode_histogram(data["hdr"]), int(data["sum_us"]))

    def stats_ms(self) -> dict[str, float | int]:
        """count, min, mean, p50, p90, p95, p99, p999, max; latencies in milliseconds."""
        count = self.count
        if not count:
            return {"count": 0, "min": 0.0, "mean": 0.0, **dict.fromkeys(STAT_PERCENTILES, 0.0),
                    "max": 0.0}
        values = percentiles_us(self.histogram, STAT_PERCENTILES.values())
        stats: dict[str, float | int] = {
            "count": count,
            "min": self.histogram.get_min_value() / 1000,
            "mean": round(self.sum_us / count / 1000, 3),
        }
        for name, percentile in STAT_PERCENTILES.items():
            stats[name] = values[percentile] / 1000
        stats["max"] = self.histogram.get_max_value() / 1000
        return stats


def _check_shape(reference: HdrHistogram) -> tuple[int, int]:
    """The constants of `counts_index`, checked against the histogram shape they assume."""
    if reference.unit_magnitude != 0 or reference.sub_bucket_half_count_magnitude != 10:
        raise RuntimeError("hdrhistogram lays out 1 us .. 120 s, 3 digits differently than "
                           "loadtest.measure.counts_index assumes")
    return int(reference.sub_bucket_mask), int(reference.sub_bucket_half_count_magnitude) + 1


_MASK, _SUB_BITS = _check_shape(new_histogram())  # 2047, 11


def counts_index(us: int) -> int:
    """Index of `us` in the counts array, as HdrHistogram's `_counts_index_for` computes it.

    With a unit magnitude of 0 and 1024 half sub-buckets, bucket b covers [2^(b+10), 2^(b+11))
    in steps of 2^b, and `((b + 1) << 10) + (us >> b) - 1024` simplifies to the line below.
    """
    bucket = (us | _MASK).bit_length() - _SUB_BITS
    return (bucket << 10) + (us >> bucket)


class Tally:
    """Samples counted per counts-array index, to be written into histograms in one go.

    Writing a counter directly costs about a tenth of `HdrHistogram.record_value`; `apply`
    keeps the histogram's total, min and max exactly as record_value would.
    """

    __slots__ = ("by_index", "count", "max_us", "min_us", "sum_us")

    def __init__(self) -> None:
        self.by_index: dict[int, int] = {}
        self.count = 0
        self.sum_us = 0
        self.min_us = HIGHEST_US + 1
        self.max_us = -1

    @classmethod
    def of(cls, values: list[int], indices: list[int]) -> Tally:
        """The tally of samples `values` (us) whose counts indices are `indices`."""
        tally = cls()
        if values:
            tally.by_index = Counter(indices)
            tally.count = len(values)
            tally.sum_us = sum(values)
            tally.min_us = min(values)
            tally.max_us = max(values)
        return tally

    def apply(self, histogram: HdrHistogram) -> None:
        if not self.count:
            return
        counts = histogram.counts
        for index, n in self.by_index.items():
            counts[index] += n
        histogram.total_count += self.count
        histogram.min_value = min(histogram.min_value, self.min_us)
        histogram.max_value = max(histogram.max_value, self.max_us)


class Recorder:
    """Latencies, counters and gauges of one process (or, after `merge`, of a whole run).

    Not thread-safe; one per worker process, used from its event loop. `clock` returns
    wall-clock epoch seconds and is injectable for tests.
    """

    def __init__(self, started_at: float | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.started_at = clock() if started_at is None else float(started_at)
        self.ended_at: float | None = None
        self._taken_at: float | None = None
        self._second = int(clock())
        self._pending: dict[str, list[tuple[float, str | None]]] = {m: [] for m in LATENCIES}
        self._overall: dict[str, Distribution] = {}
        self._by_node: dict[str, dict[str, Distribution]] = {}
        self._open: dict[str, HdrHistogram] = {}        # metric -> histogram of self._second
        self._closed: dict[str, dict[int, list[str]]] = {}  # metric -> second -> encodings
        self._counters: dict[str, int] = {}
        self._counters_by_node: dict[str, dict[str, int]] = {}
        self._interval_counters: dict[int, dict[str, int]] = {}
        self._gauges: dict[str, float] = {}
        self._delta_since: int | None = None

    # -- the hot path ---------------------------------------------------------------------------
    def latency(self, metric: str, seconds: float, node: str | None = None) -> None:
        """Record one latency sample (seconds; clamped to 0 .. 120 s) in the current second."""
        second = int(self._clock())
        if second != self._second:
            self._roll(second)
        try:
            self._pending[metric].append((seconds, node))
        except KeyError:
            raise ValueError(
                f"unknown latency metric {metric!r}; known: {', '.join(LATENCIES)}") from None

    def count(self, name: str, n: int = 1, node: str | None = None) -> None:
        """Add `n` to a counter, run-wide, per node when given, and in the current second."""
        second = int(self._clock())
        if second != self._second:
            self._roll(second)
        counters = self._counters
        counters[name] = counters.get(name, 0) + n
        interval = self._interval_counters.get(second)
        if interval is None:
            interval = self._interval_counters[second] = {}
        interval[name] = interval.get(name, 0) + n
        if node is not None:
            by_node = self._counters_by_node.setdefault(node, {})
            by_node[name] = by_node.get(name, 0) + n

    def gauge(self, name: str, value: float) -> None:
        """Set a level (open sockets, send lag); the last value wins, merge sums processes."""
        self._gauges[name] = float(value)

    def finish(self, at: float | None = None) -> None:
        """Freeze the end of the run, so `duration_s` does not grow while reports are written."""
        self._flush()
        self.ended_at = self._clock() if at is None else float(at)

    # -- folding samples into histograms --------------------------------------------------------
    def _roll(self, second: int) -> None:
        self._flush()
        for metric, histogram in self._open.items():
            if histogram.get_total_count():
                self._closed.setdefault(metric, {}).setdefault(self._second, []).append(
                    encode_histogram(histogram))
        self._open = {}
        self._second = second

    def _flush(self) -> None:
        for metric, samples in self._pending.items():
            if samples:
                self._pending[metric] = []
                self._fold(metric, samples)

    def _fold(self, metric: str, samples: list[tuple[float, str | None]]) -> None:
        # comprehensions and C builtins (Counter, sum, min, max): this runs once per sample
        values = [int(seconds * 1_000_000 + 0.5) for seconds, _ in samples]
        if min(values) < 0 or max(values) > HIGHEST_US:
            values = [0 if us < 0 else min(us, HIGHEST_US) for us in values]
        indices = [((bucket := (us | _MASK).bit_length() - _SUB_BITS) << 10) + (us >> bucket)
                   for us in values]
        tally = Tally.of(values, indices)
        grouped: dict[str, tuple[list[int], list[int]]] = {}
        for (_, node), us, index in zip(samples, values, indices, strict=True):
            if node is not None:
                group = grouped.get(node)
                if group is None:
                    group = grouped[node] = ([], [])
                group[0].append(us)
                group[1].append(index)
        node_tallies = {node: Tally.of(*group) for node, group in grouped.items()}
        overall = self._overall.get(metric)
        if overall is None:
            overall = self._overall[metric] = Distribution()
        overall.record(tally)
        interval = self._open.get(metric)
        if interval is None:
            interval = self._open[metric] = new_histogram()
        tally.apply(interval)
        nodes = self._by_node.setdefault(metric, {})
        for node, per_node in node_tallies.items():
            distribution = nodes.get(node)
            if distribution is None:
                distribution = nodes[node] = Distribution()
            distribution.record(per_node)

    # -- reading --------------------------------------------------------------------------------
    @property
    def end(self) -> float:
        """When the measured run ended: `finish()`, the newest merged snapshot, or now."""
        if self.ended_at is not None:
            return self.ended_at
        return self._taken_at if self._taken_at is not None else self._clock()

    def metrics(self) -> list[str]:
        """Latency metrics with at least one sample, in LATENCIES order."""
        self._flush()
        return [m for m in LATENCIES if m in self._overall and self._overall[m].count]

    def nodes(self) -> list[str]:
        self._flush()
        names = set(self._counters_by_node)
        for by_node in self._by_node.values():
            names.update(by_node)
        return sorted(names)

    def distribution(self, metric: str, node: str | None = None) -> Distribution | None:
        self._flush()
        if node is None:
            return self._overall.get(metric)
        return self._by_node.get(metric, {}).get(node)

    def counters(self) -> dict[str, int]:
        return dict(sorted(self._counters.items()))

    def gauges(self) -> dict[str, float]:
        return dict(sorted(self._gauges.items()))

    def interval_seconds(self) -> list[int]:
        """Epoch seconds holding any latency sample or counter, ascending."""
        self._flush()
        seconds = set(self._interval_counters)
        for by_second in self._closed.values():
            seconds.update(by_second)
        if any(h.get_total_count() for h in self._open.values()):
            seconds.add(self._second)
        return sorted(seconds)

    def interval_histogram(self, metric: str, second: int) -> HdrHistogram | None:
        """The histogram of one metric for one epoch second (merged over processes), or None."""
        self._flush()
        parts = self._closed.get(metric, {}).get(second, [])
        live = self._open.get(metric) if second == self._second else None
        if not parts and live is None:
            return None
        histogram = new_histogram()
        for encoded in parts:
            add_histogram(histogram, decode_histogram(encoded))
        if live is not None:
            add_histogram(histogram, live)
        return histogram if histogram.get_total_count() else None

    def interval_counters(self, second: int) -> dict[str, int]:
        return dict(self._interval_counters.get(second, {}))

    def summary(self) -> dict[str, Any]:
        """The run-wide figures as plain data (latencies in ms); see the module docstring."""
        self._flush()
        latency: dict[str, Any] = {}
        for metric in self.metrics():
            stats: dict[str, Any] = dict(self._overall[metric].stats_ms())
            stats["nodes"] = {node: d.stats_ms()
                              for node, d in sorted(self._by_node.get(metric, {}).items())}
            latency[metric] = stats
        return {
            "started_at": self.started_at,
            "duration_s": round(max(0.0, self.end - self.started_at), 3),
            "latency_ms": latency,
            "counters": self.counters(),
            "counters_by_node": {node: dict(sorted(c.items()))
                                 for node, c in sorted(self._counters_by_node.items())},
            "gauges": self.gauges(),
        }

    # -- shipping between processes -------------------------------------------------------------
    def snapshot(self, *, delta: bool = False) -> dict[str, Any]:
        """Everything recorded so far as plain data (str/int/float/list/dict), cumulative.

        Closed intervals are encoded once and reused, so a snapshot costs one encoding per
        metric histogram plus the open interval; its size grows with the run's length (about
        2-3 KB per metric per second). With `delta=True` the per-second series holds only the
        seconds from the one that was open at the previous delta snapshot (earlier ones were
        shipped and cannot change); the receiver rebuilds the full snapshot with one
        `SnapshotJoiner` per worker. Totals are always cumulative.
        """
        self._flush()
        since = self._delta_since if delta else None
        if delta:
            self._delta_since = self._second
        latency: dict[str, Any] = {}
        for metric, overall in self._overall.items():
            entry = overall.to_data()
            entry["nodes"] = {node: d.to_data()
                              for node, d in self._by_node.get(metric, {}).items()}
            latency[metric] = entry
        intervals: dict[str, list[list[Any]]] = {}
        for metric in set(self._closed) | set(self._open):
            by_second = self._closed.get(metric, {})
            seconds = set(by_second)
            if metric in self._open:
                seconds.add(self._second)
            rows: list[list[Any]] = []
            for second in sorted(seconds):
                if since is not None and second < since:
                    continue
                parts = by_second.get(second, [])
                if len(parts) == 1 and not (second == self._second and metric in self._open):
                    rows.append([second, parts[0]])  # closed and encoded once: reuse
                else:
                    histogram = self.interval_histogram(metric, second)
                    if histogram is not None:
                        rows.append([second, encode_histogram(histogram)])
            if rows:
                intervals[metric] = rows
        return {
            "version": SNAPSHOT_VERSION,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "taken_at": self._clock(),
            "latency": latency,
            "intervals": intervals,
            "counters": dict(self._counters),
            "counters_by_node": {n: dict(c) for n, c in self._counters_by_node.items()},
            "interval_counters": [[s, dict(c)] for s, c in sorted(self._interval_counters.items())
                                  if since is None or s >= since],
            "intervals_since": since,
            "gauges": dict(self._gauges),
        }

    @classmethod
    def merge(cls, snapshots: Iterable[dict[str, Any]], *,
              clock: Callable[[], float] = time.time) -> Recorder:
        """A read view of several processes: histograms added, counters and sizes summed,
        lags (`*_lag_s`) the worst."""
        items = list(snapshots)
        for item in items:
            if item.get("version") != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {item.get('version')!r} is not "
                                 f"{SNAPSHOT_VERSION}; mixed load-test versions?")
            if item.get("intervals_since") is not None:
                raise ValueError("a delta snapshot holds only recent seconds; pass it through "
                                 "its worker's SnapshotJoiner before merging")
        started = min((float(s["started_at"]) for s in items), default=None)
        merged = cls(started_at=started, clock=clock)
        ends = [float(s["ended_at"]) for s in items if s.get("ended_at") is not None]
        if ends and len(ends) == len(items):
            merged.ended_at = max(ends)
        if items:
            merged._taken_at = max(float(s["taken_at"]) for s in items)
        for item in items:
            merged._absorb(item)
        return merged

    def _absorb(self, snapshot: dict[str, Any]) -> None:
        for metric, entry in snapshot["latency"].items():
            incoming = Distribution.from_data(entry)
            overall = self._overall.get(metric)
            if overall is None:
                self._overall[metric] = incoming
            else:
                overall.add(incoming)
            nodes = self._by_node.setdefault(metric, {})
            for node, data in entry["nodes"].items():
                per_node = Distribution.from_data(data)
                if node in nodes:
                    nodes[node].add(per_node)
                else:
                    nodes[node] = per_node
        for metric, rows in snapshot["intervals"].items():
            by_second = self._closed.setdefault(metric, {})
            for second, encoded in rows:
                by_second.setdefault(int(second), []).append(encoded)
        for name, n in snapshot["counters"].items():
            self._counters[name] = self._counters.get(name, 0) + int(n)
        for node, counters in snapshot["counters_by_node"].items():
            target = self._counters_by_node.setdefault(node, {})
            for name, n in counters.items():
                target[name] = target.get(name, 0) + int(n)
        for second, counters in snapshot["interval_counters"]:
            target = self._interval_counters.setdefault(int(second), {})
            for name, n in counters.items():
                target[name] = target.get(name, 0) + int(n)
        for name, value in snapshot["gauges"].items():
            if name.endswith("_lag_s"):  # a lag is as bad as the worst process's
                self._gauges[name] = max(self._gauges.get(name, 0.0), float(value))
            else:  # sizes (open sockets) add up
                self._gauges[name] = self._gauges.get(name, 0.0) + float(value)


class SnapshotJoiner:
    """Rebuilds one worker's full snapshots from `snapshot(delta=True)` (one per worker).

    Keeps the per-second rows already received and replaces those from the delta's
    `intervals_since` on; a full snapshot (no `intervals_since`) replaces everything.
    """

    def __init__(self) -> None:
        self._intervals: dict[str, dict[int, str]] = {}
        self._counters: dict[int, dict[str, int]] = {}

    def add(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """The full snapshot that `snapshot` (a delta or not) stands for."""
        since = snapshot.get("intervals_since")
        if since is None:
            self._intervals, self._counters = {}, {}
        else:
            for by_second in self._intervals.values():
                for second in [s for s in by_second if s >= since]:
                    del by_second[second]
            for second in [s for s in self._counters if s >= since]:
                del self._counters[second]
        for metric, rows in snapshot["intervals"].items():
            by_second = self._intervals.setdefault(metric, {})
            for second, encoded in rows:
                by_second[int(second)] = encoded
        for second, counters in snapshot["interval_counters"]:
            self._counters[int(second)] = dict(counters)
        return {
            **snapshot,
            "intervals_since": None,
            "intervals": {metric: [[s, e] for s, e in sorted(by_second.items())]
                          for metric, by_second in self._intervals.items() if by_second},
            "interval_counters": [[s, c] for s, c in sorted(self._counters.items())],
        }
