"""`RedisQuotas`: the daily allowances counted once for the whole cluster.

Each spend is one Lua script on one key (INCR, and DECR again when that went past the
limit, inside the script: no other command runs in between, so no two nodes can both take
the last unit). A user's keys share the hash tag `{user}`, so the give-back script, which
touches the counter and its once-only mark, runs on one Redis Cluster slot. Commands go
through the node's `TurnBatcher` with its other Redis work of the loop turn. When Redis is
down, a node counts in its own memory (`rendezvous_redis_fallbacks_total{what="quotas"}`):
the swipe goes on, its quota checked per node until Redis answers again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runtime.redis_batch import BatchScript, TurnBatcher
from runtime.redis_calls import REDIS_ERRORS, Outage
from server.backends.quotas import Quotas
from server.metrics import Metrics

# KEYS[1] the counter; ARGV limit, expiry (unix ms). Left after the spend, or -1.
SPEND = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
local limit = tonumber(ARGV[1])
if n > limit then
  redis.call('DECR', KEYS[1])
  return -1
end
return limit - n
"""
SPEND_SCRIPT = BatchScript(SPEND)

# KEYS[1] the counter, KEYS[2] the give-back mark of one swipe; ARGV[1] the mark's TTL (ms).
GIVE_BACK = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  return 0
end
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then
  redis.call('DECR', KEYS[1])
  return 1
end
return 0
"""
GIVE_BACK_SCRIPT = BatchScript(GIVE_BACK)


_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})


class RedisQuotas:
    def __init__(self, batcher: TurnBatcher, *, prefix: str, fallback: Quotas,
                 metrics: Metrics) -> None:
        self._batcher = batcher
        self._prefix = f"{prefix}q:"
        self._fallback = fallback
        self._outage = Outage("quotas", metrics.redis_fallbacks)

    def _key(self, user: str, kind: str, period: int) -> str:
        return f"{self._prefix}{{{user}}}:{kind}:{period}"

    async def spend(self, user: str, kind: str, period: int, limit: int,
                    expires_ms: int) -> int:
        try:
            reply = await self._batcher.script(SPEND_SCRIPT, (self._key(user, kind, period),),
                                               (limit, expires_ms))
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return await self._fallback.spend(user, kind, period, limit, expires_ms)
        self._outage.ok()
        return int(reply)

    async def give_back(self, user: str, kind: str, period: int, token: str,
                        expires_ms: int) -> bool:
        mark = f"{self._prefix}{{{user}}}:back:{token}"
        ttl_ms = max(1, expires_ms - period)  # a period's length: past it nothing is owed
        try:
            reply = await self._batcher.script(
                GIVE_BACK_SCRIPT, (self._key(user, kind, period), mark), (ttl_ms,))
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return await self._fallback.give_back(user, kind, period, token, expires_ms)
        self._outage.ok()
        return bool(int(reply))

    async def forget(self, user: str) -> None:
        """The user's keys all carry `{user}` as their hash tag: one shard's SCAN finds the
        counters and give-back marks (a few per day, each expiring with its day)."""
        await self._fallback.forget(user)
        client = self._batcher.client
        pattern = f"{self._prefix}{{{user}}}:".translate(_GLOB) + "*"
        async for key in client.scan_iter(match=pattern):
            await client.delete(key)

    async def used(self, user: str, kinds: Sequence[str], period: int) -> dict[str, int]:
        try:
            replies: list[Any] = await self._batcher.call_many(
                [("GET", self._key(user, kind, period)) for kind in kinds])
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return await self._fallback.used(user, kinds, period)
        self._outage.ok()
        return {kind: int(reply or 0) for kind, reply in zip(kinds, replies, strict=True)}
