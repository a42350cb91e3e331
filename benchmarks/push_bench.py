"""How many notifications per second ApnsPusher and FcmPusher hand to a provider, and a
kill -9 drill of the durable push queue.

    python benchmarks/push_bench.py --provider both --count 5000 --concurrency 100
    python benchmarks/push_bench.py --drill --count 3000

Runs the real aioapns and firebase-admin against the local look-alikes of tests/push_servers
(APNS: HTTP/2 over TLS; FCM: HTTP/2 over TLS for sends, its OAuth token endpoint over HTTP),
each in a child process (`python -m tests.push_servers.serve`), so the figures measure the
adapters and libraries on one event loop (uvloop, as a node runs), not Apple or Google and
not the look-alikes. `--concurrency` sends are in flight at once, as the dispatcher's
per-provider cap allows. Prints sends per second, the p50/p99 latency of one `send`, and
the CPU this process used per 1,000 pushes (user + system).

`--drill`: a real redis-server, two node processes (`rendezvous serve` with Redis) and the
two look-alikes; `--count` push jobs (half to iOS devices, half to Android ones) are queued
in the nodes' Redis Stream, one node is SIGKILLed mid-burst, and the look-alikes' accepted
requests are counted per notification: every one must arrive (0 missing). A duplicate is
allowed only where the provider had accepted the push before the kill (the dead node could
not mark it sent), and then carries the same collapse id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from push.apns import ApnsPusher
from push.base import Notification, Outcome, Pusher
from push.fcm import FcmPusher
from storage import Device
from storage.base import Platform

ROOT = Path(__file__).resolve().parents[1]


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def notification(i: int) -> Notification:
    return Notification(push_id=f"msg:m{i % 97}:{i}:bench", kind="message",
                        match_id=f"m{i % 97}", loc_key="rdv.message.new",
                        collapse_id=f"m:m{i % 97}", badge=i % 9,
                        data={"t": "msg", "m": f"m{i % 97}", "id": str(i)})


class Lookalike:
    """A look-alike in a child process (tests/push_servers/serve.py)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.proc: asyncio.subprocess.Process | None = None
        self.pusher_kwargs: dict[str, Any] = {}
        self.env: dict[str, str] = {}

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.push_servers.serve", self.kind, cwd=str(ROOT),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 26)
        assert self.proc.stdout is not None
        hello = json.loads(await self.proc.stdout.readline())
        self.pusher_kwargs, self.env = hello["pusher"], hello["env"]

    async def command(self, line: str) -> Any:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        return json.loads(await self.proc.stdout.readline())

    async def stop(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def lookalike(kind: str) -> AsyncIterator[Lookalike]:
    server = Lookalike(kind)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def drive(pusher: Pusher, platform: Platform, count: int, concurrency: int,
                server: Lookalike) -> None:
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

    # warm up: connections, the access token, the library's first-call costs
    await asyncio.gather(*(pusher.send(Device("warm", f"{i:064x}", platform), notification(-i))
                           for i in range(1, concurrency + 1)))
    cpu, server_cpu = cpu_seconds(), await server.command("cpu")
    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu, server_cpu = cpu_seconds() - cpu, await server.command("cpu") - server_cpu
    latencies.sort()
    print(f"{pusher.provider}: {count} sends, concurrency {concurrency}: "
          f"{count / elapsed:,.0f}/s in {elapsed:.2f} s; per send p50 "
          f"{percentile(latencies, 50) * 1000:.2f} ms, p99 "
          f"{percentile(latencies, 99) * 1000:.2f} ms, max {latencies[-1] * 1000:.2f} ms; "
          f"CPU {cpu / count * 1000 * 1000:.0f} ms per 1,000 pushes (look-alike "
          f"{server_cpu / count * 1000 * 1000:.0f} ms); "
          f"outcomes {dict((o.value, n) for o, n in outcomes.items())}", flush=True)


async def bench_apns(count: int, concurrency: int) -> None:
    async with lookalike("apns") as server:
        pusher = ApnsPusher(**server.pusher_kwargs)
        await pusher.start()
        try:
            await drive(pusher, "apns", count, concurrency, server)
        finally:
            await pusher.close()


async def bench_fcm(count: int, concurrency: int) -> None:
    async with lookalike("fcm") as server:
        os.environ.update(server.env)  # trust its CA: httpx reads SSL_CERT_FILE
        pusher = FcmPusher(**server.pusher_kwargs)
        await pusher.start()
        try:
            await drive(pusher, "fcm", count, concurrency, server)
        finally:
            await pusher.close()


# -- the kill -9 drill -----------------------------------------------------------------------

DRILL_IOS = "d0e1f2a3"  # iOS tokens: this, then the user's number, 64 hex characters
DRILL_ANDROID = "fcm-drill:APA91bH-"


def drill_device(i: int) -> Device:
    if i % 2 == 0:
        return Device(user=f"u{i}", token=f"{DRILL_IOS}{i:056x}", platform="apns")
    return Device(user=f"u{i}", token=f"{DRILL_ANDROID}{i:08d}", platform="fcm")


def drill_env(workdir: Path, redis_url: str, apns: Lookalike, fcm: Lookalike,
              workers: int) -> dict[str, str]:
    from tests.node_process import SECRET, env_without_secret

    key_file = workdir / "AuthKey.p8"
    key_file.write_text(apns.pusher_kwargs["key_pem"])
    account_file = workdir / "firebase-sa.json"
    account_file.write_text(json.dumps(fcm.pusher_kwargs["service_account"]))
    a = apns.pusher_kwargs
    return {**env_without_secret(), **fcm.env, "RENDEZVOUS_JWT_SECRET": SECRET,
            "RENDEZVOUS_APNS_TOPIC": a["topic"], "RENDEZVOUS_APNS_KEY_FILE": str(key_file),
            "RENDEZVOUS_APNS_KEY_ID": a["key_id"], "RENDEZVOUS_APNS_TEAM_ID": a["team_id"],
            "RENDEZVOUS_APNS_SERVER": a["server"], "RENDEZVOUS_APNS_CA_FILE": a["ca_file"],
            "RENDEZVOUS_FCM_SERVICE_ACCOUNT_FILE": str(account_file),
            "RENDEZVOUS_FCM_URL": fcm.pusher_kwargs["fcm_url"],
            "RENDEZVOUS_PUSH_CLAIM_IDLE_S": "1.5", "RENDEZVOUS_PUSH_COALESCE_S": "0",
            "RENDEZVOUS_PUSH_WORKERS": str(workers), "RENDEZVOUS_REDIS_URL": redis_url}


async def accepted(apns: Lookalike, fcm: Lookalike) -> list[list[Any]]:
    """[token, id, collapse id, status, time] of every request either look-alike got."""
    return [*await apns.command("requests"), *await fcm.command("requests")]


async def drill(count: int, kill_after: float, workers: int = 64) -> None:
    """Two nodes on one Redis work off `count` push jobs; one is SIGKILLed mid-burst."""
    import signal
    import tempfile

    from redis.asyncio import Redis

    from push.apns import apns_id
    from push.payload import message_notification
    from push.queue import PushJob, pack_job
    from push.recorder import token_id
    from storage import Message
    from storage.sqlite import SqliteStore
    from tests.node_process import NodeProcess
    from tests.redis_servers import RedisServer

    workdir = Path(tempfile.mkdtemp(prefix="rdv-push-drill-"))
    redis_server = RedisServer(workdir / "redis")
    await asyncio.to_thread(redis_server.start)
    nodes: list[NodeProcess] = []
    try:
        async with lookalike("apns") as apns, lookalike("fcm") as fcm:
            data = workdir / "data"
            data.mkdir()
            store = SqliteStore(data / "rendezvous.db")  # the nodes' shared store
            await store.start()
            devices = [drill_device(i) for i in range(count)]
            for device in devices:
                await store.put_device(device)
            await store.close()
            # what each job must produce: (token, id) -> (collapse id)
            expected: dict[tuple[str, str], str] = {}
            jobs = []
            for i, device in enumerate(devices):
                message = Message(match_id=f"m{i % 50}", id=i + 1, sender="drill",
                                  client_id="", ts=1)
                note = message_notification(message, token_id(device.token), False)
                key = apns_id(note.push_id) if device.platform == "apns" else str(i + 1)
                expected[(device.token, key)] = note.collapse_id or ""
                jobs.append(pack_job(PushJob.for_message(device.user, message)))
            env = drill_env(workdir, redis_server.url, apns, fcm, workers)
            for name in ("doomed", "survivor"):
                node = NodeProcess(data, "--redis-url", redis_server.url, "--node-name", name,
                                   env=env)
                await node.start()
                nodes.append(node)
            doomed = nodes[0]
            client = Redis.from_url(redis_server.url)
            started = time.perf_counter()
            async with client.pipeline(transaction=False) as pipe:
                for data_ in jobs:
                    pipe.xadd("rdv:{push}:jobs", {"j": data_})
                await pipe.execute()
            await client.aclose()
            queued_s = time.perf_counter() - started
            while True:  # the burst is under way: kill one node mid-way
                before = await apns.command("count") + await fcm.command("count")
                if before >= kill_after * count:
                    break
                await asyncio.sleep(0.02)
            kill_s = time.perf_counter() - started
            await doomed.stop(signal.SIGKILL)
            killed_at = time.time()  # reaped: nothing it sent can be accepted after this
            deadline = time.perf_counter() + 60
            seen: dict[tuple[str, str], list[list[Any]]] = {}
            while time.perf_counter() < deadline:
                if await apns.command("count") + await fcm.command("count") >= count:
                    seen = {}
                    for row in await accepted(apns, fcm):
                        if row[3] == 200:
                            seen.setdefault((row[0], row[1]), []).append(row)
                    if len(seen.keys() & expected.keys()) == len(expected):
                        break
                await asyncio.sleep(0.1)
            done_s = time.perf_counter() - started
            await asyncio.sleep(2.0)  # let late duplicates show
            rows = await accepted(apns, fcm)
            seen = {}
            for row in rows:
                if row[3] == 200:
                    seen.setdefault((row[0], row[1]), []).append(row)
            missing = expected.keys() - seen.keys()
            unexpected = seen.keys() - expected.keys()
            duplicates = {k: v for k, v in seen.items() if len(v) > 1}
            # A second copy is allowed only for a push the provider had accepted before the
            # kill (the dead node could not mark it sent), with the same collapse id.
            # the first copy from the dead node, the second from the survivor, after the kill
            late = [k for k, v in duplicates.items()
                    if v[0][4] > killed_at or v[1][4] <= killed_at]
            other_collapse = [k for k, v in duplicates.items()
                              if any(r[2] != expected.get(k) for r in v)]
            more = [k for k, v in duplicates.items() if len(v) > 2]
            bad = {*late, *other_collapse, *more}
            not_accepted = [r for r in rows if r[3] != 200]
    finally:
        for node in nodes:
            if node.running:
                await node.stop(signal.SIGKILL)
        await asyncio.to_thread(redis_server.stop, True)
    print(f"drill: {count} pushes ({count - count // 2} APNS, {count // 2} FCM), "
          f"{workers} workers a node, two nodes; queued in {queued_s:.2f} s; "
          f"killed one after {kill_s:.2f} s with {before} accepted "
          f"({before / kill_s:,.0f}/s for the pair); all accepted after {done_s:.2f} s")
    print(f"drill: missing {len(missing)}, unexpected {len(unexpected)}, duplicates "
          f"{len(duplicates)} (all first accepted before the kill, same collapse id: "
          f"{'yes' if not bad else 'NO'}), answers other than 200: {len(not_accepted)}",
          flush=True)
    if bad:
        print(f"drill: FAILED: {len(late)} not first accepted before the kill and again after, "
              f"{len(other_collapse)} with another collapse id, {len(more)} sent 3+ times",
              flush=True)


def run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=["apns", "fcm", "both"], default="both")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--drill", action="store_true",
                        help="kill -9 drill: two nodes on Redis, one killed mid-burst")
    parser.add_argument("--kill-after", type=float, default=0.3,
                        help="drill: kill once this share of the pushes was accepted")
    parser.add_argument("--workers", type=int, default=64,
                        help="drill: push_workers of each node (jobs handled at once)")
    args = parser.parse_args()
    if args.count < 1 or args.concurrency < 1:
        parser.error("--count and --concurrency must be at least 1")
    print(load(), flush=True)
    if args.drill:
        run(drill(args.count, args.kill_after, args.workers))
        return
    if args.provider in ("apns", "both"):
        run(bench_apns(args.count, args.concurrency))
    if args.provider in ("fcm", "both"):
        run(bench_fcm(args.count, args.concurrency))
    print(load(), flush=True)


if __name__ == "__main__":
    main()
