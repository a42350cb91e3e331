"""What the gateway and the HTTP API ask when a client connects, fails to authenticate or
leaves: the per-user connection cap and the failed-auth throttle (presence, damped, is
server/services/presence.py's).

Everything here runs at connect, auth-failure or disconnect time, never per frame
(docs/operations.md, "Connection limits"). The cluster-wide parts travel as small control
messages: an eviction of a session held by another node, and a block of an IP that one
node saw pass the limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from protocol.errors import CloseCode
from server.backends.guards import AuthThrottle, ConnectionCap
from server.metrics import Metrics

log = logging.getLogger("rendezvous.guard")

EVICT = "evict"  # control kinds (see `on_control`)
AUTH_BLOCK = "auth_block"
GetHeader = Callable[[str], "str | None"]


class Closable(Protocol):
    """The part of a hub session the guard needs."""

    user: str
    id: str

    def close_when_answered(self, code: int, reason: str) -> None: ...


class Publisher(Protocol):
    async def publish_control(self, message: dict[str, Any]) -> None: ...


class ConnectionGuard:
    """The connection cap and the auth throttle of one node."""

    def __init__(self, *, node: str, cap: ConnectionCap, max_per_user: int,
                 throttle: AuthThrottle, broker: Publisher,
                 metrics: Metrics, ip_header: str | None = None) -> None:
        self.node = node
        self.cap = cap
        self.max_per_user = max_per_user
        self.throttle = throttle
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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a guard control message was not sent: %r", task.exception())

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
