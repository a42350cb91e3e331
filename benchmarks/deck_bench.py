"""How long the deck filter takes for a batch of 500 candidates on the embedded default.

    python benchmarks/deck_bench.py                      # SQLite store, then a node process
    python benchmarks/deck_bench.py --swipes 20000 --calls 400
    python benchmarks/deck_bench.py --backend cassandra --cassandra 127.0.0.1:9042

Seeds one user with `--swipes` swipes, `--blocks` blocks made and as many received, then
calls the filter `--calls` times with 500 candidates, a third of them swiped or blocked:
first `Store.deck_exclusions` alone (the one store round trip), then, for SQLite, the whole
`POST /v1/deck/filter` to a node process over HTTP (auth, JSON, the service), beside `GET
/healthz` on the same client and node for the cost of the HTTP round trip alone. Prints
p50, p99 and max in ms of each (the target: p99 under 20 ms for 500 candidates,
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks.sbs.procs import child_env, free_port, node_command
from client import RendezvousHttp, mint_token
from storage.base import MAX_DECK_CANDIDATES, Store
from storage.sqlite import SqliteStore

SECRET = "deck-bench-secret-0123456789abcdef0123"
USER = "bench-user"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {at(0.50):6.2f} ms  p99 {at(0.99):6.2f} ms  max {ordered[-1] * 1000:6.2f} ms"


async def seed(store: Store, swipes: int, blocks: int) -> None:
    ts = int(time.time() * 1000) - 10_000_000
    batch = []
    for i in range(swipes):
        batch.append(store.record_swipe(USER, f"s{i}", random.choice(("like", "pass")), ts + i))
        if len(batch) == 256:
            await asyncio.gather(*batch)
            batch = []
    for i in range(blocks):
        batch += [store.add_block(USER, f"b{i}", ts), store.add_block(f"r{i}", USER, ts)]
    await asyncio.gather(*batch)


def candidates(swipes: int, blocks: int, rng: random.Random) -> list[str]:
    third = MAX_DECK_CANDIDATES // 3
    out = [f"s{rng.randrange(swipes)}" for _ in range(third // 2)]
    out += [f"b{rng.randrange(blocks)}" for _ in range(third // 4)]
    out += [f"r{rng.randrange(blocks)}" for _ in range(third // 4)]
    out += [f"new{rng.randrange(10**9)}" for _ in range(MAX_DECK_CANDIDATES - len(out))]
    rng.shuffle(out)
    return out


async def bench_store(store: Store, args: argparse.Namespace) -> None:
    rng = random.Random(1)
    for _ in range(20):  # warm the caches and the statement cache
        await store.deck_exclusions(USER, candidates(args.swipes, args.blocks, rng))
    samples = []
    for _ in range(args.calls):
        batch = candidates(args.swipes, args.blocks, rng)
        start = time.perf_counter()
        excluded = await store.deck_exclusions(USER, batch)
        samples.append(time.perf_counter() - start)
        assert excluded and len(excluded) < len(batch)
    print(f"{args.backend} deck_exclusions, {MAX_DECK_CANDIDATES} candidates, "
          f"{args.calls} calls: {percentiles(samples)}")


async def bench_http(data_dir: Path, args: argparse.Namespace) -> None:
    """A node process of its own (as in production) on the seeded data dir; this process
    is the client (a client in the node's own loop adds ~40 ms a request here)."""
    http_port = free_port()
    node = await asyncio.create_subprocess_exec(
        *node_command(data_dir, free_port(), http_port),
        env=child_env(RENDEZVOUS_JWT_SECRET=SECRET),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rng = random.Random(2)
    try:
        async with RendezvousHttp(f"http://127.0.0.1:{http_port}",
                                  mint_token(SECRET, USER)) as api:
            for _ in range(300):  # until the node answers
                try:
                    await api.raw("GET", "/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            for _ in range(20):
                await api.deck_filter(candidates(args.swipes, args.blocks, rng))
            samples = []
            for _ in range(args.calls):
                batch = candidates(args.swipes, args.blocks, rng)
                start = time.perf_counter()
                kept = await api.deck_filter(batch)
                samples.append(time.perf_counter() - start)
                assert 0 < len(kept) < len(batch)
            baseline = []  # the same client and node on a route that does nothing
            for _ in range(args.calls):
                start = time.perf_counter()
                await api.raw("GET", "/healthz")
                baseline.append(time.perf_counter() - start)
    finally:
        node.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await node.wait()
    print(f"POST /v1/deck/filter on a node process (SQLite), {MAX_DECK_CANDIDATES} "
          f"candidates, {args.calls} calls: {percentiles(samples)}")
    print(f"GET /healthz on the same node and client (the HTTP round trip alone): "
          f"{percentiles(baseline)}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend == "cassandra":
            from storage.cassandra import CassandraStore

            store: Store = CassandraStore(args.cassandra.split(","),
                                          keyspace=f"deck_bench_{random.randrange(10**6)}")
        else:
            store = SqliteStore(Path(tmp) / "rendezvous.db", synchronous="NORMAL")
        await store.start()
        try:
            await seed(store, args.swipes, args.blocks)
            await bench_store(store, args)
        finally:
            await store.close()
        if args.backend == "sqlite":
            await bench_http(Path(tmp), args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "cassandra"), default="sqlite")
    parser.add_argument("--cassandra", default="127.0.0.1:9042")
    parser.add_argument("--swipes", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--calls", type=int, default=300)
    asyncio.run(main(parser.parse_args()))
