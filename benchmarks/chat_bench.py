"""Closed-loop chat throughput through a real node process: prints figures, asserts nothing.

    python benchmarks/chat_bench.py --pairs 50 --seconds 10
    python benchmarks/chat_bench.py --redis-url redis://127.0.0.1:6379/0 --nodes 2

Starts `rendezvous serve` on free ports with a fresh data dir (with --redis-url, N nodes
sharing it: senders on the first node, receivers on the second, so every message crosses
Redis), matches the pairs over HTTP, then each pair sends in a closed loop (next send after
the previous ack) for the duration. Reports acked messages per second, send-to-ack and
send-to-delivery latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.sbs.procs import (
    RAISED_LIMITS_ENV,
    SECRET,
    child_env,
    free_port,
    node_command,
    percentile_ms,
)
from client import RendezvousClient, RendezvousHttp, mint_token


def pct(values: list[float], q: float) -> float:
    return percentile_ms(sorted(values), q)


async def start_node(data_dir: str, extra: list[str]) -> tuple[Any, str, str]:
    ws_port, http_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        *node_command(data_dir, ws_port, http_port, *extra),
        stdout=asyncio.subprocess.PIPE, env=child_env(**RAISED_LIMITS_ENV))
    assert proc.stdout is not None
    while b"Stop" not in await proc.stdout.readline():
        pass
    return proc, f"ws://127.0.0.1:{ws_port}/v1/ws", f"http://127.0.0.1:{http_port}"


async def run(pairs: int, seconds: float, subprotocol: str, redis_url: str | None,
              nodes: int) -> None:
    data_dir = tempfile.mkdtemp(prefix="rdv-bench-")
    # a prefix of its own: earlier runs' claims must not answer for this run's fresh store
    extra = ["--redis-url", redis_url] if redis_url else []
    os.environ["RENDEZVOUS_REDIS_PREFIX"] = f"bench{os.getpid()}:"
    started = [await start_node(data_dir, extra) for _ in range(nodes if redis_url else 1)]
    procs = [p for p, _, _ in started]
    ws_url, http_url = started[0][1], started[0][2]
    ws_url_b = started[-1][1]
    try:
        users = [(f"a{i}", f"b{i}") for i in range(pairs)]
        matches = []
        for a, b in users:
            async with RendezvousHttp(http_url, mint_token(SECRET, a)) as ha, \
                    RendezvousHttp(http_url, mint_token(SECRET, b)) as hb:
                await ha.swipe(b)
                matches.append((await hb.swipe(a))["match"]["id"])
        acks: list[float] = []
        deliveries: list[float] = []
        sent_at: dict[str, float] = {}

        def on_event(frame: dict) -> None:
            if frame.get("t") == "msg":
                started = sent_at.pop(frame["c"], None)
                if started is not None:
                    deliveries.append(time.perf_counter() - started)

        clients = []
        for (a, b), m in zip(users, matches, strict=True):
            ca = await RendezvousClient.connect(ws_url, mint_token(SECRET, a),
                                                subprotocol=subprotocol, on_event=on_event)
            cb = await RendezvousClient.connect(ws_url_b, mint_token(SECRET, b),
                                                subprotocol=subprotocol, on_event=on_event)
            clients.append((ca, cb, m))
        stop_at = time.perf_counter() + seconds

        async def loop(sender: RendezvousClient, m: str, tag: str) -> None:
            n = 0
            while time.perf_counter() < stop_at:
                c = f"{tag}-{n}"
                n += 1
                started = sent_at[c] = time.perf_counter()
                await sender.send(m, "benchmark message body", c=c)
                acks.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(loop(ca, m, f"p{i}") for i, (ca, _, m) in enumerate(clients)))
        elapsed = time.perf_counter() - began
        await asyncio.sleep(0.5)
        for ca, cb, _ in clients:
            await ca.close()
            await cb.close()
        print(f"pairs={pairs} seconds={elapsed:.1f} subprotocol={subprotocol} "
              f"nodes={len(procs)} fan-out={'redis' if redis_url else 'in-process'}")
        print(f"acked messages/s     {len(acks) / elapsed:10.0f}   (total {len(acks)})")
        print(f"send->ack ms         p50 {pct(acks, .5):6.2f}  p99 {pct(acks, .99):6.2f}"
              f"  max {max(acks) * 1000:6.1f}")
        print(f"send->delivery ms    p50 {pct(deliveries, .5):6.2f}  p99 "
              f"{pct(deliveries, .99):6.2f}  delivered {len(deliveries)}")
        if acks:
            print(f"mean ack ms          {statistics.mean(acks) * 1000:6.2f}  (client side)")
        async with RendezvousHttp(http_url) as plain:
            text = (await plain.raw("GET", "/metrics")).text
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith("rendezvous_send_to_ack_seconds_sum"):
                total = float(line.split()[-1])
            elif line.startswith("rendezvous_send_to_ack_seconds_count"):
                count = float(line.split()[-1])
        if count:
            print(f"mean ack ms          {total / count * 1000:6.2f}  (server: frame read to "
                  "ack queued)")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--subprotocol", default="rdv.v1.msgpack",
                        choices=["rdv.v1.msgpack", "rdv.v1.json"])
    parser.add_argument("--redis-url", help="run a cluster through this Redis")
    parser.add_argument("--nodes", type=int, default=2, help="nodes with --redis-url")
    args = parser.parse_args()
    main_coro = run(args.pairs, args.seconds, args.subprotocol, args.redis_url, args.nodes)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_coro)
    else:
        uvloop.run(main_coro)


if __name__ == "__main__":
    main()
