"""Virtual users and the per-worker context they share.

A `VirtualUser` is one generated user on one target node: a `ReconnectingClient` (client/)
whose events come straight from its reader task (a `Listener`, no buffer), so receive times
are taken the moment a frame is decoded. The client keeps what an app keeps: the sync
cursor, the message ids it holds (apps dedupe by id), and it reconnects and `sync`s after
its socket drops; the virtual user measures what it reports.

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

from client import (
    ConnectionRejected,
    GaveUp,
    HttpError,
    Listener,
    ReconnectingClient,
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
RECONNECT_BASE_S, RECONNECT_CAP_S = 0.2, 5.0  # full jitter between failed attempts
DROP_JITTER_S = (0.25, 5.0)  # an app's reconnect delay after losing its network
DEDUPE_WINDOW = 100_000  # message ids a user remembers (apps dedupe by id)


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


class VirtualUser(Listener):
    """One generated user on one node. Its connection is a `ReconnectingClient` (client/),
    which reconnects with full-jitter backoff and `sync`s after the socket drops; this class
    measures what that client reports."""

    def __init__(self, ctx: WorkerContext, session: Session) -> None:
        self.ctx = ctx
        self.session = session
        self.name = ctx.new_name()
        self.target = ctx.pick_target()
        self.node = self.target.name
        self.source = ctx.next_source()
        self.last_from_partner: int | None = None
        self.frame_at: dict[str, float] = {}
        self._waiters: list[tuple[str, asyncio.Future[None]]] = []
        self._http: RendezvousHttp | None = None
        options: dict[str, Any] = {"max_size": 2 ** 20, "ping_interval": None}
        if self.source is not None:
            options["local_addr"] = (self.source, 0)
        self.conn = ReconnectingClient(
            self.target.ws, lambda: ctx.token(self.name), subprotocol=ctx.scenario.subprotocol,
            open_timeout=ctx.scenario.connect_timeout_s, backoff_base_s=RECONNECT_BASE_S,
            backoff_cap_s=RECONNECT_CAP_S, dedupe_window=DEDUPE_WINDOW, listener=self,
            rng=random.Random(ctx.rng.random()), sleep=ctx.sleep, **options)

    @property
    def client(self) -> RendezvousClient | None:
        return self.conn.client

    @property
    def online(self) -> bool:
        return self.conn.online

    @property
    def wanted(self) -> bool:
        return self.conn.wanted

    @property
    def http(self) -> RendezvousHttp:
        if self._http is None:
            self._http = self.ctx.http_for(self.name, self.target, self.source)
        return self._http

    # -- connecting ------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Open the socket (first time); False (counted) if the node refused or timed out."""
        return await self.conn.connect(sync=self.session.needs_cursor)

    async def reconnect(self, delay: float = 0.0) -> bool:
        """Come back after `delay`: open (retrying with backoff), then `sync` what was missed.
        Records `reconnect_sync` from the first attempt to the end of the sync."""
        try:
            return await self.conn.reconnect(delay)
        except Stopped:
            return False

    async def wait_online(self, timeout: float = 30.0) -> RendezvousClient | None:
        if not self.wanted and not self.online:
            return None
        try:
            return await self.conn.wait_online(timeout)
        except (TimeoutError, GaveUp):
            return None

    async def disconnect(self, *, counted: bool = True) -> None:
        """Close the socket cleanly and stay away; `counted` in `disconnects` unless the
        session is simply over."""
        was_online = self.conn.client is not None
        if was_online:
            self._went_offline()
            if counted:
                self.ctx.recorder.count("disconnects", node=self.node)
        await self.conn.close()

    def abort(self, reconnect_after_s: float | None) -> bool:
        """Cut the socket abruptly; it reconnects after the delay (None: an app's jittered
        reaction to losing its network)."""
        if reconnect_after_s is None:
            reconnect_after_s = self.ctx.rng.uniform(*DROP_JITTER_S)
        return self.conn.drop(reconnect_after_s)

    async def close(self) -> None:
        await self.disconnect(counted=False)

    def _went_offline(self) -> None:
        self.ctx.online.discard(self)
        self.session.mark_presence(self, False, self.ctx.now())

    # -- what the connection reports (Listener) ----------------------------------------------

    def on_connected(self, client: RendezvousClient, took_s: float) -> None:
        rec, node = self.ctx.recorder, self.node
        rec.latency("connect", took_s, node)
        rec.count("connects", node=node)
        self.ctx.online.add(self)
        self.session.mark_presence(self, True, self.ctx.now())

    def on_connect_failed(self, error: BaseException) -> None:
        rec, node = self.ctx.recorder, self.node
        rec.count("connect_failures", node=node)
        if isinstance(error, ConnectionRejected):
            rec.count(f"errors.connect_{error.error_code or error.status or error.code}",
                      node=node)
        else:
            rec.count(f"errors.connect_{type(error).__name__}", node=node)

    def on_disconnected(self, client: RendezvousClient, dropped: bool) -> None:
        self._went_offline()
        rec = self.ctx.recorder
        rec.count("disconnects", node=self.node)
        if not dropped:  # chaos is counted as chaos_drops, not as an error
            rec.count(f"errors.close_{client.close_code}", node=self.node)

    def on_reconnected(self, took_s: float) -> None:
        self.ctx.recorder.latency("reconnect_sync", took_s, self.node)
        self.ctx.recorder.count("reconnects", node=self.node)

    def on_sync_failed(self, error: BaseException) -> None:
        name = error.code if isinstance(error, ServerError) else "sync_interrupted"
        self.ctx.recorder.count(f"errors.{name}", node=self.node)

    def on_gave_up(self, error: BaseException | None) -> None:
        self.ctx.recorder.count("errors.gave_up", node=self.node)

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

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        if not isinstance(kind, str):
            return
        now = self.ctx.now()
        self.frame_at[kind] = now
        if kind in ("typing", "presence", "match"):
            self.session.on_fanout(self, kind, frame, now)
        elif kind == "error":
            self.ctx.recorder.count(f"errors.{frame.get('code')}", node=self.node)
        if self._waiters:
            for want, fut in self._waiters:
                if want == kind and not fut.done():
                    fut.set_result(None)

    def on_duplicate(self, frame: dict[str, Any], live: bool) -> None:
        if live and frame.get("from") != self.name:
            self.ctx.recorder.count("duplicated", node=self.node)

    def on_msg(self, frame: dict[str, Any], live: bool) -> None:
        rec, node = self.ctx.recorder, self.node
        msg_id = frame.get("id")
        if frame.get("from") == self.name or not isinstance(msg_id, int):
            return
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
