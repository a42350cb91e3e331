"""How many notifications per second ApnsPusher and FcmPusher hand to a provider.

    python benchmarks/push_bench.py --provider both --count 5000 --concurrency 100

Runs the real aioapns and firebase-admin against the local look-alikes of tests/push_servers
(APNS: HTTP/2 over TLS on this event loop; FCM: HTTP/1.1 from threads of a child process,
or of this one with --fcm-in-process), so
the figures measure the adapters and libraries plus a trivial server on the same machine,
not Apple or Google. `--concurrency` sends are in flight at once, as the dispatcher's
per-provider cap allows. Prints sends per second and the p50/p99 latency of one `send`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from push.apns import ApnsPusher
from push.base import Notification, Outcome, Pusher
from push.fcm import FcmPusher
from storage import Device
from storage.base import Platform
from tests.push_servers.apns import ApnsLookalike
from tests.push_servers.fcm import FcmLookalike

ROOT = Path(__file__).resolve().parents[1]


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def notification(i: int) -> Notification:
    return Notification(push_id=f"msg:m{i % 97}:{i}:bench", kind="message",
                        match_id=f"m{i % 97}", loc_key="rdv.message.new",
                        collapse_id=f"m:m{i % 97}", badge=i % 9,
                        data={"t": "msg", "m": f"m{i % 97}", "id": str(i)})


async def drive(pusher: Pusher, platform: Platform, count: int, concurrency: int) -> None:
    latencies: list[float] = []
    outcomes: dict[Outcome, int] = {}
    next_index = 0

    async def sender() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            device = Device(user=f"u{i}", token=f"{i:064x}", platform=platform)
            started = time.perf_counter()
            result = await pusher.send(device, notification(i))
            latencies.append(time.perf_counter() - started)
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1

    await pusher.send(Device("warm", "f" * 64, platform), notification(-1))
    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    print(f"{pusher.provider}: {count} sends, concurrency {concurrency}: "
          f"{count / elapsed:,.0f}/s in {elapsed:.2f} s; per send p50 "
          f"{percentile(latencies, 50) * 1000:.2f} ms, p99 "
          f"{percentile(latencies, 99) * 1000:.2f} ms, max {latencies[-1] * 1000:.2f} ms; "
          f"outcomes {dict((o.value, n) for o, n in outcomes.items())}")


async def bench_apns(count: int, concurrency: int) -> None:
    server = ApnsLookalike()
    await server.start()
    pusher = ApnsPusher(**server.pusher_kwargs())
    await pusher.start()
    try:
        await drive(pusher, "apns", count, concurrency)
    finally:
        await pusher.close()
        await server.stop()


async def bench_fcm(count: int, concurrency: int, in_process: bool) -> None:
    if in_process:
        server = FcmLookalike()
        await server.start()
        try:
            await bench_fcm_at(server.pusher_kwargs(), count, concurrency)
        finally:
            await server.stop()
        return
    # By default the look-alike runs in a child process: its HTTP server threads would
    # otherwise compete with the pusher's event loop for this process's GIL.
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.push_servers.fcm", cwd=str(ROOT),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    try:
        kwargs = json.loads(await child.stdout.readline())
        await bench_fcm_at(kwargs, count, concurrency)
    finally:
        child.stdin.close()
        await child.wait()


async def bench_fcm_at(kwargs: dict[str, Any], count: int, concurrency: int) -> None:
    pusher = FcmPusher(**kwargs)
    await pusher.start()
    try:
        await drive(pusher, "fcm", count, concurrency)
    finally:
        await pusher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=["apns", "fcm", "both"], default="both")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--fcm-in-process", action="store_true",
                        help="run the FCM look-alike's threads in this process")
    args = parser.parse_args()
    if args.count < 1 or args.concurrency < 1:
        parser.error("--count and --concurrency must be at least 1")
    if args.provider in ("apns", "both"):
        asyncio.run(bench_apns(args.count, args.concurrency))
    if args.provider in ("fcm", "both"):
        asyncio.run(bench_fcm(args.count, args.concurrency, args.fcm_in_process))


if __name__ == "__main__":
    main()
