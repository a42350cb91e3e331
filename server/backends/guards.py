"""Connect-time guards: the per-user connection cap, failed-auth throttling per client IP
and the marks that damp presence flapping.

Each is a small protocol with an in-process implementation here (the embedded default, and
the Redis versions' fallback); the cluster-wide ones are in `server/backends/redis_guards.py`. They
act when a socket opens or closes, or an authentication fails, never per frame
(docs/operations.md, "Connection limits").
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

# (node, session) of each session to close: the node that holds it closes it
Evict = Callable[[list[tuple[str, str]]], None]
MAX_KEYS = 100_000  # IPs or users remembered in process; the least recently used go first


class ConnectionCap(Protocol):
    def opened(self, user: str, session: str, evict: Evict) -> None:
        """Count a new session of `user`. When the user has more than the cap open, call
        `evict` with the oldest sessions past it (on any node), never `session` itself.
        Never waits: `evict` may be called at once or after a Redis round trip."""

    def closed(self, user: str, session: str) -> None:
        """Forget a session (idempotent; also for one that was evicted)."""


class MemoryConnectionCap:
    """The sessions of each user on this process, oldest first."""

    def __init__(self, cap: int, node: str) -> None:
        self.cap = cap
        self.node = node
        self._by_user: dict[str, dict[str, None]] = {}

    def opened(self, user: str, session: str, evict: Evict) -> None:
        sessions = self._by_user.setdefault(user, {})
        sessions[session] = None
        excess = len(sessions) - self.cap
        if self.cap > 0 and excess > 0:
            oldest = [s for s, _ in zip(sessions, range(excess), strict=False)]
            for old in oldest:
                del sessions[old]
            evict([(self.node, old) for old in oldest])

    def closed(self, user: str, session: str) -> None:
        sessions = self._by_user.get(user)
        if sessions is not None:
            sessions.pop(session, None)
            if not sessions:
                del self._by_user[user]

    def count(self, user: str) -> int:
        return len(self._by_user.get(user, ()))

    def forget(self, user: str) -> None:
        self._by_user.pop(user, None)


class AuthThrottle(Protocol):
    def blocked(self, ip: str) -> float:
        """Seconds until `ip` may try to authenticate again; 0.0 if it may now. Answers
        from this process's memory: no I/O, so it costs nothing on a good connect."""

    async def failed(self, ip: str) -> float:
        """Count one failed authentication from `ip`: how long it is blocked now, 0.0 if
        it is not (yet). Counted for the whole cluster where the implementation shares
        state; blocks learnt from other nodes arrive through `block`."""

    def block(self, ip: str, seconds: float) -> None:
        """Refuse `ip` for `seconds` (another node saw it pass the limit)."""


class MemoryAuthThrottle:
    """`limit` failures per IP in a fixed window of `window_s`; past it the IP is blocked
    until the window ends. `limit` 0 turns the throttle off."""

    def __init__(self, limit: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._windows: OrderedDict[str, list[float]] = OrderedDict()  # ip -> [count, end]
        self._blocked: OrderedDict[str, float] = OrderedDict()  # ip -> until

    def blocked(self, ip: str) -> float:
        until = self._blocked.get(ip)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._blocked[ip]
            return 0.0
        return left

    async def failed(self, ip: str) -> float:
        return self.count(ip)

    def count(self, ip: str) -> float:
        """`failed`, without the coroutine (the Redis version's fallback)."""
        if self.limit <= 0:
            return 0.0
        now = self._clock()
        window = self._windows.get(ip)
        if window is None or window[1] <= now:
            window = self._windows[ip] = [0.0, now + self.window_s]
            if len(self._windows) > MAX_KEYS:
                self._windows.popitem(last=False)
        self._windows.move_to_end(ip)
        window[0] += 1
        if window[0] < self.limit:
            return 0.0
        self.block(ip, window[1] - now)
        return window[1] - now

    def block(self, ip: str, seconds: float) -> None:
        if seconds <= 0:
            return
        until = self._clock() + seconds
        self._blocked[ip] = max(until, self._blocked.get(ip, 0.0))
        self._blocked.move_to_end(ip)
        if len(self._blocked) > MAX_KEYS:
            self._blocked.popitem(last=False)


class FlapMarks(Protocol):
    async def mark(self, user: str, ttl_s: float) -> None:
        """Note that `user` just went offline and nobody was told yet (for `ttl_s`)."""

    async def take(self, user: str) -> bool:
        """Remove the mark; True if there was one. Of the two callers that race for a mark
        (a reconnect and the delayed offline announcement) exactly one gets True."""


class MemoryFlapMarks:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._marks: dict[str, float] = {}  # user -> expiry

    async def mark(self, user: str, ttl_s: float) -> None:
        self._marks[user] = self._clock() + ttl_s

    async def take(self, user: str) -> bool:
        expiry = self._marks.pop(user, None)
        return expiry is not None and expiry > self._clock()

    def forget(self, user: str) -> None:
        self._marks.pop(user, None)

    def __len__(self) -> int:
        return len(self._marks)
