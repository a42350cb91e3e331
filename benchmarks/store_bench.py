"""How fast a `Store` acknowledges messages (the durable write on the hot path), and how fast
it answers the reads of `history` and `sync` meanwhile idle.

    python benchmarks/store_bench.py --backend sqlite --messages 20000 --concurrency 200
    python benchmarks/store_bench.py --backend cassandra --cassandra 127.0.0.1:9042
    python benchmarks/store_bench.py --backend cassandra --processes 2   # summed
    python benchmarks/store_bench.py --backend cassandra --mode read --concurrency 100

Write mode: `--concurrency` senders each save one message at a time, as sessions on a node
do; ids come from one `IdGenerator` per process, assigned when a save starts. Each save
passes what `ChatService.send` passes in a cluster: the match's members and `claimed=True`
(a won Redis send claim); `--unclaimed` measures the embedded or Redis-down path, which
reads the idempotency key first. Prints writes per second and the latency of
`save_message` from call to acknowledgement.

Read mode: seeds `--read-matches` matches (each user in several) with `--seed-messages`
messages each, checks that history and sync return exactly what was stored, then
`--concurrency` readers in closed loop alternate a history page and a sync (conversations,
then per changed match its cursors, messages_after up to the conversation's newest id and,
when the page does not hold it, count_unread, as `ChatService.sync` does) for `--seconds`.
Prints operations per second, latency per kind and (Cassandra) requests per read.

`--processes N` runs N copies at once (each its own store and keyspace, as `--workers N`
nodes have), starts them together once all are set up, and sums what they did.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from protocol.ids import IdGenerator
from storage.base import Conversation, MatchRecord, Message, Store, match_id_for
from storage.sqlite import SqliteStore


def _sqlite(args: argparse.Namespace, workdir: Path) -> Store:
    return SqliteStore(Path(args.path or workdir / "bench.db"), synchronous=args.synchronous,
                       max_batch=args.max_batch)


def _cassandra(args: argparse.Namespace, workdir: Path) -> Store:
    from storage.cassandra import CassandraStore

    options = {} if args.partitions_per_batch is None else {
        "partitions_per_batch": args.partitions_per_batch}
    return CassandraStore(args.cassandra.split(","), keyspace=f"bench_{os.getpid()}",
                          **options)


BACKENDS: dict[str, Callable[[argparse.Namespace, Path], Store]] = {
    "sqlite": _sqlite, "cassandra": _cassandra}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_line(name: str, seconds: list[float]) -> str:
    ms = sorted(x * 1000 for x in seconds)
    if not ms:
        return f"{name}: none"
    return (f"{name} ms: p50 {percentile(ms, 50):.2f}  p99 {percentile(ms, 99):.2f}  "
            f"max {ms[-1]:.2f}")


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU of another process so far (0 without a pid)."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_for_go(args: argparse.Namespace) -> None:
    """Under `--processes`: say ready, then start when the parent says go."""
    if args.child:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def create_matches(store: Store, pairs: list[tuple[str, str]]) -> list[MatchRecord]:
    now = int(time.time() * 1000)
    made = []
    for a, b in pairs:
        lo, hi = sorted((a, b))
        made.append((await store.create_match(MatchRecord(match_id_for(a, b), (lo, hi),
                                                          now)))[0])
    return made


# -- write mode ---------------------------------------------------------------------------
async def write_run(args: argparse.Namespace, store: Store) -> dict[str, Any]:
    matches = await create_matches(store, [(f"u{2 * i}", f"u{2 * i + 1}")
                                           for i in range(args.matches)])
    ids = IdGenerator(node=1 + os.getpid() % 1000)
    counter = itertools.count()
    latencies: list[float] = []
    claimed = not args.unclaimed

    async def sender() -> None:
        while (n := next(counter)) < args.messages:
            match = matches[n % len(matches)]
            ms = int(time.time() * 1000)
            message = Message(match.id, ids.next(ms), match.users[n % 2], f"c{n}", ms,
                              "x" * args.body_bytes)
            started = time.perf_counter()
            await store.save_message(message, claimed=claimed, members=match.users)
            latencies.append(time.perf_counter() - started)

    await wait_for_go(args)
    batches_before = getattr(getattr(store, "engine", None), "batches", None)
    wakes_before = getattr(getattr(store, "_bridge", None), "wakes", None)
    requests_before = getattr(getattr(store, "_batcher", None), "batches", None)
    begun, started = time.time(), time.perf_counter()
    cpu, server_cpu = time.process_time(), cpu_seconds(args.server_pid)
    await asyncio.gather(*(sender() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"messages": args.messages, "elapsed": elapsed, "begun": begun,
                              "ended": begun + elapsed, "latencies": latencies,
                              "cpu": time.process_time() - cpu,
                              "server_cpu": cpu_seconds(args.server_pid) - server_cpu}
    batches_after = getattr(getattr(store, "engine", None), "batches", None)
    if batches_before is not None and batches_after is not None:
        result["commits"] = batches_after - batches_before
    wakes_after = getattr(getattr(store, "_bridge", None), "wakes", None)
    if wakes_before is not None and wakes_after is not None:
        result["wakes"] = wakes_after - wakes_before
    requests_after = getattr(getattr(store, "_batcher", None), "batches", None)
    if requests_before is not None and requests_after is not None:
        result["requests"] = requests_after - requests_before
    return result


def write_report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    total = sum(r["messages"] for r in results)
    span = max(r["ended"] for r in results) - min(r["begun"] for r in results)
    print(f"backend={args.backend} synchronous={args.synchronous} messages={total} "
          f"concurrency={args.concurrency} body={args.body_bytes}B processes={len(results)} "
          f"{'unclaimed' if args.unclaimed else 'claimed'}")
    if len(results) > 1:
        each = ", ".join(f"{r['messages'] / r['elapsed']:,.0f}" for r in results)
        print(f"writes/s: {total / span:,.0f} together ({span:.2f} s; each: {each})")
    else:
        print(f"writes/s: {total / span:,.0f}  ({span:.2f} s)")
    print(latency_line("save latency", [x for r in results for x in r["latencies"]]))
    cpu = sum(r["cpu"] for r in results)
    line = f"cpu per write: this process {cpu / total * 1e6:,.0f} us"
    if args.server_pid:
        line += f", server {sum(r['server_cpu'] for r in results) / total * 1e6:,.0f} us"
    print(line + "  (less noisy than writes/s on a shared machine)")
    if "commits" in results[0]:
        groups = sum(r["commits"] for r in results)
        print(f"commits: {groups}  mean group size {total / max(groups, 1):.1f}")
    if "wakes" in results[0]:
        wakes = sum(r["wakes"] for r in results)
        print(f"loop wakes: {wakes}  messages per wake {total / max(wakes, 1):.1f}")
    if "requests" in results[0]:
        requests = sum(r["requests"] for r in results)
        print(f"write batches: {requests}  messages per batch {total / max(requests, 1):.1f}")


# -- read mode ----------------------------------------------------------------------------
async def sync_like(store: Store, user: str, after: int, cap: int = 200) -> int:
    """What `ChatService.sync` asks the store: the messages it would return. Per changed
    match, at most 16 at once: the cursors and the messages after `after` up to the
    conversation's newest id, then an unread count only if the page does not hold it."""
    convs = await store.conversations(user)
    changed = [c for c in convs if c.last_id > after]
    gate = asyncio.Semaphore(16)

    async def one(c: Conversation) -> int:
        async with gate:
            cursors, page = await asyncio.gather(
                store.cursors(c.match_id),
                store.messages_after(c.match_id, after, cap + 1, newest=c.last_id))
            mine = cursors.get(user)
            read_id = mine.read_id if mine else 0
            if c.last_id > read_id and (read_id < after or len(page) > cap):
                await store.count_unread(c.match_id, user, read_id, newest=c.last_id)
            return len(page)

    return min(cap, sum(await asyncio.gather(*(one(c) for c in changed))))


async def read_run(args: argparse.Namespace, store: Store) -> dict[str, Any]:
    users = [f"r{i}" for i in range(args.read_matches // 3)]
    pairs = [(users[i], users[(i + k) % len(users)]) for i in range(len(users))
             for k in (1, 2, 3)]
    matches = await create_matches(store, pairs)
    ids = IdGenerator(node=1 + os.getpid() % 1000)
    sent: dict[str, list[Message]] = {m.id: [] for m in matches}
    for round_ in range(args.seed_messages):  # a few matches at a time, ids in order
        batch = []
        for n, match in enumerate(matches):
            ms = int(time.time() * 1000)
            sender = match.users[(round_ + n) % 2]
            batch.append(Message(match.id, ids.next(ms), sender, f"s{round_}-{n}", ms,
                                 "y" * args.body_bytes))
        await asyncio.gather(*(store.save_message(m, members=matches[i].users)
                               for i, m in enumerate(batch)))
        for m in batch:
            sent[m.match_id].append(m)
        if round_ == args.seed_messages // 2:
            for m in matches:
                await store.advance_cursor(m.id, m.users[0], "read", sent[m.id][-1].id)
    middle = {m.id: sent[m.id][len(sent[m.id]) // 2].id for m in matches}
    after = min(middle.values())
    for match in matches[:20]:  # correct before fast
        page, more = await store.history(match.id, None, 50)
        assert page == sent[match.id][::-1][:50], match.id
        assert more == (len(sent[match.id]) > 50)
    for user in users[:10]:
        expect = sum(len([m for m in sent[match.id] if m.id > after]) for match in matches
                     if user in match.users)
        assert await sync_like(store, user, after) == min(200, expect), user

    counter = itertools.count()
    history_s: list[float] = []
    sync_s: list[float] = []
    await wait_for_go(args)
    deadline = time.perf_counter() + args.seconds

    async def reader() -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            started = time.perf_counter()
            if n % 2:
                await store.history(matches[n % len(matches)].id, None, 50)
                history_s.append(time.perf_counter() - started)
            else:
                await sync_like(store, users[n % len(users)], after)
                sync_s.append(time.perf_counter() - started)

    bridge = getattr(store, "_bridge", None)
    sent_before = getattr(bridge, "sent", None)
    begun, started = time.time(), time.perf_counter()
    cpu, server_cpu = time.process_time(), cpu_seconds(args.server_pid)
    await asyncio.gather(*(reader() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"elapsed": elapsed, "begun": begun, "ended": begun + elapsed,
                              "history": history_s, "sync": sync_s,
                              "cpu": time.process_time() - cpu,
                              "server_cpu": cpu_seconds(args.server_pid) - server_cpu}
    if sent_before is not None:
        result["requests"] = bridge.sent - sent_before
    return result


def read_report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    span = max(r["ended"] for r in results) - min(r["begun"] for r in results)
    history = [x for r in results for x in r["history"]]
    sync = [x for r in results for x in r["sync"]]
    print(f"backend={args.backend} mode=read readers={args.concurrency} "
          f"processes={len(results)} matches={args.read_matches // 3 * 3} "
          f"messages/match={args.seed_messages}")
    print(f"reads/s: history {len(history) / span:,.0f}  sync {len(sync) / span:,.0f}  "
          f"({span:.2f} s)")
    print(latency_line("history", history))
    print(latency_line("sync", sync))
    ops = len(history) + len(sync)
    cpu = sum(r["cpu"] for r in results)
    line = f"cpu per read (history or sync): this process {cpu / ops * 1e6:,.0f} us"
    if args.server_pid:
        line += f", server {sum(r['server_cpu'] for r in results) / ops * 1e6:,.0f} us"
    print(line)
    if "requests" in results[0]:
        print(f"requests per read: {sum(r['requests'] for r in results) / ops:.1f}")


# -- running ------------------------------------------------------------------------------
async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    store = BACKENDS[args.backend](args, workdir)
    await store.start()
    try:
        return await (read_run if args.mode == "read" else write_run)(args, store)
    finally:
        await store.close()


def run_processes(args: argparse.Namespace, argv: list[str]) -> list[dict[str, Any]]:
    """N children of this script at once; each reports its result as one JSON line."""
    children = [subprocess.Popen([sys.executable, __file__, *argv, "--child"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                for _ in range(args.processes)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    server_cpu = cpu_seconds(args.server_pid)
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"a bench process failed ({child.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    for result in results:  # the server's CPU once, over the whole run, not per child
        result["server_cpu"] = (cpu_seconds(args.server_pid) - server_cpu) / len(results)
    return results


def without_option(argv: list[str], name: str) -> list[str]:
    """`argv` without `name VALUE` or `name=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    parser.add_argument("--mode", choices=("write", "read"), default="write")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--matches", type=int, default=1_000)
    parser.add_argument("--body-bytes", type=int, default=64)
    parser.add_argument("--unclaimed", action="store_true",
                        help="save without a claim: the store reads the idempotency key")
    parser.add_argument("--read-matches", type=int, default=300)
    parser.add_argument("--seed-messages", type=int, default=40,
                        help="messages per match stored before the read mode measures")
    parser.add_argument("--seconds", type=float, default=8.0, help="read mode duration")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--server-pid", type=int, help="also report this process's CPU per "
                        "write (the Cassandra node's java, for instance)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help="database file (default: a fresh temporary one)")
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--partitions-per-batch", type=int,
                        help="most partitions one Cassandra batch touches (default: the "
                        "store's)")
    parser.add_argument("--cassandra", default="127.0.0.1:9042",
                        help="contact points for --backend cassandra (a fresh keyspace)")
    args = parser.parse_args(argv)
    if args.processes > 1:
        if args.backend == "sqlite" and args.path:
            raise SystemExit("--processes with sqlite needs a file each: leave --path out")
        results = run_processes(args, without_option(argv, "--processes"))
    else:
        with tempfile.TemporaryDirectory(prefix="store-bench-",
                                         dir=os.environ.get("TMPDIR")) as d:
            results = [asyncio.run(run(args, Path(d)))]
        if args.child:
            print(json.dumps(results[0]), flush=True)
            return
    (read_report if args.mode == "read" else write_report)(args, results)


if __name__ == "__main__":
    main()
