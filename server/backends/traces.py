"""What a user leaves in a node's fast state (not the store): presence and last seen,
connection-cap entries, flap marks, rate-limit buckets, send claims, push gates and queued
push jobs. `UserTraces` removes it for account erasure (docs/privacy.md, "Erasure"):
`MemoryTraces` for the embedded default's in-process state, `RedisTraces`
(server/backends/redis_traces.py) for a cluster's Redis keys. Every call is idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from push.gates import MemoryPushGates
from push.queue import MemoryPushQueue, names
from server.backends.cluster_state import MemoryLimiter
from server.backends.guards import MemoryConnectionCap, MemoryFlapMarks
from server.backends.presence import MemoryPresence


class Forgets(Protocol):
    """A backend keeping per-user counters of its own: quotas, the opener ledger."""

    async def forget(self, user: str) -> None: ...


class TracesUnavailable(Exception):
    """The fast state (Redis) could not be cleaned now: temporary, the erasure retries."""


class UserTraces(Protocol):
    async def forget_sessions(self, user: str) -> None:
        """Presence sessions and last seen, connection-cap entries and flap marks. Run once
        the user's sockets are closed (a close writes a last seen)."""

    def also_forget(self, counters: Forgets) -> None:
        """Clear `counters` of the user with the rate limits (quotas, openers)."""

    async def forget_limits(self, user: str) -> None:
        """The user's rate-limit buckets (sends, swipes), daily quotas and openers."""

    async def forget_claims(self, user: str, match_id: str, client_ids: Sequence[str]) -> None:
        """The send claims of the user's messages in the match."""

    async def forget_pushes(self, user: str, match_ids: Iterable[str]) -> int:
        """Queued push jobs to or about the user, and their push gates in these matches;
        how many jobs went."""


class MemoryTraces:
    """`UserTraces` of the embedded default: the in-process backends' dicts."""

    def __init__(self, *, presence: MemoryPresence, limiters: Sequence[MemoryLimiter],
                 cap: MemoryConnectionCap, marks: MemoryFlapMarks, queue: MemoryPushQueue,
                 gates: MemoryPushGates) -> None:
        self.presence = presence
        self.limiters = limiters
        self.cap = cap
        self.marks = marks
        self.queue = queue
        self.gates = gates
        self.counters: list[Forgets] = []  # quotas and openers, added by server/compose.py

    def also_forget(self, counters: Forgets) -> None:
        self.counters.append(counters)

    async def forget_sessions(self, user: str) -> None:
        self.presence.forget(user)
        self.cap.forget(user)
        self.marks.forget(user)

    async def forget_limits(self, user: str) -> None:
        for limiter in self.limiters:
            limiter.forget(user)
        for counters in self.counters:
            await counters.forget(user)

    async def forget_claims(self, user: str, match_id: str, client_ids: Sequence[str]) -> None:
        return None  # the embedded default keeps no claims outside the store

    async def forget_pushes(self, user: str, match_ids: Iterable[str]) -> int:
        self.gates.forget(user, match_ids)
        return await self.queue.forget(lambda job: names(job, user))
