"""What the gateway and the HTTP API ask when a client connects, fails to authenticate or
leaves: the per-user connection cap, the failed-auth throttle and presence damping.

Everything here runs at connect, auth-failure or disconnect time, never per frame
(docs/operations.md, "Connection limits"). The cluster-wide parts travel as small control
messages: an eviction of a session held by another node, and a block of an IP that one
node saw pass the limit.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from protocol.errors import CloseCode
from server.guards import AuthThrottle, ConnectionCap, FlapMarks
from server.metrics import Metrics
from server.presence import Presence

log = logging.getLogger("rendezvous.guard")

EVICT = "evict"  # control kinds (see `on_control`)
AUTH_BLOCK = "auth_block"
Announce = Callable[[str, bool, "int | None"], Awaitable[None]]
GetHeader = Callable[[str], "str | None"]


class Closable(Protocol):
    """The part of a hub session the guard needs."""

    user: str
    id: str

    def close_when_answered(self, code: int, reason: str) -> None: ...


class Publisher(Protocol):
    async def publish_control(self, message: dict[str, Any]) -> None: ...


class PresenceDamper:
    """A user who reconnects within `grace_s` never goes offline and online again for their
    matches: the offline announcement waits `grace_s`, and a flap mark (`FlapMarks`)
    decides which of the reconnect and the delayed announcement speaks, so with several
    nodes too neither or exactly one of the pair is announced."""

    def __init__(self, *, marks: FlapMarks, presence: Presence, announce: Announce,
                 grace_s: float) -> None:
        self.marks = marks
        self.presence = presence
        self.announce = announce
        self.grace_s = grace_s
        # key -> (timer, user, seen) of each offline announcement still waiting
        self._timers: dict[int, tuple[asyncio.TimerHandle, str, int | None]] = {}
        self._keys = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()

    async def online(self, user: str) -> None:
        """`user` has their first live session again (presence said so)."""
        if self.grace_s > 0 and await self.marks.take(user):
            return  # back within the grace: the offline was never announced
        await self.announce(user, True, None)

    async def offline(self, user: str, seen: int | None) -> None:
        """`user` closed their last live session; tell their matches after the grace."""
        if self.grace_s <= 0:
            await self.announce(user, False, seen)
            return
        # The mark outlives the timer: it is the timer's to take, or a reconnect's.
        await self.marks.mark(user, self.grace_s * 2 + 1)
        key = next(self._keys)
        handle = asyncio.get_running_loop().call_later(self.grace_s, self._due, key)
        self._timers[key] = (handle, user, seen)

    def _due(self, key: int) -> None:
        entry = self._timers.pop(key, None)
        if entry is not None:
            self._spawn(self._settle(entry[1], entry[2]))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, user: str, seen: int | None) -> None:
        try:
            if not await self.marks.take(user):
                return  # a reconnect took the mark: no flap
            status = (await self.presence.status([user])).get(user)
            if status is not None and status.online:
                return  # back on another node before our mark was written
            await self.announce(user, False, seen)
        except Exception:
            log.exception("a delayed offline announcement failed")

    def pending(self) -> int:
        return len(self._timers) + len(self._tasks)

    async def close(self) -> None:
        """Announce what is still pending, waiting at most the grace (a drain's clients
        reconnect elsewhere meanwhile, and are then not announced at all)."""
        loop = asyncio.get_running_loop()
        last = max((h.when() for h, _, _ in self._timers.values()), default=0.0)
        if last > loop.time():
            await asyncio.sleep(min(self.grace_s, last - loop.time()))
        timers, self._timers = self._timers, {}
        for handle, user, seen in timers.values():
            handle.cancel()
            self._spawn(self._settle(user, seen))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class ConnectionGuard:
    """The connection cap and the auth throttle of one node, and its presence damper."""

    def __init__(self, *, node: str, cap: ConnectionCap, max_per_user: int,
                 throttle: AuthThrottle, damper: PresenceDamper, broker: Publisher,
                 metrics: Metrics, ip_header: str | None = None) -> None:
        self.node = node
        self.cap = cap
        self.max_per_user = max_per_user
        self.throttle = throttle
        self.damper = damper
        self.broker = broker
        self.metrics = metrics
        self.ip_header = ip_header
        self._local: dict[str, Closable] = {}  # session id -> session, on this node
        self._tasks: set[asyncio.Task[None]] = set()
        self.evicted = 0

    # -- client addresses and the auth throttle ---------------------------------------------
    def client_ip(self, peer: str | None, header: GetHeader) -> str:
        """The client's address: the peer's, or the last hop a trusted proxy named in
        `client_ip_header` (X-Forwarded-For: the entry that proxy appended)."""
        if self.ip_header:
            value = header(self.ip_header)
            if value:
                return value.rsplit(",", 1)[-1].strip()[:64] or (peer or "?")
        return peer or "?"

    def refused(self, ip: str) -> float:
        """Seconds to tell a blocked client to wait (Retry-After); 0.0 to let it try."""
        wait = self.throttle.blocked(ip)
        if wait:
            self.metrics.rate_limited_by["auth"].inc()
        return wait

    async def auth_failed(self, ip: str) -> None:
        """Count a failed authentication; if it put `ip` past the limit, tell every node."""
        before = self.throttle.blocked(ip)
        seconds = await self.throttle.failed(ip)
        if seconds and not before:
            log.warning("too many failed authentications: refusing a client address",
                        extra={"ip": ip, "seconds": round(seconds, 1)})
            self._spawn(self.broker.publish_control(
                {"k": AUTH_BLOCK, "ip": ip, "ms": int(seconds * 1000)}))

    # -- the connection cap -----------------------------------------------------------------
    def opened(self, session: Closable) -> None:
        self._local[session.id] = session
        self.cap.opened(session.user, session.id, self._evict)

    def closed(self, session: Closable) -> None:
        if self._local.pop(session.id, None) is not None:
            self.cap.closed(session.user, session.id)

    def _evict(self, gone: list[tuple[str, str]]) -> None:
        remote = []
        for _node, session_id in gone:  # session ids are unique: no need to trust names
            if session_id in self._local:
                self._close(session_id)
            else:
                remote.append(session_id)
        if remote:
            self._spawn(self.broker.publish_control({"k": EVICT, "s": remote}))

    def _close(self, session_id: str) -> None:
        session = self._local.get(session_id)
        if session is None:
            return
        self.evicted += 1
        self.metrics.rate_limited_by["connections"].inc()
        session.close_when_answered(
            CloseCode.POLICY, f"max_connections_per_user ({self.max_per_user}) reached: "
            "the oldest connection is closed")

    def on_control(self, message: dict[str, Any]) -> None:
        """An eviction or an IP block published by any node (this one included)."""
        kind = message.get("k")
        if kind == EVICT and isinstance(message.get("s"), list):
            for session_id in message["s"]:
                if isinstance(session_id, str):
                    self._close(session_id)
        elif kind == AUTH_BLOCK and isinstance(message.get("ip"), str):
            ms = message.get("ms")
            if isinstance(ms, int) and 0 < ms <= 86_400_000:
                self.throttle.block(message["ip"], ms / 1000)

    # -- presence -----------------------------------------------------------------------------
    async def online(self, user: str) -> None:
        await self.damper.online(user)

    async def offline(self, user: str, seen: int | None) -> None:
        await self.damper.offline(user, seen)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a guard control message was not sent: %r", task.exception())

    async def close(self) -> None:
        await self.damper.close()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
