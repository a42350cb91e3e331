"""Fuzz a running node with mutated frames of both subprotocols while a control pair chats.

    python benchmarks/fuzz_soak.py                      # starts its own node, 200,000 frames
    python benchmarks/fuzz_soak.py --frames 20000 --seed 7
    python benchmarks/fuzz_soak.py --url ws://10.0.0.5:8080/v1/ws --http-url http://10.0.0.5:8081 \\
        --secret "$RENDEZVOUS_JWT_SECRET" --log node.log --pid 1234

Fuzz sockets (half rdv.v1.msgpack, half rdv.v1.json) send frames from
`benchmarks/fuzz_frames.py` (valid frames of every type, then fields dropped, retyped,
inflated, nested, bytes flipped or cut) and read everything back; every frame that still
carries its integer `r` must be answered with that `r` exactly once. Meanwhile a control
pair sends each other messages and checks that every acked one arrives. At the end it
prints: frames sent, crashes (node exits), tracebacks in the node log, frames with `r`
unanswered, control messages lost, node RSS before and after, and the close codes seen.
Progress goes to stderr. Not part of the test suite (tests/benchmarks/test_fuzz_soak.py
runs it tiny). A node it starts has its frame and send limits raised, so the fuzzing is
not just rate limited; against --url the node's own limits apply.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.fuzz_frames import Mutator
from benchmarks.sbs.procs import RAISED_LIMITS_ENV, SECRET, child_env, free_port, node_command
from client import RendezvousClient, RendezvousHttp, mint_token
from protocol.codec import codec_for

WINDOW = 256  # frames with `r` in flight per fuzz socket
SETTLE_S = 3.0  # after the last frame: time for the last answers
STALL_S = 15.0  # a full window with no answer for this long: the socket is stuck


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Stats:
    def __init__(self) -> None:
        self.sent = 0
        self.tracked = 0
        self.unanswered = 0  # on sockets that stayed open to the end
        self.unanswered_by: Counter[str] = Counter()  # ... by the frame's `t`
        self.dropped_with_socket = 0  # pending when the server closed that socket
        self.duplicates = 0
        self.closes: Counter[int | None] = Counter()
        self.internal = 0  # `internal` error frames
        self.reconnects = 0
        self.stalls = 0


class FuzzSocket:
    """One fuzz connection, reconnected when the server closes it."""

    def __init__(self, url: str, token: str, subprotocol: str, mutator: Mutator,
                 stats: Stats) -> None:
        self.url, self.token, self.subprotocol = url, token, subprotocol
        self.mutator, self.stats = mutator, stats
        self.codec = codec_for(subprotocol)
        self.pending: dict[int, str] = {}  # r -> t
        self.answered: set[int] = set()
        self.room = asyncio.Semaphore(WINDOW)

    async def _open(self) -> ClientConnection:
        ws = await connect(self.url, subprotocols=[self.subprotocol],  # type: ignore[list-item]
                           additional_headers={"Authorization": f"Bearer {self.token}"},
                           max_size=None, compression=None, open_timeout=10)
        welcome = self.codec.decode(await ws.recv())
        if welcome.get("t") != "welcome":
            raise RuntimeError(f"no welcome: {welcome}")
        return ws

    async def run(self, frames: int) -> None:
        done = 0
        while done < frames:
            ws = await self._open()
            reader = asyncio.create_task(self._read(ws))
            try:
                while done < frames:
                    data, r, t = self.mutator.frame()
                    if r is not None:
                        try:
                            async with asyncio.timeout(STALL_S):
                                await self.room.acquire()
                        except TimeoutError:
                            self._stalled()
                            raise ConnectionClosed(None, None) from None
                        if reader.done():  # closed by the server: the reader let us go
                            raise ConnectionClosed(None, None)
                        self.pending[r] = t
                        self.stats.tracked += 1
                    await ws.send(data)
                    done += 1
                    self.stats.sent += 1
                deadline = time.monotonic() + SETTLE_S  # the last answers
                while self.pending and not reader.done() and time.monotonic() < deadline:
                    await asyncio.wait((reader,), timeout=0.05)
                if reader.done():  # the server closed this socket meanwhile
                    raise ConnectionClosed(None, None)
                if self.pending and os.environ.get("FUZZ_SOAK_DEBUG"):
                    print("unanswered:", list(self.pending.items())[:5], file=sys.stderr)
                self.stats.unanswered += len(self.pending)
                self.stats.unanswered_by.update(self.pending.values())
                self.pending.clear()
                await ws.close()
                return
            except ConnectionClosed:
                pass
            finally:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
            self.stats.closes[ws.close_code] += 1
            self.stats.dropped_with_socket += len(self.pending)
            self.pending.clear()
            self.room = asyncio.Semaphore(WINDOW)  # the reader's wake-ups overfilled it
            self.stats.reconnects += 1

    def _stalled(self) -> None:
        """No answer for STALL_S with the window full on an open socket: what is pending
        is unanswered."""
        print(f"stalled socket ({self.subprotocol}): the server stopped answering; pending "
              f"{sorted(self.pending.items())[:5]}", file=sys.stderr, flush=True)
        self.stats.stalls += 1
        self.stats.unanswered += len(self.pending)
        self.stats.unanswered_by.update(self.pending.values())
        for _ in self.pending:
            self.room.release()
        self.pending.clear()

    async def _read(self, ws: ClientConnection) -> None:
        try:
            await self._read_all(ws)
        finally:
            for _ in range(WINDOW):  # wake a sender waiting for room: the socket is gone
                self.room.release()

    async def _read_all(self, ws: ClientConnection) -> None:
        async for data in ws:
            try:
                frame = self.codec.decode(data)
            except Exception:
                continue
            r = frame.get("r")
            if frame.get("code") == "internal":
                self.stats.internal += 1
            if isinstance(r, str) and r.isdigit():
                r = int(r)
            if isinstance(r, int) and r in self.pending:
                del self.pending[r]
                self.answered.add(r)
                self.room.release()
            elif isinstance(r, int) and r in self.answered and r not in self.mutator.foreign:
                self.stats.duplicates += 1
                if os.environ.get("FUZZ_SOAK_DEBUG"):
                    print("answered twice:", frame, file=sys.stderr)


async def control_pair(url: str, http: str, secret: str, stop: asyncio.Event,
                       tag: str) -> tuple[int, int]:
    """Alternate messages between two matched users until `stop`; (acked, lost)."""
    a, b = f"ctl-a-{tag}", f"ctl-b-{tag}"
    apis = [RendezvousHttp(http, mint_token(secret, u)) for u in (a, b)]
    try:
        await apis[0].swipe(b)
        match_id = (await apis[1].swipe(a))["match"]["id"]
    finally:
        for api in apis:
            await api.client.aclose()
    clients = [await RendezvousClient.connect(url, mint_token(secret, u)) for u in (a, b)]
    acked: list[set[int]] = [set(), set()]
    got: list[set[int]] = [set(), set()]
    try:
        for n in itertools.count():
            if stop.is_set():
                break
            who = n % 2
            try:
                ack = await clients[who].send(match_id, f"control {n}")
                acked[who].add(ack["id"])
            except Exception as exc:  # counted as lost: nothing acked
                print(f"control send failed: {exc!r}", file=sys.stderr)
            with contextlib.suppress(TimeoutError):
                while True:
                    msg = await clients[1 - who].next_event("msg", timeout=0.05)
                    got[1 - who].add(msg["id"])
            await asyncio.sleep(0.02)
        for who in (0, 1):  # the last ones
            with contextlib.suppress(TimeoutError):
                while len(got[who]) < len(acked[1 - who]):
                    got[who].add((await clients[who].next_event("msg", timeout=3))["id"])
    finally:
        for client in clients:
            await client.close()
    total = len(acked[0]) + len(acked[1])
    lost = len(acked[0] - got[1]) + len(acked[1] - got[0])
    return total, lost


def start_node(workdir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    ws_port, http_port = free_port(), free_port()
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [*node_command(workdir / "data", ws_port, http_port), "--log-format", "text"],
        env=child_env(**RAISED_LIMITS_ENV), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while b"  Stop" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the node did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, f"ws://127.0.0.1:{ws_port}/v1/ws", f"http://127.0.0.1:{http_port}"


async def fuzz(args: argparse.Namespace, url: str, http: str, pid: int | None,
               node: subprocess.Popen[bytes] | None) -> dict[str, Any]:
    rng = random.Random(args.seed)
    tag = f"{os.getpid()}-{rng.randrange(10**6)}"
    stats = Stats()
    users = [f"fz-{tag}-{i}" for i in range(args.sockets)]
    peer = f"fz-{tag}-peer"
    async with RendezvousHttp(http, mint_token(args.secret, peer)) as peer_api:
        match_ids = []
        for user in users:
            async with RendezvousHttp(http, mint_token(args.secret, user)) as api:
                await api.swipe(peer)
            match_ids.append((await peer_api.swipe(user))["match"]["id"])
    rss_before = rss_kib(pid)
    sockets = [FuzzSocket(url, mint_token(args.secret, user),
                          "rdv.v1.msgpack" if i % 2 == 0 else "rdv.v1.json",
                          Mutator(random.Random(rng.random()), match_ids[i], binary=i % 2 == 0),
                          stats) for i, user in enumerate(users)]
    per_socket = [args.frames // args.sockets + (i < args.frames % args.sockets)
                  for i in range(args.sockets)]
    stop = asyncio.Event()
    control = asyncio.create_task(control_pair(url, http, args.secret, stop, tag))
    started = time.monotonic()

    async def progress() -> None:
        while True:
            await asyncio.sleep(2)
            rate = stats.sent / max(1e-9, time.monotonic() - started)
            print(f"  {stats.sent:,}/{args.frames:,} frames ({rate:,.0f}/s), "
                  f"{stats.reconnects} reconnects", file=sys.stderr, flush=True)

    reporter = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(s.run(n) for s, n in zip(sockets, per_socket, strict=True)))
    finally:
        reporter.cancel()
        stop.set()
    acked, lost = await control
    elapsed = time.monotonic() - started
    crashes = 0 if node is None or node.poll() is None else 1
    return {"frames sent": stats.sent, "seconds": round(elapsed, 1),
            "frames per second": round(stats.sent / max(elapsed, 1e-9)),
            "crashes (node exits)": crashes, "frames tracked by r": stats.tracked,
            "unanswered frames with r": stats.unanswered,
            "unanswered by type": dict(stats.unanswered_by),
            "answered twice": stats.duplicates, "stalled sockets": stats.stalls,
            "pending when the server closed the socket": stats.dropped_with_socket,
            "internal errors": stats.internal,
            "closes by code": dict(stats.closes), "control messages acked": acked,
            "control messages lost": lost, "node RSS before (KiB)": rss_before,
            "node RSS after (KiB)": rss_kib(pid)}


def tracebacks(log: Path | None) -> int | None:
    if log is None or not log.exists():
        return None
    return log.read_text(errors="replace").count("Traceback (most recent call last)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--frames", type=int, default=200_000, help="fuzz frames in all "
                        "(default 200,000)")
    parser.add_argument("--sockets", type=int, default=4, help="fuzz connections, half of "
                        "each subprotocol (default 4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="the node's WebSocket URL (default: start a node)")
    parser.add_argument("--http-url", help="its HTTP API (to match the users)")
    parser.add_argument("--secret", default=os.environ.get("RENDEZVOUS_JWT_SECRET", SECRET),
                        help="HS256 secret to mint tokens (default $RENDEZVOUS_JWT_SECRET)")
    parser.add_argument("--log", type=Path, help="with --url: the node's log, to count "
                        "tracebacks")
    parser.add_argument("--pid", type=int, help="with --url: the node's pid, for its RSS")
    args = parser.parse_args(argv)
    if args.url and not args.http_url:
        parser.error("--url needs --http-url")
    args.sockets = max(2, args.sockets)
    node = None
    with tempfile.TemporaryDirectory(prefix="fuzz-soak-") as tmp:
        log = args.log
        try:
            if args.url:
                url, http, pid = args.url, args.http_url, args.pid
            else:
                log = Path(tmp) / "node.log"
                node, url, http = start_node(Path(tmp), log)
                pid = node.pid
                args.secret = SECRET
            print(f"fuzzing {url} with {args.frames:,} frames on {args.sockets} sockets",
                  file=sys.stderr, flush=True)
            report = asyncio.run(fuzz(args, url, http, pid, node))
        finally:
            if node is not None:
                node.terminate()
                try:
                    node.wait(30)
                except subprocess.TimeoutExpired:
                    node.kill()
                    node.wait()
        report["tracebacks in the node log"] = tracebacks(log)
        for key, value in report.items():
            print(f"{key}: {value}")
    bad = (report["crashes (node exits)"] or report["unanswered frames with r"]
           or report["control messages lost"] or report["tracebacks in the node log"])
    return 1 if bad else 0


if __name__ == "__main__":
    _ = msgpack  # the mutator's codec; imported here so a missing package fails early
    sys.exit(main())
