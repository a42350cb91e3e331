"""Who is online: sessions with a TTL that their node refreshes, and each user's last seen.

Presence is TTL plus refresh, never only connect and disconnect events: a session whose node
died stops being refreshed and expires by itself. `MemoryPresence` is the embedded default;
a Redis implementation keeps the same contract across nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

SEEN_GRANULARITY_MS = 60_000  # last seen is rounded down to the minute: coarse on purpose


def coarse(ms: int) -> int:
    return ms - ms % SEEN_GRANULARITY_MS


@dataclass(frozen=True, slots=True)
class Status:
    online: bool
    seen: int | None  # coarse unix ms of the last time the user was online, if known


class Presence(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def connect(self, user: str, session: str) -> bool:
        """Mark a session online; True if the user was offline before it."""

    async def disconnect(self, user: str, session: str) -> int | None:
        """Mark a session gone; the user's coarse last-seen if that was their last session,
        else None."""

    async def refresh(self, sessions: Iterable[tuple[str, str]]) -> None:
        """Extend the TTL of these (user, session) pairs; called periodically by their node."""

    async def status(self, users: Iterable[str]) -> dict[str, Status]:
        """Online state and last seen of each user (expired sessions count as gone)."""

    async def reap(self) -> list[tuple[str, int]]:
        """Remove sessions whose TTL ran out (their node died or hung) and return
        (user, coarse last seen) for each user that this left offline. Each expired session
        is reaped once, by whichever node calls first, so one node announces it."""


class MemoryPresence:
    """In-process presence with the same TTL semantics as the Redis one."""

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.time,
                 ops: Counter | None = None) -> None:
        self.ttl_s = ttl_s
        self._ops = ops  # rendezvous_presence_ops{op}, counted as the Redis presence does
        self._clock = clock
        self._sessions: dict[str, dict[str, float]] = {}  # user -> session -> expiry
        self._seen: dict[str, int] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _count(self, op: str) -> None:
        if self._ops is not None:
            self._ops.labels(op).inc()

    def _drop_expired(self, user: str, now: float) -> dict[str, float]:
        """The user's live sessions, after turning expired ones into last seen."""
        sessions = self._sessions.get(user, {})
        for session, expiry in list(sessions.items()):
            if expiry <= now:
                del sessions[session]
                self._seen[user] = max(self._seen.get(user, 0),
                                       coarse(int((expiry - self.ttl_s) * 1000)))
        if not sessions:
            self._sessions.pop(user, None)
        return sessions

    async def connect(self, user: str, session: str) -> bool:
        self._count("connect")
        now = self._clock()
        was_online = bool(self._drop_expired(user, now))
        self._sessions.setdefault(user, {})[session] = now + self.ttl_s
        return not was_online

    async def disconnect(self, user: str, session: str) -> int | None:
        self._count("disconnect")
        now = self._clock()
        sessions = self._drop_expired(user, now)
        if sessions.pop(session, None) is None:
            return None
        if sessions:
            return None
        self._sessions.pop(user, None)
        seen = self._seen[user] = coarse(int(now * 1000))
        return seen

    def forget(self, user: str) -> None:
        """Drop every session and the last seen of `user` (an erased user's)."""
        self._sessions.pop(user, None)
        self._seen.pop(user, None)

    async def refresh(self, sessions: Iterable[tuple[str, str]]) -> None:
        """Extend live sessions only: a session removed meanwhile is not brought back."""
        self._count("refresh")
        expiry = self._clock() + self.ttl_s
        for user, session in sessions:
            live = self._sessions.get(user)
            if live is not None and session in live:
                live[session] = expiry

    async def status(self, users: Iterable[str]) -> dict[str, Status]:
        """Read-only: an expired session counts as gone but is left for `reap` to report."""
        self._count("status")
        now = self._clock()
        out = {}
        for user in users:
            expiries = self._sessions.get(user, {}).values()
            online = any(e > now for e in expiries)
            seen = self._seen.get(user)
            expired = [coarse(int((e - self.ttl_s) * 1000)) for e in expiries if e <= now]
            if not online and expired:
                seen = max([seen or 0, *expired])
            out[user] = Status(online, seen)
        return out

    async def reap(self) -> list[tuple[str, int]]:
        self._count("reap")
        now = self._clock()
        gone = []
        for user, sessions in list(self._sessions.items()):
            if any(e <= now for e in sessions.values()) and not self._drop_expired(user, now):
                gone.append((user, self._seen[user]))
        return gone
