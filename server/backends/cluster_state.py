"""Small pieces of state that must agree across nodes: rate limits, send claims, node ids.

Each is a protocol with an in-process implementation for the embedded default; the Redis
implementations live in `server/backends/redis_state.py`. A Redis failure never stops the chat: the
Redis versions fall back to the local behaviour and say so in a metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

from server.backends.ratelimit import RateLimiter


class Limiter(Protocol):
    async def take(self, key: str) -> float:
        """Spend one token of `key`'s bucket: 0.0 if allowed, else seconds to wait."""


class MemoryLimiter:
    """Token buckets in this process."""

    def __init__(self, rate: float, burst: int) -> None:
        self._buckets = RateLimiter(rate, burst)

    async def take(self, key: str) -> float:
        return self._buckets.take(key, time.monotonic())

    def forget(self, key: str) -> None:
        self._buckets.forget(key)


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to claiming a client message id (`c`) before storing the message.

    new: go ahead and store it; done: it was stored before as (`id`, `ts`), ack that;
    pending: another node is storing it right now, the client should retry shortly.
    `exclusive` (with new): the claim was won in a claim store every node shares, so the
    store may skip its own idempotency read (`Store.save_message(claimed=True)`); a "new"
    that only means "no claim store answered" (none configured, or Redis is down) is not.
    """

    state: Literal["new", "done", "pending"]
    id: int = 0
    ts: int = 0
    exclusive: bool = False


class SendClaims(Protocol):
    async def claim(self, match_id: str, sender: str, client_id: str) -> Claim:
        """Claim (match, sender, c) for a send about to be stored."""

    def confirm(self, match_id: str, sender: str, client_id: str, message_id: int,
                ts: int) -> None:
        """The message is durably stored as (`message_id`, `ts`): later claims get done.
        Queued at the call and not waited for: what the caller sends to Redis next (the
        message's publish) goes after it in the same pipeline, so no node can see the
        message before a resend would find the claim done."""

    async def release(self, match_id: str, sender: str, client_id: str) -> None:
        """The store failed: drop the claim so that the client's retry can proceed."""


class StoreClaims:
    """No claims outside the store: the store's own idempotency key settles resends (the
    embedded default has one writer, so no two stores race)."""

    async def claim(self, match_id: str, sender: str, client_id: str) -> Claim:
        return Claim("new")

    def confirm(self, match_id: str, sender: str, client_id: str, message_id: int,
                ts: int) -> None:
        return None

    async def release(self, match_id: str, sender: str, client_id: str) -> None:
        return None


class SendGate(Protocol):
    async def admit(self, user: str, match_id: str, client_id: str) -> tuple[float, Claim]:
        """A send's token and its claim, together: (0.0, claim) to go ahead, or (seconds
        to wait, _) when the token is refused, which leaves no claim behind."""


class SequentialSendGate:
    """The token, then the claim: two calls, for limiters and claims that answer at once
    (in-process) or that do not share a pipeline."""

    def __init__(self, limiter: Limiter, claims: SendClaims) -> None:
        self.limiter = limiter
        self.claims = claims

    async def admit(self, user: str, match_id: str, client_id: str) -> tuple[float, Claim]:
        wait = await self.limiter.take(user)
        if wait:
            return wait, Claim("new")
        return 0.0, await self.claims.claim(match_id, user, client_id)


class NodeIds(Protocol):
    async def acquire(self) -> int:
        """A node id (0..1023) no other running node holds; kept until `release`."""

    async def release(self) -> None: ...


class FixedNodeId:
    """The configured node id (the embedded default runs one node)."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    async def acquire(self) -> int:
        return self.node_id

    async def release(self) -> None:
        return None
