"""The load generator: processes of their own, each on its own uvloop, driven over a pipe.

The parent (the orchestrator) never sends or receives a chat frame, so its work does not
count against the server; each load process holds whole pairs (sender and receiver), so a
send and its delivery are timed on one clock. Two loads:

- closed loop: each sender sends, waits for its ack, sends again, until the window ends;
- open model: sends are scheduled at a fixed rate whatever the server does, and latency is
  counted from the *scheduled* time, so a server (or generator) that falls behind shows it
  in p99 instead of quietly lowering the offered rate.

Latency is send -> `msg` at the receiver. The wire adapters here are deliberately lean (one
decode per frame, no request bookkeeping) so the same client cost is paid against every
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import resource
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.sbs.procs import SECRET
from benchmarks.sbs.servers import users
from client import mint_token

BODY = "benchmark message body"
DRAIN_S = 3.0  # after a window: how long deliveries still in flight are waited for
CONNECT_CONCURRENCY = 64


@dataclass
class Plan:
    """What one load process drives: its share of the pairs of one target."""
    wire: str
    send_url: str
    recv_url: str
    pairs: list[tuple[int, str]]  # (pair index, conversation)
    source: str | None = None  # local address to bind (127.0.0.x)


@dataclass
class Pair:
    index: int
    conversation: str
    peer: str
    sender: ClientConnection
    receiver: ClientConnection
    waiter: asyncio.Future[None] | None = None
    readers: list[asyncio.Task[None]] = field(default_factory=list)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def open_session(wire: str, url: str, user: str, source: str | None = None,
                       timeout: float = 30) -> ClientConnection:
    """Connect and authenticate as `user`; returns once the server has welcomed us."""
    options: dict[str, Any] = {"compression": None, "open_timeout": timeout,
                               "ping_interval": None, "max_queue": 64}
    if source:
        options["local_addr"] = (source, 0)
    async with asyncio.timeout(timeout):
        if wire == "sio":
            ws = await connect(url, **options)
            await ws.recv()  # engine.io open packet
            await ws.send("40" + json.dumps({"user": user}))
            while not str(await ws.recv()).startswith("40"):
                pass
            return ws
        ws = await connect(url, subprotocols=["rdv.v1.msgpack"],  # type: ignore[list-item]
                           additional_headers={"Authorization":
                                               f"Bearer {mint_token(SECRET, user)}"},
                           **options)
        while True:
            frame = msgpack.unpackb(await ws.recv())
            if frame.get("t") == "welcome":
                return ws
            if frame.get("t") == "error":
                raise ConnectionError(f"refused: {frame}")


class Worker:
    """The state of one load process; each command is a method returning a picklable dict."""

    def __init__(self) -> None:
        self.pairs: list[Pair] = []
        self.wire = "rdv"
        self.sent_at: dict[str, float] = {}
        self.latencies = array("d")
        self.window = (0.0, 0.0)
        self.counts = {"sent": 0, "acked": 0, "delivered": 0, "errors": 0, "dropped": 0}
        self.closing = False  # our own disconnect: closed sockets are not the server's doing
        self.close_codes: dict[str, int] = {}  # server closes (code -> count), for the report
        self.phase = 0
        self.drained = asyncio.Event()  # set when the last message in flight is delivered

    # -- connections -------------------------------------------------------------------

    async def connect(self, plan: Plan) -> dict[str, Any]:
        began = time.perf_counter()
        self.wire = plan.wire
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(i: int, conversation: str) -> Pair:
            a, b = users(i)
            async with gate:
                sender = await open_session(plan.wire, plan.send_url, a, plan.source)
                receiver = await open_session(plan.wire, plan.recv_url, b, plan.source)
            pair = Pair(i, conversation, b, sender, receiver)
            pair.readers = [asyncio.create_task(self.read(sender, pair)),
                            asyncio.create_task(self.read(receiver, pair))]
            return pair

        self.pairs = list(await asyncio.gather(*(one(i, c) for i, c in plan.pairs)))
        return {"connect_s": time.perf_counter() - began}

    async def disconnect(self) -> dict[str, Any]:
        self.closing = True
        for pair in self.pairs:
            for ws in (pair.sender, pair.receiver):
                ws.transport.abort()  # no close handshake: nothing left to measure
            for task in pair.readers:
                task.cancel()
        await asyncio.gather(*(t for p in self.pairs for t in p.readers),
                             return_exceptions=True)
        self.pairs = []
        self.closing = False
        return {}

    async def read(self, ws: ClientConnection, pair: Pair) -> None:
        on_msg, on_ack = self.on_msg, self.on_ack
        # deliveries count only on the receiver's socket (an echo to the sender is not one)
        receiving = ws is pair.receiver
        try:
            if self.wire == "sio":
                async for data in ws:
                    head = data[:2]
                    if head == "43":
                        on_ack(pair)
                    elif head == "42":
                        event = json.loads(data[2:])
                        if event[0] == "msg" and receiving:
                            on_msg(event[1]["c"])
                    elif data == "2":
                        await ws.send("3")  # engine.io ping
            else:
                unpack = msgpack.unpackb
                async for data in ws:
                    frame = unpack(data)
                    t = frame.get("t")
                    if t == "msg":
                        if receiving:
                            on_msg(frame["c"])
                    elif t == "ack":
                        on_ack(pair)
                    elif t == "error":
                        self.counts["errors"] += 1
                        self.release(pair)
        except ConnectionClosed:
            pass
        if not self.closing:
            self.counts["dropped"] += 1
            key = str(ws.close_code)
            self.close_codes[key] = self.close_codes.get(key, 0) + 1

    def on_ack(self, pair: Pair) -> None:
        self.counts["acked"] += 1
        self.release(pair)

    def release(self, pair: Pair) -> None:
        """The closed-loop sender of `pair` may send again (an ack or an error came back)."""
        if pair.waiter is not None and not pair.waiter.done():
            pair.waiter.set_result(None)

    def on_msg(self, c: str) -> None:
        sent = self.sent_at.pop(c, None)
        if sent is None:
            return
        if not self.sent_at:
            self.drained.set()
        self.counts["delivered"] += 1
        if self.window[0] <= sent < self.window[1]:
            self.latencies.append(time.perf_counter() - sent)

    def encoder(self) -> Callable[[Pair, int, str], bytes | str]:
        if self.wire == "sio":
            dumps = json.dumps

            def sio(p: Pair, r: int, c: str) -> str:
                data = dumps({"to": p.peer, "m": p.conversation, "c": c, "body": BODY})
                return f'42{r}["send",{data}]'

            return sio
        pack = msgpack.packb
        return lambda p, r, c: pack({"t": "send", "r": r, "m": p.conversation, "c": c,
                                     "body": BODY})

    # -- loads -------------------------------------------------------------------------

    def begin(self, start_at: float, seconds: float) -> float:
        """Reset counters for a window starting at wall time `start_at`; its perf start."""
        self.phase += 1
        self.sent_at.clear()
        self.latencies = array("d")
        self.counts = dict.fromkeys(self.counts, 0)
        self.close_codes = {}
        start = time.perf_counter() + (start_at - time.time())
        self.window = (start, start + seconds)
        return start

    async def finish(self, cpu0: float, extra: dict[str, Any]) -> dict[str, Any]:
        cpu = time.process_time() - cpu0
        if self.sent_at:
            self.drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_S):
                    await self.drained.wait()
        return {**self.counts, "latencies": self.latencies, "cpu_s": cpu,
                "close_codes": dict(self.close_codes),
                "lost": len(self.sent_at), **extra}

    async def closed(self, start_at: float, seconds: float) -> dict[str, Any]:
        start = self.begin(start_at, seconds)
        end = self.window[1]
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        cpu0 = time.process_time()
        encode, phase, sent_at, counts = self.encoder(), self.phase, self.sent_at, self.counts
        loop = asyncio.get_running_loop()

        async def sender(pair: Pair) -> None:
            n = 0
            while (now := time.perf_counter()) < end:
                n += 1
                c = f"{pair.index}.{phase}.{n}"
                sent_at[c] = now
                pair.waiter = loop.create_future()
                await pair.sender.send(encode(pair, n, c))
                counts["sent"] += 1
                try:
                    async with asyncio.timeout(10):
                        await pair.waiter
                except TimeoutError:
                    counts["errors"] += 1
                    return

        await asyncio.gather(*(sender(p) for p in self.pairs), return_exceptions=True)
        return await self.finish(cpu0, {})

    async def open(self, start_at: float, seconds: float, rate: float) -> dict[str, Any]:
        """`rate` msg/s from this process, round-robin over its senders."""
        start = self.begin(start_at, seconds)
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        cpu0 = time.process_time()
        encode, phase, sent_at, counts = self.encoder(), self.phase, self.sent_at, self.counts
        interval, total, pairs = 1.0 / rate, int(rate * seconds), self.pairs
        lag_max = 0.0
        for k in range(total):
            due = start + k * interval
            now = time.perf_counter()
            if due > now + 0.0005:
                await asyncio.sleep(due - now)
            else:
                lag_max = max(lag_max, now - due)
            pair = pairs[k % len(pairs)]
            c = f"{pair.index}.{phase}.{k}"
            sent_at[c] = due
            await pair.sender.send(encode(pair, k + 1, c))
            counts["sent"] += 1
        return await self.finish(cpu0, {"lag_max_s": lag_max})


def run_worker(conn: Connection, worker_class: type[Worker] = Worker) -> None:
    """A load process: answer commands `(method, *args)` until `exit` or the pipe closes."""
    import uvloop

    raise_fd_limit()

    async def serve() -> None:
        worker = worker_class()
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, _recv, conn)
            if command is None or command[0] == "exit":
                await worker.disconnect()
                return
            try:
                conn.send(("ok", await getattr(worker, command[0])(*command[1:])))
            except Exception:
                conn.send(("error", traceback.format_exc()))

    uvloop.run(serve())


def _recv(conn: Connection) -> Any:
    try:
        return conn.recv()
    except EOFError:
        return None


class LoadPool:
    """N load processes; `call` sends one command to each and gathers the replies."""

    def __init__(self, processes: int, worker_class: type[Worker] = Worker) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        self.pending = ""
        for _ in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=run_worker, args=(child, worker_class), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def call(self, per_worker: list[tuple[Any, ...]], timeout: float = 600) -> list[Any]:
        self.send(per_worker)
        return self.gather(timeout)

    def send(self, per_worker: list[tuple[Any, ...]]) -> None:
        """Hand each process its command without waiting (the caller measures meanwhile)."""
        self.pending = per_worker[0][0]
        for conn, command in zip(self.conns, per_worker, strict=True):
            conn.send(command)

    def gather(self, timeout: float = 600) -> list[Any]:
        replies = []
        for conn, proc in zip(self.conns, self.procs, strict=True):
            if not conn.poll(timeout):
                raise RuntimeError(f"load process {proc.pid} did not answer {self.pending}")
            status, value = conn.recv()
            if status != "ok":
                raise RuntimeError(f"load process {proc.pid} failed:\n{value}")
            replies.append(value)
        return replies

    def broadcast(self, *command: Any, timeout: float = 600) -> list[Any]:
        return self.call([command] * len(self.conns), timeout)

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("exit",))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
