"""The opener ledger of a cluster (`server/backends/openers.py`), in Redis.

Per user, under one hash tag (`{user}`) so the script runs on a Redis Cluster too: a sorted
set of the matches opened in the window, scored by when (Redis `TIME`: one clock for every
node), and a hash of match -> digest of the opener's normalised text, kept only when
duplicates are checked. Both expire a window after the last opener, so an idle user costs
nothing. A Redis failure refuses the send (`OpenersUnavailable`: the client retries):
admitting openers a limit should have refused would make it no limit.
"""

from __future__ import annotations

from runtime.redis_batch import BatchScript, TurnBatcher
from runtime.redis_calls import REDIS_ERRORS, text
from server.backends.openers import (
    OPENER_WINDOW_MS,
    PENDING_MS,
    OpenerRules,
    OpenersUnavailable,
    OpenerVerdict,
    Verdict,
)

# KEYS: the user's openers (zset match -> ms), digests (hash match -> digest).
# ARGV: match, digest or "", per day (0: none), window ms, pending ms.
# Returns {verdict, retry ms}.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
if previous then
  if now - tonumber(previous) < tonumber(ARGV[5]) then return {'pending', 0} end
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local per_day = tonumber(ARGV[3])
if per_day > 0 and redis.call('ZCARD', KEYS[1]) >= per_day then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'limit', math.max(1, tonumber(oldest[2]) + window - now)}
end
if ARGV[2] ~= '' then
  local digests = redis.call('HGETALL', KEYS[2])
  for i = 1, #digests, 2 do
    if not redis.call('ZSCORE', KEYS[1], digests[i]) then
      redis.call('HDEL', KEYS[2], digests[i])
    elseif digests[i + 1] == ARGV[2] then
      return {'duplicate', 0}
    end
  end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], window)
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)
return {'ok', 0}
"""
ADMIT_SCRIPT = BatchScript(ADMIT)


class RedisOpenerLedger:
    def __init__(self, batcher: TurnBatcher, rules: OpenerRules, *, prefix: str = "rdv:",
                 window_ms: int = OPENER_WINDOW_MS, pending_ms: int = PENDING_MS) -> None:
        self._batcher = batcher
        self.rules = rules
        self._prefix = prefix
        self.window_ms = window_ms
        self.pending_ms = pending_ms

    def _keys(self, user: str) -> tuple[str, str]:
        base = f"{self._prefix}openers:{{{user}}}"
        return base, base + ":digests"

    async def admit(self, user: str, match_id: str, digest: str | None) -> OpenerVerdict:
        try:
            verdict, retry_ms = await self._batcher.script(
                ADMIT_SCRIPT, self._keys(user),
                (match_id, digest or "", self.rules.per_day, self.window_ms,
                 self.pending_ms))
        except REDIS_ERRORS as exc:
            raise OpenersUnavailable(str(exc)) from exc
        name: Verdict = text(verdict)  # type: ignore[assignment]
        return OpenerVerdict(name, int(retry_ms))

    async def forget(self, user: str) -> None:
        try:
            await self._batcher.call_many([("DEL", key) for key in self._keys(user)])
        except REDIS_ERRORS as exc:
            raise OpenersUnavailable(str(exc)) from exc

    async def release(self, user: str, match_id: str) -> None:
        openers, digests = self._keys(user)
        try:
            await self._batcher.call_many([("ZREM", openers, match_id),
                                           ("HDEL", digests, match_id)])
        except REDIS_ERRORS as exc:
            raise OpenersUnavailable(str(exc)) from exc
