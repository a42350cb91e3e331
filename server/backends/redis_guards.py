"""The connect-time guards of `server/backends/guards.py` for a whole cluster, in Redis.

Every command goes through the node's `TurnBatcher` (runtime/redis_batch.py): a reconnect
storm's caps, failure counts and flap marks of one loop turn are one pipeline, and nothing
here runs per frame. Each key is touched alone, so all of it works on a Redis Cluster. A
Redis failure never refuses a connection: each guard falls back to its in-process version,
counts `redis_fallbacks` and logs the outage once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from runtime.redis_batch import BatchScript, TurnBatcher
from runtime.redis_calls import REDIS_ERRORS, Outage, text
from server.backends.guards import Evict, MemoryAuthThrottle, MemoryConnectionCap, MemoryFlapMarks
from server.metrics import Metrics

log = logging.getLogger(__name__)

CAP_KEEP_MS = 24 * 3600 * 1000  # a user's session list outlives their last connect by this

# KEYS[1] the user's sessions: `<node>|<session>` scored by connect time (Redis TIME, us);
# ARGV member, cap, keep ms. Adds the member and returns the oldest others past the cap,
# removed. A crashed node's sessions are never closed: they are the oldest, so the first
# connects past the cap take them out (docs/operations.md).
CAP = """
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local cap = tonumber(ARGV[2])
local excess = redis.call('ZCARD', KEYS[1]) - cap
if cap <= 0 or excess <= 0 then return {} end
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess)) do
  if #out < excess and m ~= ARGV[1] then out[#out + 1] = m end
end
redis.call('ZREM', KEYS[1], unpack(out))
return out
"""
CAP_SCRIPT = BatchScript(CAP)

# KEYS[1] the IP's failure count; ARGV window ms. Returns {count, ms left in the window}.
FAILED = """
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
"""
FAILED_SCRIPT = BatchScript(FAILED)


def _settled(future: asyncio.Future[Any], outage: Outage) -> None:
    """Done callback of a command nobody awaits: count its failure, never leave it unread."""
    if future.cancelled():
        return
    error = future.exception()
    if error is None:
        outage.ok()
    elif isinstance(error, REDIS_ERRORS):
        outage.failed(error)
    else:
        log.error("a Redis guard command failed", exc_info=error)


class RedisConnectionCap:
    """At most `cap` sessions per user over all nodes; the oldest go first."""

    def __init__(self, batcher: TurnBatcher, *, cap: int, node: str, prefix: str,
                 metrics: Metrics) -> None:
        self._batcher = batcher
        self.cap = cap
        self.node = node
        self._prefix = f"{prefix}conns:"
        self._args = (cap, CAP_KEEP_MS)
        self._outage = Outage("connection_cap", metrics.redis_fallbacks)
        self._fallback = MemoryConnectionCap(cap, node)

    def member(self, session: str) -> str:
        return f"{self.node}|{session}"

    def key(self, user: str) -> str:
        """The sorted set of `user`'s sessions (erasure deletes it)."""
        return self._prefix + user

    def forget_local(self, user: str) -> None:
        self._fallback.forget(user)

    def opened(self, user: str, session: str, evict: Evict) -> None:
        if self.cap <= 0:
            return
        try:
            reply = self._batcher.script(CAP_SCRIPT, (self._prefix + user,),
                                         (self.member(session), *self._args))
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            self._fallback.opened(user, session, evict)
            return
        reply.add_done_callback(lambda done: self._evict(done, user, session, evict))

    def _evict(self, reply: asyncio.Future[Any], user: str, session: str,
               evict: Evict) -> None:
        if reply.cancelled():
            return
        error = reply.exception()
        if error is not None:
            if not isinstance(error, REDIS_ERRORS):
                log.error("the connection cap script failed", exc_info=error)
                return
            self._outage.failed(error)
            self._fallback.opened(user, session, evict)
            return
        self._outage.ok()
        gone = []
        for member in reply.result() or ():
            node, _, old = text(member).rpartition("|")
            gone.append((node, old))
        if gone:
            evict(gone)

    def closed(self, user: str, session: str) -> None:
        self._fallback.closed(user, session)
        if self.cap <= 0:
            return
        try:
            reply = self._batcher.call("ZREM", self._prefix + user, self.member(session))
        except REDIS_ERRORS as error:  # BatchFull: the entry ages out as the oldest
            self._outage.failed(error)
            return
        reply.add_done_callback(lambda done: _settled(done, self._outage))


class RedisAuthThrottle:
    """Failed authentications counted per IP for the cluster; blocks are kept (and
    answered) in this process, and learnt from other nodes through `block`."""

    def __init__(self, batcher: TurnBatcher, *, limit: int, window_s: float, prefix: str,
                 metrics: Metrics) -> None:
        self._batcher = batcher
        self._prefix = f"{prefix}authfail:"
        self._window_ms = max(1, int(window_s * 1000))
        self._local = MemoryAuthThrottle(limit, window_s)
        self.limit = limit
        self._outage = Outage("auth_throttle", metrics.redis_fallbacks)

    def blocked(self, ip: str) -> float:
        return self._local.blocked(ip)

    def block(self, ip: str, seconds: float) -> None:
        self._local.block(ip, seconds)

    async def failed(self, ip: str) -> float:
        if self.limit <= 0:
            return 0.0
        try:
            count, left_ms = await self._batcher.script(FAILED_SCRIPT, (self._prefix + ip,),
                                                        (self._window_ms,))
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return self._local.count(ip)
        self._outage.ok()
        if int(count) < self.limit:
            return 0.0
        seconds = max(0.001, int(left_ms) / 1000)
        self._local.block(ip, seconds)
        return seconds


class RedisFlapMarks:
    """A key per user that went offline a moment ago; GETDEL hands it to one taker."""

    def __init__(self, batcher: TurnBatcher, *, prefix: str, metrics: Metrics) -> None:
        self._batcher = batcher
        self._prefix = f"{prefix}flap:"
        self._outage = Outage("presence_flaps", metrics.redis_fallbacks)
        self._fallback = MemoryFlapMarks()

    def key(self, user: str) -> str:
        """The mark's key (erasure deletes it)."""
        return self._prefix + user

    def forget_local(self, user: str) -> None:
        self._fallback.forget(user)

    async def mark(self, user: str, ttl_s: float) -> None:
        try:
            await self._batcher.call("SET", self._prefix + user, "1", "PX",
                                     max(1, int(ttl_s * 1000)))
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            await self._fallback.mark(user, ttl_s)
            return
        self._outage.ok()

    async def take(self, user: str) -> bool:
        local = await self._fallback.take(user)  # a mark made while Redis was down
        try:
            reply = await self._batcher.call("GETDEL", self._prefix + user)
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return local
        self._outage.ok()
        return local or reply is not None
