"""`ReconnectingClient`: a session that survives the network, as an app keeps one.

A `RendezvousClient` is one socket; this strings them together. When a socket ends without
`close()`, it waits as the close code asks (client/close_policy.py: the node's `reconnect`
frame, full-jitter backoff, or stop), reconnects with full-jitter backoff between failed
attempts, then pages through `sync` from the stored cursor. Each message is handed over once,
whether it comes live or from `sync` (ids are remembered in a bounded window). `send`
keeps its client id `c` across reconnects, so a message is stored exactly once.

What happens is reported to a `Listener` (every method optional): the load tester measures
through it; without one, events go to a buffer that `next_event` reads, across reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidURI

from client.close_policy import close_action
from client.errors import ClientClosed, ConnectionRejected, ServerError
from client.events import EventBuffer, EventType, Predicate
from client.ws import AuthMode, RendezvousClient
from protocol.codec import MSGPACK, Frame
from runtime.backoff import Backoff

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], str | Awaitable[str]]
Sleep = Callable[[float], Awaitable[None]]
RESTART_WINDOW_S = (0.5, 5.0)  # a node closed 1001/1012 without saying when to come back
SLOW_FLOOR_S = 5.0  # a policy close (4008): never sooner than this
RETRIABLE = frozenset({"unavailable", "internal", "rate_limited"})
CONNECT_ERRORS = (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionRejected)


class Listener:
    """What a `ReconnectingClient` reports. Override what you need; none may block."""

    def on_frame(self, frame: Frame) -> None:
        """Every live event frame (`msg` included), as the reader decodes it."""

    def on_msg(self, frame: Frame, live: bool) -> None:
        """A message not seen before: live, or from `sync` (`live` False)."""

    def on_duplicate(self, frame: Frame, live: bool) -> None:
        """A message whose id was handed over already."""

    def on_connected(self, client: RendezvousClient, took_s: float) -> None:
        """A socket got its `welcome`."""

    def on_connect_failed(self, error: BaseException) -> None:
        """One connection attempt failed (it is retried unless `on_gave_up` follows)."""

    def on_disconnected(self, client: RendezvousClient, dropped: bool) -> None:
        """A socket ended without `close()`; `dropped` when `drop()` cut it."""

    def on_reconnected(self, took_s: float) -> None:
        """Back: connected and synced, `took_s` from the first attempt."""

    def on_sync_failed(self, error: BaseException) -> None:
        """A `sync` ended early (an error reply, a timeout, the socket closing)."""

    def on_gave_up(self, error: BaseException | None) -> None:
        """It stopped reconnecting for good (the close code says so, or a fatal refusal)."""


class _Buffered(Listener):
    """The default listener: events (messages once each) into a buffer for `next_event`."""

    def __init__(self, events: EventBuffer) -> None:
        self.events = events

    def on_frame(self, frame: Frame) -> None:
        if frame.get("t") != "msg":
            self.events.put(frame)

    def on_msg(self, frame: Frame, live: bool) -> None:
        self.events.put(frame)


class GaveUp(ConnectionError):
    """The client stopped reconnecting: `code` is the close code or refusal behind it."""

    def __init__(self, code: int | None, why: str) -> None:
        super().__init__(f"gave up reconnecting ({code}): {why}")
        self.code = code


class ReconnectingClient:
    """Create, then `await connect()`; `close()` when done. `client` is the current socket
    (None while offline) for anything this class does not wrap."""

    def __init__(self, url: str, token: TokenSource, *, cursor: str | None = None,
                 subprotocol: str | None = MSGPACK, auth: AuthMode = "header",
                 open_timeout: float = 5.0, backoff_base_s: float = 0.5,
                 backoff_cap_s: float = 30.0, dedupe_window: int = 10_000,
                 listener: Listener | None = None, rng: random.Random | None = None,
                 sleep: Sleep | None = None, **ws_options: Any) -> None:
        """`token` is a string or a function returning one (called before every connect;
        only a function lets it come back after 4001/4002). `cursor` resumes a stored sync
        position. `sleep` replaces `asyncio.sleep` for every wait (the load tester's ends
        the run; whatever it raises stops the reconnecting). `ws_options` go to
        `RendezvousClient.connect`."""
        self.url = url
        self.cursor = cursor
        self.synced = False
        self.client: RendezvousClient | None = None
        self._token = token
        self._connect_options: dict[str, Any] = {"subprotocol": subprotocol, "auth": auth,
                                                 "open_timeout": open_timeout, **ws_options}
        self._rng = rng or random.Random()
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, self._rng.random)
        self._sleep: Sleep = sleep or asyncio.sleep
        # a buffer only without a listener: the load tester runs thousands of these
        self._events: EventBuffer | None = None
        if listener is None:
            self._events = EventBuffer()
            listener = _Buffered(self._events)
        self.listener = listener
        self._seen: OrderedDict[Any, None] = OrderedDict()
        self._window = dedupe_window
        self._online = asyncio.Event()
        self._wanted = False
        self._next_delay: float | None = None  # set by `drop()` or a `reconnect` frame
        self._dropping = False
        self._last_token: str | None = None
        self._watch: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self.gave_up: GaveUp | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self.client is not None and self._online.is_set()

    @property
    def wanted(self) -> bool:
        """Whether it means to be connected: from `connect()`/`reconnect()` until `close()`
        or giving up."""
        return self._wanted

    async def wait_online(self, timeout: float | None = 30.0) -> RendezvousClient:
        """The open socket, once there is one; `TimeoutError` past `timeout`, `GaveUp` if it
        stopped reconnecting."""
        async with asyncio.timeout(timeout):
            while True:
                if self.gave_up is not None:
                    raise self.gave_up
                if self.client is not None and self._online.is_set():
                    return self.client
                await self._online.wait()
                if self.client is None:
                    await asyncio.sleep(0)  # set and cleared in one turn: look again

    # -- connecting --------------------------------------------------------------------------

    async def connect(self, *, sync: bool = True) -> bool:
        """The first connection and (unless `sync` is False) its `sync`: one attempt, False
        if it failed (reported to the listener). Use `reconnect()` to keep trying."""
        self._wanted = True
        self.gave_up = None
        if not await self.open():
            return False
        if sync:
            await self.sync()
        return True

    async def open(self) -> bool:
        """One attempt to open and welcome a socket (no sync)."""
        start = time.monotonic()
        try:
            token = await self._next_token()
            client = await RendezvousClient.connect(self.url, token, on_event=self._on_frame,
                                                    **self._connect_options)
        except CONNECT_ERRORS as error:
            self.listener.on_connect_failed(error)
            self._give_up_if_final(error)
            return False
        self.client = client
        self._online.set()
        self.listener.on_connected(client, time.monotonic() - start)
        self._watch = asyncio.create_task(self._watch_closed(client),
                                          name=f"rdv-watch-{client.user}")
        return True

    async def _next_token(self) -> str:
        token = self._token
        if callable(token):
            value = token()
            token = await value if not isinstance(value, str) else value
        self._last_token = token
        return token

    def _give_up_if_final(self, error: BaseException) -> None:
        """A refusal that retrying cannot fix: stop (a static token that was refused)."""
        if not isinstance(error, ConnectionRejected):
            return
        code = error.code if error.code is not None else (4001 if error.status == 401
                                                          else None)
        action = close_action(code, error.reason)
        if not action.reconnect:
            self._stop(GaveUp(code, action.why))
        elif action.new_token and not callable(self._token):
            self._stop(GaveUp(code, "the token was refused and there is no way to get "
                                    "another (pass a function as `token`)"))

    def _stop(self, error: GaveUp) -> None:
        self._wanted = False
        self.gave_up = error
        self._online.set()  # wake `wait_online`, which raises it
        self._online.clear()
        self.listener.on_gave_up(error)

    async def _watch_closed(self, client: RendezvousClient) -> None:
        """Notice a socket that ended without `close()`, and come back like an app."""
        try:
            await client.wait_closed(None)
        except asyncio.CancelledError:
            return
        if self.client is not client:
            return
        self.client = None
        self._online.clear()
        dropped, self._dropping = self._dropping, False
        self.listener.on_disconnected(client, dropped)
        if not self._wanted:
            return
        delay, self._next_delay = self._next_delay, None
        if delay is None:
            delay = self._delay_after(client.close_code, client.close_reason)
        if delay is not None:
            self._start_reconnect(delay)

    def _delay_after(self, code: int | None, reason: str | None) -> float | None:
        action = close_action(code, reason)
        if not action.reconnect:
            self._stop(GaveUp(code, action.why))
            return None
        if action.new_token and not callable(self._token):
            self._stop(GaveUp(code, "the token expired or was refused and there is no way "
                                    "to get another (pass a function as `token`)"))
            return None
        if action.window == "restart":
            return self._rng.uniform(*RESTART_WINDOW_S)
        if action.window == "slow":
            return SLOW_FLOOR_S + self._backoff.next()
        return self._backoff.next()

    def _start_reconnect(self, delay: float) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(self._reconnect_in_background(delay))

    async def _reconnect_in_background(self, delay: float) -> None:
        try:
            await self.reconnect(delay)
        except Exception as error:  # the injected sleep ended the run, or a bug: logged
            log.debug("reconnecting stopped: %r", error)

    async def reconnect(self, delay: float = 0.0) -> bool:
        """Come back after `delay`: open, with full-jitter backoff between failed attempts,
        then `sync` what was missed. False if it gave up; raises what `sleep` raises."""
        self._wanted = True
        self.gave_up = None
        await self._sleep(delay)
        start = time.monotonic()
        while not await self.open():
            if not self._wanted:
                return False
            await self._sleep(self._backoff.next())
        await self.sync()
        self._backoff.reset()
        self.listener.on_reconnected(time.monotonic() - start)
        return True

    def drop(self, reconnect_after_s: float | None = None) -> bool:
        """Cut the socket abruptly, as a phone losing its network (no close frame); it comes
        back after `reconnect_after_s` (None: as the close code says, i.e. backoff)."""
        client = self.client
        if client is None or not self._wanted:
            return False
        self._next_delay = reconnect_after_s
        self._dropping = True
        client.abort()
        return True

    # -- frames ----------------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        kind = frame.get("t")
        if kind == "reconnect":  # the node drains: come back after its delay, then sync
            after = frame.get("after_ms")
            if isinstance(after, int | float) and not isinstance(after, bool):
                self._next_delay = max(0.0, after / 1000)
        self.listener.on_frame(frame)
        if kind == "msg":
            self._take_msg(frame, live=True)

    def _take_msg(self, frame: Frame, live: bool) -> None:
        key = (frame.get("m"), frame.get("id"))
        if key in self._seen:
            self.listener.on_duplicate(frame, live)
            return
        self._remember(key)
        self.listener.on_msg(frame, live)

    def _remember(self, key: Any) -> None:
        self._seen[key] = None
        while len(self._seen) > self._window:
            self._seen.popitem(last=False)

    async def sync(self) -> int:
        """Page through `sync` from the cursor, handing over every message not seen yet;
        how many it handed over. An interrupted sync is reported, and resumes from the last
        page's cursor next time."""
        client = self.client
        if client is None:
            return 0
        handed = 0
        try:
            while True:
                reply = await client.sync(self.cursor)
                for frame in reply.get("msgs") or ():
                    frame.setdefault("t", "msg")  # a sync's messages come without it
                    if (frame.get("m"), frame.get("id")) not in self._seen:
                        handed += 1
                    self._take_msg(frame, live=False)
                self.cursor = reply.get("cursor") or self.cursor
                self.synced = True
                if not reply.get("more"):
                    return handed
        except (ServerError, ClientClosed, TimeoutError) as error:
            self.listener.on_sync_failed(error)
            return handed

    # -- sending -----------------------------------------------------------------------------

    async def send(self, m: str, body: str | None = None, media: dict[str, Any] | None = None,
                   c: str | None = None, *, timeout: float = 60.0) -> Frame:
        """Send a message and return its `ack`, retrying with the same `c` across
        reconnects, timeouts and retriable errors until `timeout`; the server stores it
        once. Other errors (`forbidden`, `bad_request`, ...) raise `ServerError` at once."""
        c = c or uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"message {c} not acknowledged within {timeout} s")
            try:
                client = await self.wait_online(left)
                ack = await client.send(m, body, media, c, timeout=min(10.0, left))
            except (ClientClosed, TimeoutError):
                continue
            except ServerError as error:
                if error.code not in RETRIABLE:
                    raise
                retry_s = (error.frame.get("retry_ms") or 500) / 1000
                await self._sleep(min(retry_s, max(0.0, deadline - loop.time())))
                continue
            self._remember((m, ack.get("id")))  # our own message coming back in a sync
            return ack

    # -- events and closing ----------------------------------------------------------------

    async def next_event(self, t: EventType = None, timeout: float | None = 5,
                         predicate: Predicate | None = None) -> Frame:
        """With the default listener: the oldest unread event of type `t`, across
        reconnects (messages once each, from `sync` too)."""
        if self._events is None:
            raise RuntimeError("events go to the listener given, not to a buffer")
        return await self._events.next(t, timeout, predicate)

    async def close(self) -> None:
        """Close the socket and stop reconnecting (idempotent); `reconnect()` comes back."""
        self._wanted = False
        task = self._reconnecting
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self.client = self.client, None
        self._online.clear()
        if self._watch is not None:
            self._watch.cancel()
        if client is not None:
            await client.close()
