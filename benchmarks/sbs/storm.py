"""Reconnect storm: a node dies under N clients; how long until all of them are back and synced.

N authenticated clients (N/2 matched pairs, one message exchanged per pair so `sync` has
something to return) hold sockets on node B of two Rendezvous nodes sharing Redis and one
SQLite data dir. B is killed with SIGKILL; each client notices the drop, waits a uniformly
random 0..spread s (as the apps' jitter does), connects to node A and runs `sync`. A client
is back when its `sync` reply lists its conversation. Times run from the kill.

Sockets: a load process holds N/processes of them, so its open-files soft limit is raised
to the hard limit, and each process binds its clients to its own source address
(127.0.0.2, 127.0.0.3, ...): one address has about 28,000 ephemeral ports.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection

from benchmarks.sbs.load import BODY, CONNECT_CONCURRENCY, Worker, open_session
from benchmarks.sbs.procs import (
    RAISED_LIMITS_ENV,
    RAISED_LIMITS_NOTE,
    child_env,
    cpu_seconds,
    percentile_ms,
)
from benchmarks.sbs.profile import Profiler
from benchmarks.sbs.servers import (
    Target,
    match_pairs,
    rdv_node,
    redis,
    redis_url,
    relay,
    users,
)

DEADLINE_S = 90.0
BACKOFF_MAX_S = 8.0  # from the kill: a client not back by then counts as not back


class StormWorker(Worker):
    """A load process for the storm: many idle clients instead of a few busy pairs."""

    clients: list[tuple[str, ClientConnection]]

    async def storm_connect(self, url: str, pairs: list[tuple[int, str]],
                            source: str | None) -> dict[str, Any]:
        """Connect both users of each pair to `url`; the first sends the second a message."""
        began = time.perf_counter()
        self.source = source
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(i: int, match: str) -> list[tuple[str, ClientConnection]]:
            a, b = users(i)
            async with gate:
                wa = await open_session("rdv", url, a, source)
                wb = await open_session("rdv", url, b, source)
                await wa.send(msgpack.packb({"t": "send", "r": 1, "m": match,
                                             "c": f"storm-{i}", "body": BODY}))
                while msgpack.unpackb(await wa.recv()).get("t") not in ("ack", "error"):
                    pass
            return [(a, wa), (b, wb)]

        groups = await asyncio.gather(*(one(i, m) for i, m in pairs))
        self.clients = [c for group in groups for c in group]
        return {"clients": len(self.clients), "connect_s": time.perf_counter() - began}

    async def storm(self, kill_at: float, url: str, spread: float) -> dict[str, Any]:
        """From wall time `kill_at` on: every client waits for its drop, sleeps 0..spread s,
        reconnects to `url` and syncs, retrying failures until the deadline."""
        rng = random.Random()
        deadline = kill_at + DEADLINE_S
        failed = 0
        empty = 0

        async def back(user: str, old: ClientConnection) -> float | None:
            nonlocal failed, empty
            remaining = kill_at + DEADLINE_S / 2 - time.time()
            try:
                async with asyncio.timeout(max(0.1, remaining)):
                    await old.wait_closed()
            except TimeoutError:
                old.transport.abort()
            noticed.append(time.time() - kill_at)
            await asyncio.sleep(rng.uniform(0, spread))
            attempt = 0
            while time.time() < deadline:
                try:
                    t0 = time.time()
                    ws = await open_session("rdv", url, user, self.source, timeout=10)
                    t1 = time.time()
                    try:
                        await ws.send(msgpack.packb({"t": "sync", "r": 1}))
                        while True:
                            frame = msgpack.unpackb(await ws.recv())
                            if frame.get("t") in ("sync", "error") and frame.get("r") == 1:
                                break
                    except BaseException:
                        ws.transport.abort()
                        raise
                    self.clients_back.append((user, ws))
                    if frame.get("t") == "error":
                        raise ConnectionError(str(frame))
                    if not frame.get("convs"):
                        empty += 1  # the relay's always are: it stores nothing
                    spans.append((t1 - t0, time.time() - t1))
                    return time.time() - kill_at
                except Exception as exc:  # any failure is an attempt to count and retry
                    failed += 1
                    reason = f"{type(exc).__name__}: {exc}"[:90]
                    reasons[reason] = reasons.get(reason, 0) + 1
                    attempt += 1  # exponential backoff with jitter, as the apps do
                    await asyncio.sleep(min(BACKOFF_MAX_S, 0.25 * 2 ** attempt)
                                        * rng.uniform(0.5, 1.5))
            return None

        self.clients_back: list[tuple[str, ClientConnection]] = []
        noticed: list[float] = []
        spans: list[tuple[float, float]] = []  # (connect and welcome, sync) of the success
        reasons: dict[str, int] = {}  # why attempts failed
        cpu0 = time.process_time()
        times = await asyncio.gather(*(back(u, ws) for u, ws in self.clients))
        cpu = time.process_time() - cpu0
        for _, ws in self.clients_back:
            ws.transport.abort()
        self.clients = []
        return {"times": [t for t in times if t is not None],
                "not_back": sum(t is None for t in times), "failed_attempts": failed,
                "empty_syncs": empty, "cpu_s": cpu, "noticed": noticed, "spans": spans,
                "reasons": reasons}

    async def disconnect(self) -> dict[str, Any]:
        for _, ws in getattr(self, "clients", []):
            ws.transport.abort()
        self.clients = []
        return await super().disconnect()


def run(pool: Any, clients: int, spread: float, say: Callable[[str], None],
        profile_dir: Path | None = None, server: str = "rdv") -> dict[str, Any]:
    """Start Redis and nodes A and B, connect `clients` to B, kill B, time the way back.
    With `profile_dir`, node A is profiled (py-spy, per-thread CPU) from the kill on.
    `server="relay"` runs the same storm between two bare relays (benchmarks/peers/relay.py:
    no token check, no store, an empty `sync`): the ceiling of the WebSocket layer and of
    the load generator on this machine."""
    workdir = Path(tempfile.mkdtemp(prefix="sbs-storm-"))
    procs = []
    try:
        pairs = clients // 2
        if server == "relay":
            node_a, url_a = relay()
            procs.append(node_a)
            node_b, url_b = relay()
            procs.append(node_b)
            matches = ["|".join(users(i)) for i in range(pairs)]
        else:
            procs.append(redis(workdir))
            env = child_env(**RAISED_LIMITS_ENV)
            env["RENDEZVOUS_REDIS_PREFIX"] = f"storm{uuid.uuid4().hex[:8]}:"
            args = ("--redis-url", redis_url(procs[0]))
            node_a, url_a, http_a = rdv_node(workdir / "data", *args, env=env)
            procs.append(node_a)
            node_b, url_b, _ = rdv_node(workdir / "data", *args, env=env)
            procs.append(node_b)
            say(f"storm: matching {pairs} pairs ...")
            matches = asyncio.run(match_pairs(http_a, range(pairs)))
        n = len(pool.conns)
        say(f"storm: connecting {2 * pairs} clients to {server} B ...")
        connected = pool.call([("storm_connect", url_b,
                                [(i, matches[i]) for i in range(w, pairs, n)], f"127.0.0.{2 + w}")
                               for w in range(n)])
        kill_at = time.time() + 1.0
        pool.send([("storm", kill_at, url_a, spread)] * n)
        time.sleep(max(0.0, kill_at - time.time()))
        cpu_a0 = cpu_seconds([node_a.pid])
        profiler = None
        if profile_dir is not None:
            profiler = Profiler(profile_dir, f"storm{clients}", Target(
                "storm", "rdv", url_a, url_a, [], procs=[node_a]))
            profiler.begin(spread + 10)
        node_b.kill()
        say(f"storm: node B killed; {2 * pairs} clients reconnecting to A over {spread:g} s")
        parts = pool.gather(timeout=DEADLINE_S + 60)
        cpu_a = cpu_seconds([node_a.pid]) - cpu_a0
        if profiler is not None:
            say(profiler.describe(profiler.end()))
        times = sorted(t for p in parts for t in p["times"])
        noticed = sorted(t for p in parts for t in p["noticed"])
        connects = sorted(c for p in parts for c, _ in p["spans"])
        syncs = sorted(s for p in parts for _, s in p["spans"])
        return {
            "server": server, "clients": sum(c["clients"] for c in connected), "spread_s": spread,
            "back": len(times), "not_back": sum(p["not_back"] for p in parts),
            "failed_attempts": sum(p["failed_attempts"] for p in parts),
            "empty_syncs": sum(p["empty_syncs"] for p in parts),
            "p50_s": percentile_ms(times, 0.5) / 1000, "p99_s": percentile_ms(times, 0.99) / 1000,
            "max_s": times[-1] if times else None,
            "drop_noticed_p50_s": percentile_ms(noticed, 0.5) / 1000,
            "drop_noticed_max_s": noticed[-1] if noticed else None,
            "connect_p50_ms": percentile_ms(connects, 0.5),
            "connect_p99_ms": percentile_ms(connects, 0.99),
            "sync_p50_ms": percentile_ms(syncs, 0.5), "sync_p99_ms": percentile_ms(syncs, 0.99),
            "connect_s": max(c["connect_s"] for c in connected),
            "node_a_cpu_s": cpu_a, "load_cpu_s": sum(p["cpu_s"] for p in parts),
            "load_processes": n, "rate_limits": RAISED_LIMITS_NOTE,
            "failure_reasons": _merge(p["reasons"] for p in parts),
            "node_a_log_tail": [line.strip()[:300] for line in node_a.output[-10:]],
        }
    finally:
        pool.broadcast("disconnect")
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _merge(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in counts:
        for key, n in part.items():
            out[key] = out.get(key, 0) + n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def describe(r: dict[str, Any]) -> str:
    top = "-" if r["max_s"] is None else f"{r['max_s']:.2f}"
    return (f"storm ({r.get('server', 'rdv')}): {r['clients']} clients on node B, SIGKILL, "
            f"reconnect to node A after 0-{r['spread_s']:g} s, then sync\n"
            f"  back and synced: {r['back']}/{r['clients']} (not back: {r['not_back']}, "
            f"empty syncs: {r['empty_syncs']}, failed attempts: {r['failed_attempts']})\n"
            f"  from the kill: p50 {r['p50_s']:.2f} s, p99 {r['p99_s']:.2f} s, max {top} s\n"
            f"  drop noticed p50 {r['drop_noticed_p50_s'] * 1000:.0f} ms; successful attempt: "
            f"connect+welcome p50 {r['connect_p50_ms']:.0f} / p99 {r['connect_p99_ms']:.0f} ms, "
            f"sync p50 {r['sync_p50_ms']:.0f} / p99 {r['sync_p99_ms']:.0f} ms\n"
            f"  node A CPU during the storm: {r['node_a_cpu_s']:.1f} s; load generator "
            f"{r['load_processes']} processes, {r['load_cpu_s']:.1f} CPU s; initial connect "
            f"took {r['connect_s']:.1f} s"
            + "".join(f"\n  failed: {n} x {why}" for why, n in
                      list(r["failure_reasons"].items())[:5]))
