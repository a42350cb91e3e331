"""Cost of the load tester's measurement: prints figures, asserts nothing.

    python benchmarks/loadtest_recorder_bench.py --rate 10000 --seconds 30 --workers 4

Simulates one worker process recording `--rate` deliveries (plus acks and counters) per second
for `--seconds` seconds of a fake wall clock, and reports:
- ns per `Recorder.latency()` call (the hot path: an append), and per `count()` call;
- ns per sample to fold the appended samples into the HDR histograms (paid once a second);
- the time and size (JSON and pickle) of the per-second `snapshot()` at the end of the run,
  and the size of a `snapshot(delta=True)` (recent seconds only);
- the time of `Recorder.merge()` over `--workers` such snapshots, of `summary()`, and of
  `write_outputs()` (JSON, HDR log and HTML) for that merged run.
For comparison it also prints ns per `HdrHistogram.record_value` (one per sample otherwise).
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.measure import Recorder, new_histogram
from loadtest.report import write_outputs


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="deliveries per second")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    rng = random.Random(1)
    values = [rng.expovariate(1 / 0.02) for _ in range(args.rate)]
    nodes = ["node-a", "node-b"]
    clock = FakeClock()
    recorder = Recorder(clock=clock)
    hot = fold = counting = 0.0
    snapshot_s = 0.0
    for second in range(args.seconds):
        clock.now = 1_700_000_000.0 + second
        start = time.perf_counter()
        for index, value in enumerate(values):
            recorder.latency("delivery", value, nodes[index & 1])
        hot += time.perf_counter() - start
        start = time.perf_counter()
        for index in range(len(values)):
            recorder.count("delivered", 1, nodes[index & 1])
        counting += time.perf_counter() - start
        start = time.perf_counter()
        recorder._flush()  # what the next interval roll or snapshot does first
        fold += time.perf_counter() - start
        start = time.perf_counter()
        snapshot = recorder.snapshot()
        snapshot_s = time.perf_counter() - start
        delta = recorder.snapshot(delta=True)
    samples = args.rate * args.seconds
    as_json = json.dumps(snapshot).encode()
    as_pickle = pickle.dumps(snapshot)
    delta_json = json.dumps(delta).encode()

    start = time.perf_counter()
    merged = Recorder.merge([snapshot] * args.workers)
    merge_s = time.perf_counter() - start
    start = time.perf_counter()
    summary = merged.summary()
    summary_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        paths = write_outputs(merged, [], Path(out_dir), title="bench", scenario={})
        outputs_s = time.perf_counter() - start
        sizes = {name: path.stat().st_size / 1024 for name, path in paths.items()}

    histogram = new_histogram()
    as_us = [int(v * 1_000_000) for v in values]
    start = time.perf_counter()
    for us in as_us:
        histogram.record_value(us)
    record_ns = (time.perf_counter() - start) / len(as_us) * 1e9

    print(f"samples: {samples} ({args.rate}/s for {args.seconds} s, 2 nodes)")
    print(f"latency() hot path:          {hot / samples * 1e9:8.0f} ns/call")
    print(f"fold into histograms:        {fold / samples * 1e9:8.0f} ns/sample")
    print(f"count() with node:           {counting / samples * 1e9:8.0f} ns/call")
    print(f"HdrHistogram.record_value:   {record_ns:8.0f} ns/call (3 per sample if direct)")
    print(f"snapshot() after {args.seconds} s:      {snapshot_s * 1000:8.1f} ms, "
          f"{len(as_json) / 1024:.1f} KiB JSON, {len(as_pickle) / 1024:.1f} KiB pickle")
    print(f"snapshot(delta=True):        {len(delta_json) / 1024:8.1f} KiB JSON")
    print(f"merge() of {args.workers} snapshots:      {merge_s * 1000:8.1f} ms")
    print(f"summary() of the merge:      {summary_s * 1000:8.1f} ms "
          f"(delivery p99 {summary['latency_ms']['delivery']['p99']} ms)")
    print(f"write_outputs() of the merge: {outputs_s * 1000:7.0f} ms "
          f"({', '.join(f'{k} {v:.0f} KiB' for k, v in sizes.items())})")


if __name__ == "__main__":
    main()
