"""How fast a `Store` acknowledges messages: the durable write on the hot path.

    python benchmarks/store_bench.py --backend sqlite --messages 20000 --concurrency 200
    python benchmarks/store_bench.py --backend cassandra --cassandra 127.0.0.1:9042

`--concurrency` senders each save one message at a time, as sessions on a node do; ids come
from one `IdGenerator`, assigned when a save starts. Prints writes per second and the
latency of `save_message` from call to acknowledgement.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from protocol.ids import IdGenerator
from storage.base import MatchRecord, Message, Store, match_id_for
from storage.sqlite import SqliteStore


def _sqlite(args: argparse.Namespace, workdir: Path) -> Store:
    return SqliteStore(Path(args.path or workdir / "bench.db"), synchronous=args.synchronous,
                       max_batch=args.max_batch)


def _cassandra(args: argparse.Namespace, workdir: Path) -> Store:
    from storage.cassandra import CassandraStore

    return CassandraStore(args.cassandra.split(","), keyspace=f"bench_{os.getpid()}")


BACKENDS: dict[str, Callable[[argparse.Namespace, Path], Store]] = {
    "sqlite": _sqlite, "cassandra": _cassandra}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


async def run(args: argparse.Namespace, workdir: Path) -> None:
    store = BACKENDS[args.backend](args, workdir)
    await store.start()
    try:
        pairs = [(f"u{2 * i}", f"u{2 * i + 1}") for i in range(args.matches)]
        now = int(time.time() * 1000)
        matches = [(await store.create_match(MatchRecord(match_id_for(a, b), (a, b), now)))[0]
                   for a, b in pairs]
        ids = IdGenerator(node=1)
        counter = itertools.count()
        latencies: list[float] = []

        async def sender() -> None:
            while (n := next(counter)) < args.messages:
                match = matches[n % len(matches)]
                ms = int(time.time() * 1000)
                message = Message(match.id, ids.next(ms), match.users[n % 2], f"c{n}", ms,
                                  "x" * args.body_bytes)
                started = time.perf_counter()
                await store.save_message(message)
                latencies.append(time.perf_counter() - started)

        batches_before = getattr(getattr(store, "engine", None), "batches", None)
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        batches_after = getattr(getattr(store, "engine", None), "batches", None)
    finally:
        await store.close()

    latencies.sort()
    ms = [x * 1000 for x in latencies]
    print(f"backend={args.backend} synchronous={args.synchronous} messages={args.messages} "
          f"concurrency={args.concurrency} body={args.body_bytes}B")
    print(f"writes/s: {args.messages / elapsed:,.0f}  ({elapsed:.2f} s)")
    print(f"save latency ms: p50 {percentile(ms, 50):.2f}  p99 {percentile(ms, 99):.2f}  "
          f"max {ms[-1]:.2f}")
    if batches_before is not None and batches_after is not None:
        groups = batches_after - batches_before
        print(f"commits: {groups}  mean group size {args.messages / max(groups, 1):.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--matches", type=int, default=1_000)
    parser.add_argument("--body-bytes", type=int, default=64)
    parser.add_argument("--path", help="database file (default: a fresh temporary one)")
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--cassandra", default="127.0.0.1:9042",
                        help="contact points for --backend cassandra (a fresh keyspace)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="store-bench-", dir=os.environ.get("TMPDIR")) as d:
        asyncio.run(run(args, Path(d)))


if __name__ == "__main__":
    main()
