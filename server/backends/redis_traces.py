"""`UserTraces` on Redis: the keys a user has in a cluster's Redis, deleted for erasure.

Each key is built by the backend that owns it (its `key` or `*_key` method), so a change of
layout there changes it here. Keys are deleted one command each (a Redis Cluster may hold
them on different shards). The in-process fallbacks those backends keep while Redis is down
are cleared too. A Redis error is `TracesUnavailable`: the erasure retries the step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from push.queue import names
from push.redis_queue import RedisPushGates, RedisPushQueue
from runtime.redis_calls import REDIS_ERRORS, text
from server.backends.openers import OpenersUnavailable
from server.backends.redis_guards import RedisConnectionCap, RedisFlapMarks
from server.backends.redis_presence import RedisPresence
from server.backends.redis_state import RedisLimiter, RedisSendClaims
from server.backends.traces import Forgets, TracesUnavailable

_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})


class RedisTraces:
    def __init__(self, client: Any, *, presence: RedisPresence,
                 limiters: Sequence[RedisLimiter], claims: RedisSendClaims,
                 cap: RedisConnectionCap, marks: RedisFlapMarks, queue: RedisPushQueue,
                 gates: RedisPushGates) -> None:
        self.redis = client
        self.presence = presence
        self.limiters = limiters
        self.claims = claims
        self.cap = cap
        self.marks = marks
        self.queue = queue
        self.gates = gates
        self.counters: list[Forgets] = []  # quotas and openers, added by server/compose.py

    def also_forget(self, counters: Forgets) -> None:
        self.counters.append(counters)

    async def _delete(self, keys: Iterable[str]) -> None:
        try:
            for key in keys:
                await self.redis.delete(key)
        except REDIS_ERRORS as error:
            raise TracesUnavailable(f"redis: {error}") from error

    async def forget_sessions(self, user: str) -> None:
        self.cap.forget_local(user)
        self.marks.forget_local(user)
        p = self.presence
        shard = p.index_key(user)
        try:
            members = [text(m) for m in await self.redis.zrange(p.sessions_key(user), 0, -1)]
            entries = {p.index_member(user, m) for m in members}
            pattern = f"{len(user)}:{user}|".translate(_GLOB) + "*"
            async for entry, _ in self.redis.zscan_iter(shard, match=pattern):
                entries.add(text(entry))
            if entries:
                await self.redis.zrem(shard, *entries)
        except REDIS_ERRORS as error:
            raise TracesUnavailable(f"redis: {error}") from error
        await self._delete((p.sessions_key(user), p.seen_key(user), self.cap.key(user),
                            self.marks.key(user)))

    async def forget_limits(self, user: str) -> None:
        for limiter in self.limiters:
            limiter.forget_local(user)
        await self._delete(limiter.key(user) for limiter in self.limiters)
        try:
            for counters in self.counters:
                await counters.forget(user)
        except (*REDIS_ERRORS, OpenersUnavailable) as error:
            raise TracesUnavailable(f"redis: {error}") from error

    async def forget_claims(self, user: str, match_id: str, client_ids: Sequence[str]) -> None:
        await self._delete(self.claims.key(match_id, user, c) for c in client_ids)

    async def forget_pushes(self, user: str, match_ids: Iterable[str]) -> int:
        await self._delete(self.gates.keys_of(user, match_ids))
        try:
            return await self.queue.forget(lambda job: names(job, user))
        except REDIS_ERRORS as error:
            raise TracesUnavailable(f"redis: {error}") from error
