"""Presence shared by all nodes through Redis, with `MemoryPresence`'s semantics.

Per user, a sorted set of `<node>|<session>` scored by expiry (unix ms) and a last-seen key,
both under the user's hash tag so that one Lua script can change them atomically on a Redis
Cluster. A separate index of every session by expiry, sharded into a few sorted sets to
spread the writes over the cluster, lets `reap()` find expired sessions without scanning
users: each expired index entry is taken by exactly one reaper (its ZREM returns 1), which
then drops the user's expired sessions in one script and reports the user if none is left.

Connects, disconnects and status reads go through the node's `TurnBatcher`
(runtime/redis_batch.py): a reconnect storm's connects of one loop turn, script and index
entry each, are one pipeline.

A Redis failure never reaches the gateway: calls answer as if the user were offline and
unknown, count `redis_fallbacks{what="presence"}`, and the outage is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

from runtime.redis_batch import BatchScript, Command, TurnBatcher
from runtime.redis_calls import REDIS_ERRORS, Outage, RedisClient, text
from server.backends.presence import SEEN_GRANULARITY_MS, Status, coarse
from server.metrics import Metrics

log = logging.getLogger(__name__)

INDEX_SHARDS = 16  # index sorted sets: one would be a hot key, refreshed by every node
KEEP_EXTRA_MS = 600_000  # a user's key outlives its last expiry by this, for the reapers
SEEN_TTL_MS = 30 * 24 * 3600 * 1000  # last seen older than this is forgotten
BATCH = 100  # sessions or users per pipeline round trip: ~20 ms of loop time at most
REAP_BATCH = 500  # expired index entries taken per shard per reap
SHARD_TTL_EVERY_S = 1.0  # a connect extends its index shard's TTL at most this often

# Shared by the scripts: drop the user's expired sessions (a dead node's); as in
# MemoryPresence, the last refresh of the newest one (expiry - ttl) becomes last seen.
# Returns the user's last seen after that, or false if nothing expired.
DROP_EXPIRED = f"""
local function drop_expired(sessions, seen_key, now, ttl, seen_ttl)
  local gone = redis.call('ZRANGEBYSCORE', sessions, '-inf', now, 'WITHSCORES')
  if #gone == 0 then return false end
  redis.call('ZREMRANGEBYSCORE', sessions, '-inf', now)
  local last = tonumber(gone[#gone]) - ttl
  local seen = last - last % {SEEN_GRANULARITY_MS}
  local old = tonumber(redis.call('GET', seen_key))
  if old ~= nil and old >= seen then return old end
  redis.call('SET', seen_key, seen, 'PX', seen_ttl)
  return seen
end
"""

# KEYS sessions, seen; ARGV member, now, expiry, ttl, keep, seen_ttl. 1 if the user had no
# live session before this one.
CONNECT = DROP_EXPIRED + """
local now = tonumber(ARGV[2])
drop_expired(KEYS[1], KEYS[2], now, tonumber(ARGV[4]), ARGV[6])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
if before == 0 then return 1 end
return 0
"""

# KEYS sessions, seen; ARGV member, now, ttl, seen_ttl. The new last seen if that was the
# user's last live session, else -1.
DISCONNECT = DROP_EXPIRED + f"""
local now = tonumber(ARGV[2])
drop_expired(KEYS[1], KEYS[2], now, tonumber(ARGV[3]), ARGV[4])
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return -1 end
if redis.call('ZCARD', KEYS[1]) > 0 then return -1 end
local seen = now - now % {SEEN_GRANULARITY_MS}
redis.call('SET', KEYS[2], seen, 'PX', ARGV[4])
return seen
"""

# KEYS sessions, seen; ARGV now, ttl, seen_ttl, members this reaper took from the index.
# Returns {last seen if this left the user offline else -1, member, score, ...} where the
# members are those still live (refreshed since): the reaper puts them back in the index.
# Only the call that removes the user's last expired sessions sees them gone, so among
# racing reapers exactly one reports the user.
REAP = DROP_EXPIRED + """
local now = tonumber(ARGV[1])
local seen = drop_expired(KEYS[1], KEYS[2], now, tonumber(ARGV[2]), ARGV[3])
local out = {-1}
if seen and redis.call('EXISTS', KEYS[1]) == 0 then out[1] = seen end
for i = 4, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score then
    out[#out + 1] = ARGV[i]
    out[#out + 1] = score
  end
end
return out
"""
CONNECT_SCRIPT = BatchScript(CONNECT)
DISCONNECT_SCRIPT = BatchScript(DISCONNECT)


def scores(reply: Any) -> list[float]:
    """The scores of a ZRANGE WITHSCORES reply, flat (a raw pipeline) or in pairs (a
    client that parsed it)."""
    if reply and isinstance(reply[0], list | tuple):
        return [float(score) for _, score in reply]
    return [float(score) for score in reply[1::2]]


class RedisPresence:
    """Sessions of all nodes with a TTL each node refreshes for its own sessions.

    Expiries come from each node's clock (NTP-close is enough for TTLs of tens of seconds).
    Last seen of an expired session is its expiry minus this node's `ttl_s`, so nodes of a
    cluster are expected to share `presence_ttl_s`.
    """

    def __init__(self, client: RedisClient, *, node: str, prefix: str, ttl_s: float,
                 metrics: Metrics, clock: Callable[[], float] = time.time,
                 batcher: TurnBatcher | None = None) -> None:
        self._redis = client
        self._batcher = batcher or TurnBatcher(client)
        self.node = node
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.keep_ms = 2 * self.ttl_ms + KEEP_EXTRA_MS
        self._clock = clock
        self._ops = metrics.presence_ops
        self._count_connect = metrics.presence_ops.labels("connect")
        self._count_disconnect = metrics.presence_ops.labels("disconnect")
        self._count_status = metrics.presence_ops.labels("status")
        self._outage = Outage("presence", metrics.redis_fallbacks)
        self._shard_ttl_at: dict[str, float] = {}  # index shard -> when a connect extended it

    # -- keys: a user's keys share the hash tag {u:<user>}; the index is sharded ---------
    def sessions_key(self, user: str) -> str:
        return f"{self.prefix}{{u:{user}}}:p"

    def seen_key(self, user: str) -> str:
        return f"{self.prefix}{{u:{user}}}:s"

    def index_key(self, user: str) -> str:
        return self.index_shard(zlib.crc32(user.encode()) % INDEX_SHARDS)

    def index_shard(self, n: int) -> str:
        return f"{self.prefix}presence-index:{n}"

    def member(self, session: str) -> str:
        return f"{self.node}|{session}"

    @staticmethod
    def index_member(user: str, member: str) -> str:
        """`user|node|session`, the user length-prefixed: user ids may hold any character."""
        return f"{len(user)}:{user}|{member}"

    @staticmethod
    def parse_index_member(entry: str) -> tuple[str, str]:
        """(user, sessions member) of an index entry."""
        length, _, rest = entry.partition(":")
        n = int(length)
        return rest[:n], rest[n + 1:]

    def _now(self) -> int:
        return int(self._clock() * 1000)

    # -- the Presence protocol -------------------------------------------------------------
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None  # the client is shared; Backends closes it

    async def connect(self, user: str, session: str) -> bool:
        self._count_connect.inc()
        now = self._now()
        expiry = now + self.ttl_ms
        member = self.member(session)
        shard = self.index_key(user)
        # The script and the index entry in one batch: unindexed, the session would still
        # count (and expire); only the reapers would miss it.
        commands = [
            self._batcher.command(CONNECT_SCRIPT, (self.sessions_key(user), self.seen_key(user)),
                                  (member, now, expiry, self.ttl_ms, self.keep_ms,
                                   SEEN_TTL_MS)),
            ("ZADD", shard, expiry, self.index_member(user, member)),
            *self._shard_ttl(shard)]
        try:
            first = (await self._batcher.call_many(commands))[0]
            if isinstance(first, Exception):
                raise first
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return False
        self._outage.ok()
        return bool(first)

    def _shard_ttl(self, shard: str) -> list[Command]:
        """Extend an index shard's TTL, at most every `SHARD_TTL_EVERY_S` (the refresh
        extends it too): a storm of connects need not repeat it for each."""
        now = time.monotonic()
        if now - self._shard_ttl_at.get(shard, -SHARD_TTL_EVERY_S) < SHARD_TTL_EVERY_S:
            return []
        self._shard_ttl_at[shard] = now
        return [("PEXPIRE", shard, self.keep_ms, "NX"),  # a new key has no TTL yet
                ("PEXPIRE", shard, self.keep_ms, "GT")]

    async def disconnect(self, user: str, session: str) -> int | None:
        self._count_disconnect.inc()
        now = self._now()
        member = self.member(session)
        # Left behind (the batch failed), the index entry costs a reaper one look.
        commands = [
            self._batcher.command(DISCONNECT_SCRIPT,
                                  (self.sessions_key(user), self.seen_key(user)),
                                  (member, now, self.ttl_ms, SEEN_TTL_MS)),
            ("ZREM", self.index_key(user), self.index_member(user, member))]
        try:
            reply = (await self._batcher.call_many(commands))[0]
            if isinstance(reply, Exception):
                raise reply
            seen = int(reply)
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return None
        self._outage.ok()
        return seen if seen >= 0 else None

    async def _quietly(self, pipe: Any) -> None:
        """Run index upkeep whose failure the caller's answer does not depend on."""
        try:
            await pipe.execute()
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return
        self._outage.ok()

    async def refresh(self, sessions: Iterable[tuple[str, str]]) -> None:
        """ZADD XX on the user's set: a session removed meanwhile (disconnected, or reaped
        while this node hung) stays removed. The index entry is written without XX: an entry
        without a session costs a reaper one look, a session without an entry would never
        be reaped."""
        self._ops.labels("refresh").inc()
        pairs = iter(sessions)
        try:
            while chunk := list(islice(pairs, BATCH)):
                expiry = self._now() + self.ttl_ms
                pipe = self._redis.pipeline(transaction=False)
                for user, session in chunk:
                    key = self.sessions_key(user)
                    pipe.zadd(key, {self.member(session): expiry}, xx=True)
                    pipe.pexpire(key, self.keep_ms, gt=True)
                self._index(pipe, [(user, self.member(session), expiry)
                                   for user, session in chunk])
                await pipe.execute()
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return
        self._outage.ok()

    def _index(self, pipe: Any, entries: list[tuple[str, str, int]]) -> None:
        """Queue index entries (user, member, expiry) on `pipe`; each index shard touched
        lives `keep_ms` longer, so that the index of a cluster that went away disappears."""
        shards = set()
        for user, member, expiry in entries:
            shard = self.index_key(user)
            shards.add(shard)
            pipe.zadd(shard, {self.index_member(user, member): expiry})
        for shard in shards:
            pipe.pexpire(shard, self.keep_ms, nx=True)  # a new key has no TTL yet
            pipe.pexpire(shard, self.keep_ms, gt=True)

    async def status(self, users: Iterable[str]) -> dict[str, Status]:
        self._count_status.inc()
        wanted = list(dict.fromkeys(users))
        now = self._now()
        out: dict[str, Status] = {}
        try:
            chunks = [wanted[start:start + BATCH] for start in range(0, len(wanted), BATCH)]
            pending = [self._batcher.call_many(
                [command for user in chunk for command in (
                    ("ZRANGE", self.sessions_key(user), 0, -1, "WITHSCORES"),
                    ("GET", self.seen_key(user)))])
                for chunk in chunks]
            for chunk, replies in zip(chunks, await asyncio.gather(*pending), strict=True):
                for i, user in enumerate(chunk):
                    sessions, seen = replies[2 * i], replies[2 * i + 1]
                    for reply in (sessions, seen):
                        if isinstance(reply, Exception):
                            raise reply
                    out[user] = self._status(scores(sessions), seen, now)
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return {u: Status(False, None) for u in wanted}
        self._outage.ok()
        return out

    def _status(self, sessions: list[float], seen: Any, now: int) -> Status:
        """A user's status from their sessions' expiries and stored last seen; like
        MemoryPresence, an expired session (not yet reaped) is gone and its last refresh
        is last seen."""
        last = int(seen) if seen is not None else None
        expired = [score for score in sessions if score <= now]
        if expired:
            derived = coarse(int(max(expired)) - self.ttl_ms)
            last = derived if last is None else max(last, derived)
        return Status(len(expired) < len(sessions), last)

    async def reap(self) -> list[tuple[str, int]]:
        self._ops.labels("reap").inc()
        try:
            gone = await self._reap(self._now())
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return []
        self._outage.ok()
        return gone

    async def _reap(self, now: int) -> list[tuple[str, int]]:
        shards = [self.index_shard(n) for n in range(INDEX_SHARDS)]
        pipe = self._redis.pipeline(transaction=False)
        for shard in shards:
            pipe.zrangebyscore(shard, "-inf", now, start=0, num=REAP_BATCH)
        due = [(shard, text(entry)) for shard, entries in zip(shards, await pipe.execute(),
                                                                strict=True)
               for entry in entries]
        if not due:
            return []
        # Taking an entry is removing it: the reaper whose ZREM returns 1 owns the session.
        pipe = self._redis.pipeline(transaction=False)
        for shard, entry in due:
            pipe.zrem(shard, entry)
        taken: dict[str, list[str]] = {}
        for (_, entry), removed in zip(due, await pipe.execute(), strict=True):
            if removed:
                user, member = self.parse_index_member(entry)
                taken.setdefault(user, []).append(member)
        if not taken:
            return []
        pipe = self._redis.pipeline(transaction=False)
        users = list(taken)
        for user in users:
            pipe.eval(REAP, 2, self.sessions_key(user), self.seen_key(user), now,
                      self.ttl_ms, SEEN_TTL_MS, *taken[user])
        gone: list[tuple[str, int]] = []
        back: list[tuple[str, str, int]] = []  # entries to put back in the index
        for user, reply in zip(users, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, Exception):  # not reaped: expired entries, the next reap
                log.warning("reaping %r failed: %r", user, reply)
                back.extend((user, member, now) for member in taken[user])
                continue
            seen = int(reply[0])
            if seen >= 0:
                gone.append((user, seen))
            for j in range(1, len(reply), 2):  # refreshed after this reaper read the index
                back.append((user, text(reply[j]), int(float(text(reply[j + 1])))))
        if back:
            pipe = self._redis.pipeline(transaction=False)
            self._index(pipe, back)
            await self._quietly(pipe)
        return gone
