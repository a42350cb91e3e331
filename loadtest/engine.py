"""Virtual users and the per-worker context they share.

A `VirtualUser` is one generated user on one target node: a `RendezvousClient` whose events
come straight from its reader task (`on_event`, no buffer), so receive times are taken the
moment a frame is decoded. It keeps what an app keeps: the sync cursor, the message ids it
holds (apps dedupe by id), and it reconnects and `sync`s after its socket drops.

Everything here runs in one worker process and one event loop; both users of a pair live in
the same process, so the delivery latency `now - intended send time` needs no clock sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpx
from websockets.exceptions import InvalidHandshake, InvalidURI

from client import (
    ClientClosed,
    ConnectionRejected,
    HttpError,
    RendezvousClient,
    RendezvousHttp,
    ServerError,
    mint_token,
)
from loadtest.delivery import DeliveryTracker
from loadtest.measure import Recorder
from loadtest.scenario import Scenario, Target

if TYPE_CHECKING:
    from loadtest.session import Session

log = logging.getLogger(__name__)

BODY_PREFIX = "lt1|"
RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
DROP_JITTER_S = (0.25, 5.0)  # an app's reconnect delay after losing its network


class Stopped(Exception):
    """The run is ending: a flow leaves at its next step."""


class WorkerContext:
    """What the virtual users of one worker process share: recorder, tracker, addresses."""

    def __init__(self, scenario: Scenario, secret: str, *, run_id: str, worker: int,
                 source_addresses: Iterable[str] = (), seed: int | None = None) -> None:
        self.scenario = scenario
        self.secret = secret
        self.run_id = run_id
        self.worker = worker
        self.recorder = Recorder()
        self.tracker = DeliveryTracker()
        self.rng = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        # measurements use the monotonic clock (ns resolution), not loop.time(): uvloop's is
        # in whole milliseconds and frozen for a loop iteration
        self.now = time.monotonic
        self.epoch_offset = time.time() - time.monotonic()
        self.stopping = asyncio.Event()
        self.online: set[VirtualUser] = set()
        self.sessions: set[asyncio.Task[None]] = set()
        self.max_lag_s = 0.0
        sources: list[str | None] = list(source_addresses) or [None]
        self._source_cycle = itertools.cycle(sources)
        self._names = itertools.count(1)
        self._transports: dict[str | None, httpx.AsyncHTTPTransport] = {}
        self._sleepers: set[asyncio.Future[None]] = set()
        # targets by smooth weighted round robin, not at random: a short run with a few
        # sessions still spreads them by weight; each worker starts at another place
        self._target_weights = [t.weight for t in scenario.targets]
        self._target_credit = [0.0] * len(scenario.targets)
        for _ in range(worker % len(scenario.targets)):
            self.pick_target()

    # -- identities and places -------------------------------------------------------------

    def new_name(self) -> str:
        return f"{self.scenario.user_prefix}{self.run_id}w{self.worker}n{next(self._names)}"

    def pick_target(self) -> Target:
        """The next target: over any run of picks each gets its share of the weights
        (nginx's smooth weighted round robin)."""
        credit = self._target_credit
        for i, weight in enumerate(self._target_weights):
            credit[i] += weight
        best = max(range(len(credit)), key=credit.__getitem__)
        credit[best] -= sum(self._target_weights)
        return self.scenario.targets[best]

    def next_source(self) -> str | None:
        return next(self._source_cycle)

    def token(self, user: str) -> str:
        auth = self.scenario.auth
        return mint_token(self.secret, user, auth.ttl_s, iss=auth.issuer, aud=auth.audience)

    def http_for(self, user: str, target: Target, source: str | None) -> RendezvousHttp:
        """A user's HTTP API client on the worker's shared connection pool for `source`."""
        transport = self._transports.get(source)
        if transport is None:
            transport = self._transports[source] = httpx.AsyncHTTPTransport(
                local_address=source, retries=0,
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=128))
        return RendezvousHttp(target.http, self.token(user), transport=transport)

    async def close_transports(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()

    # -- time ------------------------------------------------------------------------------

    def epoch(self, monotonic: float) -> float:
        return monotonic + self.epoch_offset

    def note_lag(self, lag_s: float) -> None:
        if lag_s > self.max_lag_s:
            self.max_lag_s = lag_s

    async def sleep(self, seconds: float) -> None:
        """Sleep, unless the run stops first (then `Stopped`)."""
        if self.stopping.is_set():
            raise Stopped
        if seconds <= 0:
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        handle = self.loop.call_later(seconds, _resolve, fut)
        self._sleepers.add(fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._sleepers.discard(fut)
        if self.stopping.is_set():
            raise Stopped

    async def idle(self, seconds: float) -> None:
        """Sleep until `seconds` pass or the run stops, whichever is first."""
        with contextlib.suppress(Stopped):
            await self.sleep(seconds)

    def stop(self) -> None:
        self.stopping.set()
        for fut in list(self._sleepers):
            _resolve(fut)

    # -- HTTP with measurement -------------------------------------------------------------

    async def http_call(self, node: str, call: Any,
                        expected: frozenset[str] = frozenset()) -> Any:
        """Await one HTTP API call, recording its latency and outcome; None on failure.
        An error whose code is in `expected` (the step asks for it, like `quota_exceeded`
        past a quota) is an answer: `http_refused` and `refused.http_<code>`, timed."""
        recorder = self.recorder
        start = self.now()
        recorder.count("http_requests", node=node)
        try:
            result = await call
        except HttpError as exc:
            if exc.code in expected:
                recorder.count("http_refused", node=node)
                recorder.count(f"refused.http_{exc.code}", node=node)
                recorder.latency("http", self.now() - start, node)
                return None
            recorder.count("http_errors", node=node)
            recorder.count(f"errors.http_{exc.code or exc.status}", node=node)
            return None
        except (httpx.HTTPError, OSError) as exc:
            recorder.count("http_errors", node=node)
            recorder.count(f"errors.http_{type(exc).__name__}", node=node)
            return None
        recorder.latency("http", self.now() - start, node)
        return result


async def wait_until(done: Callable[[], bool], timeout: float, interval: float = 0.005
                     ) -> bool:
    """Poll `done` (a condition owned by code with no event to wait on) until true or timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class VirtualUser:
    """One generated user on one node; reconnects and syncs when its socket drops."""

    def __init__(self, ctx: WorkerContext, session: Session) -> None:
        self.ctx = ctx
        self.session = session
        self.name = ctx.new_name()
        self.target = ctx.pick_target()
        self.node = self.target.name
        self.source = ctx.next_source()
        self.client: RendezvousClient | None = None
        self.wanted = False
        self.cursor: str | None = None
        self.synced = False
        self.seen: set[int] = set()
        self.last_from_partner: int | None = None
        self.frame_at: dict[str, float] = {}
        self._online = asyncio.Event()
        self._waiters: list[tuple[str, asyncio.Future[None]]] = []
        self._reconnect_delay: float | None = None
        self._dropping = False
        self._watch: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[bool] | None = None
        self._http: RendezvousHttp | None = None

    @property
    def online(self) -> bool:
        return self._online.is_set()

    @property
    def http(self) -> RendezvousHttp:
        if self._http is None:
            self._http = self.ctx.http_for(self.name, self.target, self.source)
        return self._http

    # -- connecting ------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Open the socket (first time); False (counted) if the node refused or timed out."""
        self.wanted = True
        if not await self._open():
            return False
        if self.session.needs_cursor and not self.synced:
            await self.sync_all()
        return True

    async def _open(self) -> bool:
        ctx, rec, node = self.ctx, self.ctx.recorder, self.node
        options: dict[str, Any] = {}
        if self.source is not None:
            options["local_addr"] = (self.source, 0)
        start = ctx.now()
        try:
            client = await RendezvousClient.connect(
                self.target.ws, ctx.token(self.name), subprotocol=ctx.scenario.subprotocol,
                open_timeout=ctx.scenario.connect_timeout_s, on_event=self._on_event,
                max_size=2 ** 20, ping_interval=None, **options)
        except ConnectionRejected as exc:
            rec.count("connect_failures", node=node)
            rec.count(f"errors.connect_{exc.error_code or exc.status or exc.code}", node=node)
            return False
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            rec.count("connect_failures", node=node)
            rec.count(f"errors.connect_{type(exc).__name__}", node=node)
            return False
        now = ctx.now()
        rec.latency("connect", now - start, node)
        rec.count("connects", node=node)
        self.client = client
        self._online.set()
        ctx.online.add(self)
        self.session.mark_presence(self, True, now)
        self._watch = asyncio.create_task(self._watch_closed(client))
        return True

    async def _watch_closed(self, client: RendezvousClient) -> None:
        """Notice a socket that ended without us closing it, and come back like an app."""
        try:
            await client.wait_closed(None)
        except asyncio.CancelledError:
            return
        if self.client is not client:
            return
        self._went_offline()
        rec = self.ctx.recorder
        rec.count("disconnects", node=self.node)
        if not self._dropping:  # chaos is counted as chaos_drops, not as an error
            rec.count(f"errors.close_{client.close_code}", node=self.node)
        self._dropping = False
        if self.wanted and not self.ctx.stopping.is_set():
            delay = self._reconnect_delay
            if delay is None:
                delay = self.ctx.rng.uniform(*DROP_JITTER_S)
            self._reconnect_delay = None
            self._start_reconnect(delay)

    def _went_offline(self) -> None:
        self.client = None
        self._online.clear()
        self.ctx.online.discard(self)
        self.session.mark_presence(self, False, self.ctx.now())

    def _start_reconnect(self, delay: float) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(self.reconnect(delay))

    async def reconnect(self, delay: float = 0.0) -> bool:
        """Come back after `delay`: open (retrying with backoff), then `sync` what was missed.
        Records `reconnect_sync` from the first attempt to the end of the sync."""
        ctx = self.ctx
        self.wanted = True
        try:
            if delay > 0:
                await ctx.sleep(delay)
            start = ctx.now()
            for attempt in itertools.count():
                if await self._open():
                    break
                backoff = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
                await ctx.sleep(backoff * ctx.rng.uniform(0.5, 1.0))
            await self.sync_all()
        except Stopped:
            return False
        ctx.recorder.latency("reconnect_sync", ctx.now() - start, self.node)
        ctx.recorder.count("reconnects", node=self.node)
        return True

    async def sync_all(self) -> None:
        """Page through `sync` from the cursor, taking in every message not seen yet."""
        client = self.client
        if client is None:
            return
        try:
            while True:
                reply = await client.sync(self.cursor)
                for frame in reply.get("msgs") or ():
                    self._on_msg(frame, live=False)
                self.cursor = reply.get("cursor") or self.cursor
                self.synced = True
                if not reply.get("more"):
                    return
        except ServerError as exc:
            self.ctx.recorder.count(f"errors.{exc.code}", node=self.node)
        except (ClientClosed, TimeoutError):
            self.ctx.recorder.count("errors.sync_interrupted", node=self.node)

    async def wait_online(self, timeout: float = 30.0) -> RendezvousClient | None:
        if self.client is not None and self._online.is_set():
            return self.client
        if not self.wanted:
            return None
        try:
            async with asyncio.timeout(timeout):
                while self.client is None:
                    await self._online.wait()
                    if self.client is None:
                        await asyncio.sleep(0.01)
        except TimeoutError:
            return None
        return self.client

    async def disconnect(self, *, counted: bool = True) -> None:
        """Close the socket cleanly and stay away (`wanted` off); `counted` in
        `disconnects` unless the session is simply over."""
        self.wanted = False
        client = self.client
        if client is None:
            return
        self._went_offline()
        if counted:
            self.ctx.recorder.count("disconnects", node=self.node)
        if self._watch is not None:
            self._watch.cancel()
        await client.close()

    def abort(self, reconnect_after_s: float | None) -> bool:
        """Cut the socket abruptly; it reconnects after the delay (None: app-like jitter)."""
        client = self.client
        if client is None or not self.wanted:
            return False
        self._reconnect_delay = reconnect_after_s
        self._dropping = True
        client.abort()
        return True

    async def close(self) -> None:
        await self.disconnect(counted=False)
        if self._reconnecting is not None and not self._reconnecting.done():
            self._reconnecting.cancel()

    # -- receiving -------------------------------------------------------------------------

    async def expect(self, kind: str, since: float, timeout: float) -> bool:
        """A frame `kind` that arrived at or after `since` (loop time), or one within timeout."""
        if self.frame_at.get(kind, -1.0) >= since:
            return True
        fut: asyncio.Future[None] = self.ctx.loop.create_future()
        entry = (kind, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _on_event(self, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        if not isinstance(kind, str):
            return
        now = self.ctx.now()
        self.frame_at[kind] = now
        if kind == "msg":
            self._on_msg(frame, live=True)
        elif kind in ("typing", "presence", "match"):
            self.session.on_fanout(self, kind, frame, now)
        elif kind == "error":
            self.ctx.recorder.count(f"errors.{frame.get('code')}", node=self.node)
        elif kind == "reconnect":
            after = frame.get("after_ms")
            self._reconnect_delay = after / 1000 if isinstance(after, int | float) else None
        if self._waiters:
            for want, fut in self._waiters:
                if want == kind and not fut.done():
                    fut.set_result(None)

    def _on_msg(self, frame: dict[str, Any], *, live: bool) -> None:
        rec, node = self.ctx.recorder, self.node
        sender = frame.get("from")
        msg_id = frame.get("id")
        if sender == self.name or not isinstance(msg_id, int):
            return
        if msg_id in self.seen:
            if live:
                rec.count("duplicated", node=node)
            return
        self.seen.add(msg_id)
        if self.last_from_partner is None or msg_id > self.last_from_partner:
            self.last_from_partner = msg_id
        body = frame.get("body")
        if not isinstance(body, str) or not body.startswith(BODY_PREFIX):
            return
        try:
            _, stream, seq_text, intended_text = body.split("|", 3)
            seq, intended_us = int(seq_text), int(intended_text)
        except ValueError:
            rec.count("errors.bad_body", node=node)
            return
        result = self.ctx.tracker.received(stream, seq)
        if result in ("ok", "reordered"):
            rec.count("delivered", node=node)
            rec.latency("delivery", self.ctx.epoch(self.ctx.now()) - intended_us / 1e6,
                        node)
            if result == "reordered":
                rec.count("reordered", node=node)
        elif result == "duplicate":
            rec.count("duplicated", node=node)
        else:
            rec.count("errors.unknown_message", node=node)
