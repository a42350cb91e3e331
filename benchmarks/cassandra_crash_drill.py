"""Cassandra crash drill: is every acknowledged message still there after a kill -9?

    python benchmarks/cassandra_crash_drill.py --runs 10
    python benchmarks/cassandra_crash_drill.py --runs 3 --commitlog-sync periodic   # the loss
    python benchmarks/cassandra_crash_drill.py --cassandra-dir DIR --runs 1 --json out.json

One `rendezvous serve` node stores in one Cassandra node (started here with
`scripts/cassandra`, or an existing one of `--cassandra-dir` managed by that script). Each run
pairs fresh users, lets `--senders` clients send every `--interval` s, kills Cassandra with
SIGKILL `--kill-after` s in, starts it again `--down` s later, keeps sending until acks have
resumed for `--after` s, then reads every match's whole history and counts the acknowledged
messages that are missing. Sends refused with `unavailable` meanwhile are expected; a missing
acknowledged message is a lost message. Prints a line per run and a summary; exits 1 if any
acknowledged message is missing. The node runs with its send rate limit raised. See
docs/storage.md, "Durability of one node".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from client import RendezvousClient, RendezvousHttp, ServerError, mint_token

REPO = Path(__file__).resolve().parents[1]
SCRIPT = [sys.executable, str(REPO / "scripts" / "cassandra")]
SECRET = "cassandra-crash-drill-secret-0123456789ab"


@dataclass
class RunResult:
    run: int
    acked: int = 0
    refused: int = 0
    missing: int = 0
    acked_before_kill: int = 0
    last_before_kill_kept: bool = True
    first_ack_after_restart_s: float | None = None
    missing_ids: list[int] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cassandra(*args: str) -> None:
    subprocess.run([*SCRIPT, *args], check=True, stdout=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL)


async def start_node(data_dir: str, contact_point: str, keyspace: str) -> tuple[Any, str, str]:
    ws_port, http_port = free_port(), free_port()
    env = {**os.environ, "RENDEZVOUS_JWT_SECRET": SECRET,
           "RENDEZVOUS_CASSANDRA_KEYSPACE": keyspace, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "serve", "--data-dir", data_dir,
        "--ws-port", str(ws_port), "--http-port", str(http_port), "--log-level", "ERROR",
        "--cassandra", contact_point, "--sends-per-s", "100000", "--send-burst", "100000",
        stdout=asyncio.subprocess.PIPE, env=env,
        start_new_session=True)
    assert proc.stdout is not None
    async with asyncio.timeout(120):
        while b"Stop" not in (line := await proc.stdout.readline()):
            if not line:
                raise SystemExit("the node exited during start-up")
    return proc, f"ws://127.0.0.1:{ws_port}/v1/ws", f"http://127.0.0.1:{http_port}"


async def pair(http_url: str, a: str, b: str) -> str:
    async with RendezvousHttp(http_url, mint_token(SECRET, a)) as ha, \
            RendezvousHttp(http_url, mint_token(SECRET, b)) as hb:
        await ha.swipe(b)
        match: str = (await hb.swipe(a))["match"]["id"]
        return match


async def full_history(client: RendezvousClient, match_id: str) -> set[int]:
    ids: set[int] = set()
    before = None
    while True:
        page = await client.history(match_id, before=before, limit=100)
        ids.update(int(m["id"]) for m in page["msgs"])
        if not page["more"] or not page["msgs"]:
            return ids
        before = min(int(m["id"]) for m in page["msgs"])


async def one_run(run: int, args: argparse.Namespace, ws_url: str, http_url: str,
                  cassandra_dir: str) -> RunResult:
    result = RunResult(run)
    tag = f"r{run}{secrets.token_hex(2)}"
    users = [(f"{tag}a{i}", f"{tag}b{i}") for i in range(args.senders)]
    matches = [await pair(http_url, a, b) for a, b in users]
    senders = [await RendezvousClient.connect(ws_url, mint_token(SECRET, a)) for a, _ in users]
    acked: list[tuple[str, int, float]] = []  # (match, id, when)
    killed_at = restarted_at = resumed_at = None
    stop, resumed = asyncio.Event(), asyncio.Event()

    async def send_loop(client: RendezvousClient, match_id: str, n: int) -> None:
        nonlocal resumed_at
        seq = 0
        while not stop.is_set():
            seq += 1
            try:
                ack = await client.send(match_id, f"drill {n}.{seq}", c=f"{tag}-{n}-{seq}")
            except ServerError as error:
                if error.code != "unavailable":
                    raise
                result.refused += 1
                await asyncio.sleep(max(args.interval, 0.05))  # no spinning on refusals
                continue
            else:
                acked.append((match_id, int(ack["id"]), time.monotonic()))
                if restarted_at is not None and resumed_at is None:
                    resumed_at = time.monotonic()
                    resumed.set()
            await asyncio.sleep(args.interval)

    loops = [asyncio.create_task(send_loop(c, m, n))
             for n, (c, m) in enumerate(zip(senders, matches, strict=True))]
    def failed(task: asyncio.Task[None]) -> None:  # a sender's surprise ends the run at once
        if not task.cancelled() and task.exception() is not None:
            stop.set()
            resumed.set()

    for task in loops:
        task.add_done_callback(failed)
    try:
        await asyncio.sleep(args.kill_after)
        await asyncio.to_thread(cassandra, "stop", "--dir", cassandra_dir, "--kill")
        killed_at = time.monotonic()
        await asyncio.sleep(args.down)
        await asyncio.to_thread(cassandra, "start", "--dir", cassandra_dir,
                                "--commitlog-sync", args.commitlog_sync)
        restarted_at = time.monotonic()
        async with asyncio.timeout(90):
            await resumed.wait()
        await asyncio.sleep(args.after)
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
    for task in loops:
        task.result()  # a sender that failed otherwise than `unavailable` fails the drill
    assert resumed_at is not None and restarted_at is not None and killed_at is not None
    result.first_ack_after_restart_s = round(resumed_at - restarted_at, 2)
    readers = [await RendezvousClient.connect(ws_url, mint_token(SECRET, b)) for _, b in users]
    stored = {m: await full_history(r, m) for r, m in zip(readers, matches, strict=True)}
    for client in (*senders, *readers):
        await client.close()
    before_kill = [a for a in acked if a[2] < killed_at]
    result.acked, result.acked_before_kill = len(acked), len(before_kill)
    result.missing_ids = sorted(i for m, i, _ in acked if i not in stored[m])
    result.missing = len(result.missing_ids)
    if before_kill:
        m, last_id, _ = max(before_kill, key=lambda a: a[2])
        result.last_before_kill_kept = last_id in stored[m]
    return result


async def drill(args: argparse.Namespace) -> list[RunResult]:
    workdir = Path(tempfile.mkdtemp(prefix="rdv-drill-"))
    cassandra_dir = args.cassandra_dir
    own = cassandra_dir is None
    if own:
        cassandra_dir = str(workdir / "cassandra")
        print(f"starting Cassandra in {cassandra_dir} (commitlog_sync {args.commitlog_sync})",
              flush=True)
        cassandra("start", "--dir", cassandra_dir, "--port", str(free_port()),
                  "--heap", args.heap, "--commitlog-sync", args.commitlog_sync)
    port = json.loads((Path(cassandra_dir) / "node.json").read_text())["port"]
    keyspace = f"drill_{secrets.token_hex(3)}"
    proc, ws_url, http_url = await start_node(str(workdir / "node"), f"127.0.0.1:{port}",
                                              keyspace)
    results = []
    try:
        for run in range(1, args.runs + 1):
            result = await one_run(run, args, ws_url, http_url, cassandra_dir)
            results.append(result)
            print(f"run {run}: acked {result.acked} ({result.acked_before_kill} before the "
                  f"kill), refused {result.refused}, missing {result.missing}, last acked "
                  f"before the kill {'kept' if result.last_before_kill_kept else 'MISSING'}, "
                  f"acks again {result.first_ack_after_restart_s} s after the restart",
                  flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        if own:
            cassandra("stop", "--dir", cassandra_dir)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Prints figures; exits 1 if an "
        "acknowledged message is missing.")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--senders", type=int, default=16, help="clients sending at once "
                        "(default 16)")
    parser.add_argument("--interval", type=float, default=0.0, help="s between a client's "
                        "ack and its next send (default 0: closed loop)")
    parser.add_argument("--kill-after", type=float, default=5.0, help="s of sending before "
                        "the kill (default 5)")
    parser.add_argument("--down", type=float, default=10.0, help="s Cassandra stays down "
                        "(default 10)")
    parser.add_argument("--after", type=float, default=2.0, help="s of sending once acks "
                        "resumed (default 2)")
    parser.add_argument("--cassandra-dir", help="an existing node of scripts/cassandra to "
                        "kill and restart (default: start one in a temporary directory)")
    parser.add_argument("--commitlog-sync", default="batch",
                        choices=["batch", "group", "periodic"],
                        help="the commit log mode Cassandra (re)starts with (default batch)")
    parser.add_argument("--heap", default="1g", help="JVM heap of a node started here")
    parser.add_argument("--json", help="write the per-run figures here")
    args = parser.parse_args()
    if args.runs < 1 or args.senders < 1 or args.interval < 0:
        parser.error("--runs and --senders must be at least 1, --interval not negative")
    results = asyncio.run(drill(args))
    missing = sum(r.missing for r in results)
    print(f"{len(results)} runs: {sum(r.acked for r in results)} acked, {missing} missing, "
          f"{sum(not r.last_before_kill_kept for r in results)} runs lost the last message "
          "acknowledged before the kill")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
