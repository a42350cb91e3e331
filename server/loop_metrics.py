"""Counters and histograms for the per-message path, counted in plain numbers.

`prometheus_client` guards every increment with a lock and re-checks the metric on each call;
a message touched seven of them (three histograms of two locked additions each, frames in and
out), a tenth of the event loop's time under load. These count with a float addition (a
bisect for a histogram) and give the registry the same families at scrape time. Only the
event loop thread counts, so no lock is needed; a scrape from another thread may see one
observation's bucket before its sum, as a scrape can with `prometheus_client` too.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

INF = float("inf")


def le_label(bound: float) -> str:
    """A bucket bound as `prometheus_client` writes it ("0.005", "1.0", "+Inf")."""
    return "+Inf" if bound == INF else repr(float(bound))


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bound >= amount
        self.sum += amount


class LoopCounter(Collector):
    """A counter with labels (`.labels(...).inc()`), exported as `<name>_total`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], *,
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], CounterChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> CounterChild:
        key = tuple(str(v) for v in values)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = CounterChild()
        return child

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self._children.items()):
            family.add_metric(list(key), child.value)
        yield family


class LoopHistogram(Collector):
    """A histogram, with or without labels (`.observe()` or `.labels(...).observe()`)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                 buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        bounds = tuple(sorted(float(b) for b in buckets))
        self.bounds = bounds if bounds and bounds[-1] == INF else (*bounds, INF)
        self._children: dict[tuple[str, ...], HistogramChild] = {}
        if not self.labelnames:
            self._children[()] = HistogramChild(self.bounds)
        registry.register(self)

    def labels(self, *values: str) -> HistogramChild:
        key = tuple(str(v) for v in values)
        if len(key) != len(self.labelnames) or not key:
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HistogramChild(self.bounds)
        return child

    def observe(self, amount: float) -> None:
        self._children[()].observe(amount)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self._children.items()):
            running = 0
            buckets = []
            for bound, count in zip(self.bounds, list(child.counts), strict=True):
                running += count
                buckets.append((le_label(bound), float(running)))
            family.add_metric(list(key), buckets, child.sum)
        yield family


LOOP_LAG_INTERVAL_S = 0.5


async def watch_loop_lag(histogram: LoopHistogram, interval_s: float = LOOP_LAG_INTERVAL_S,
                         ) -> None:
    """Observe how late a sleep of `interval_s` wakes, forever: the event loop's lag (a
    callback or a CPU-bound step that holds the loop delays every connection by as much).
    Two timer wake-ups a second, nothing per message."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval_s)
        histogram.observe(max(0.0, loop.time() - started - interval_s))
