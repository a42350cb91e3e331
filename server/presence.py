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

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, dict[str, float]] = {}  # user -> session -> expiry
        self._seen: dict[str, int] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _live(self, user: str, now: float) -> dict[str, float]:
        """The user's unexpired sessions; expired ones are dropped and become last seen."""
        sessions = self._sessions.get(user)
        if not sessions:
            return {}
        expired = [s for s, expiry in sessions.items() if expiry <= now]
        for s in expired:
            self._seen[user] = coarse(int((sessions.pop(s) - self.ttl_s) * 1000))
        if not sessions:
            del self._sessions[user]
        return sessions

    async def connect(self, user: str, session: str) -> bool:
        now = self._clock()
        was_online = bool(self._live(user, now))
        self._sessions.setdefault(user, {})[session] = now + self.ttl_s
        return not was_online

    async def disconnect(self, user: str, session: str) -> int | None:
        now = self._clock()
        sessions = self._live(user, now)
        if sessions.pop(session, None) is None:
            return None
        if sessions:
            return None
        self._sessions.pop(user, None)
        seen = self._seen[user] = coarse(int(now * 1000))
        return seen

    async def refresh(self, sessions: Iterable[tuple[str, str]]) -> None:
        expiry = self._clock() + self.ttl_s
        for user, session in sessions:
            self._sessions.setdefault(user, {})[session] = expiry

    async def status(self, users: Iterable[str]) -> dict[str, Status]:
        now = self._clock()
        return {u: Status(bool(self._sessions.get(u)) and bool(self._live(u, now)),
                          self._seen.get(u)) for u in users}

    async def reap(self) -> list[tuple[str, int]]:
        now = self._clock()
        gone = []
        for user, sessions in list(self._sessions.items()):
            if any(expiry <= now for expiry in sessions.values()) and not self._live(user, now):
                gone.append((user, self._seen[user]))
        return gone
