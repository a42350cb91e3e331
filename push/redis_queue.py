"""The push queue and gates of a cluster, in Redis: a push outlives the node that queued it.

Jobs are entries of one Redis Stream read through one consumer group (`XREADGROUP`): each
node is a consumer, an entry it reads stays in its pending list until `XACK`, and an entry
idle in a pending list longer than `claim_idle_s` (its node died) is taken over by a living
node with `XAUTOCLAIM`. A living node keeps its own entries fresh (`XCLAIM ... JUSTID`
resets their idle time) however slow a provider is. Delayed jobs (retries) wait in a sorted
set by due time (Redis `TIME`, one clock for all nodes) and are moved into the stream when
due, atomically. Finished entries are acknowledged and deleted, so the stream holds only
unfinished work; `max_jobs` bounds stream plus delayed set, and `MAXLEN ~` backs it up.

The stream and the delayed set share one hash tag (`{push}`) so the scripts that touch both
run on a Redis Cluster too; every gate key is used alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import ResponseError

from push.gates import SENT_MARK_S, Claim
from push.queue import PushJob, Taken, pack_job, unpack_job
from runtime.backoff import Backoff
from runtime.redis_batch import BatchScript, TurnBatcher
from runtime.redis_calls import REDIS_ERRORS, Outage, text
from runtime.tasks import stop_tasks

log = logging.getLogger("rendezvous.push")

GROUP = "push"
BLOCK_MS = 1000  # below the client's socket timeout (2 s) so a blocked read never times out
MAX_DELIVERIES = 5  # an entry handed out this often (XAUTOCLAIM counts) and never finished: dropped

# KEYS stream, delayed. ARGV job, delay ms, max jobs. 1 queued, 0 full.
PUT = """
local waiting = redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
if waiting >= tonumber(ARGV[3]) then return 0 end
local delay = tonumber(ARGV[2])
if delay > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], now + delay, ARGV[1])
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'j', ARGV[1])
end
return 1
"""

# KEYS stream, delayed. ARGV how many, max jobs. Moves due jobs into the stream; returns ms
# until the next delayed job is due, or -1 when none waits.
PROMOTE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, job in ipairs(due) do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'j', job)
  redis.call('ZREM', KEYS[2], job)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if nxt[2] then return math.max(0, tonumber(nxt[2]) - now) end
return -1
"""

# KEYS stream. ARGV group, entry id.
DONE = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
"""
PUT_SCRIPT = BatchScript(PUT)
DONE_SCRIPT = BatchScript(DONE)

# KEYS claim. ARGV ttl ms. {state, ms left}
CLAIM = """
if redis.call('SET', KEYS[1], 'busy', 'NX', 'PX', ARGV[1]) then return {'new', 0} end
local state = redis.call('GET', KEYS[1])
if not state then return {'busy', 0} end
return {state, redis.call('PTTL', KEYS[1])}
"""


class RedisPushQueue:
    """`PushQueue` on a Redis Stream with a consumer group (see the module docstring).

    `put` and `done`, one per message each, go through `batcher` (the node's
    `runtime.redis_batch.TurnBatcher`, or one of the queue's own): a turn's jobs share a
    pipeline with the turn's other Redis commands."""

    def __init__(self, client: Any, *, consumer: str, prefix: str = "rdv:",
                 max_jobs: int = 100_000, claim_idle_s: float = 60.0,
                 batch: int = 8, max_deliveries: int = MAX_DELIVERIES,
                 on_abandon: Callable[[], None] = lambda: None,
                 batcher: TurnBatcher | None = None) -> None:
        self.redis = client
        self._batcher = batcher or TurnBatcher(client)
        self.consumer = consumer
        self.stream = f"{prefix}{{push}}:jobs"
        self.delayed = f"{prefix}{{push}}:delayed"
        self.max_jobs = max_jobs
        self.claim_idle_s = claim_idle_s
        self.batch = batch
        self.max_deliveries = max_deliveries
        self.on_abandon = on_abandon
        self.reclaimed = 0  # entries taken over from a stopped consumer
        self.abandoned = 0  # entries dropped after `max_deliveries` reads
        self._promote = client.register_script(PROMOTE)
        self._buffer: deque[tuple[str, PushJob]] = deque()
        self._owned: set[str] = set()
        self._lock = asyncio.Lock()
        self._upkeep_task: asyncio.Task[None] | None = None
        self._upkeeps = 0
        self._claim_cursor = "0-0"
        self._depth = 0
        self._backoff = Backoff(0.1, 2.0)  # reading again after a failure: full jitter
        self._outage = Outage("push queue", logger=log)

    async def start(self) -> None:
        try:
            await self._ensure_group()
        except REDIS_ERRORS as error:  # the reader creates it once Redis answers
            self._outage.failed(error)
        self._upkeep_task = asyncio.get_running_loop().create_task(self._keep_up(),
                                                                   name="push-queue-upkeep")

    async def close(self) -> None:
        """Entries read but not finished stay pending: a living node takes them over."""
        if self._upkeep_task is not None:
            await stop_tasks([self._upkeep_task])

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def put(self, job: PushJob, delay_s: float = 0.0) -> bool:
        try:
            queued = await self._batcher.script(
                PUT_SCRIPT, (self.stream, self.delayed),
                (pack_job(job), max(0, round(delay_s * 1000)), self.max_jobs))
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return False
        self._outage.ok()
        return bool(queued)

    async def take(self) -> Taken:
        while True:
            if self._buffer:
                entry, job = self._buffer.popleft()
                self._owned.add(entry)
                return Taken(job, entry)
            async with self._lock:
                if not self._buffer:
                    await self._fill()

    async def done(self, taken: Taken) -> None:
        entry = str(taken.handle)
        try:
            await self._finish(entry)
        except REDIS_ERRORS as error:  # stays pending: taken over and deduplicated later
            self._outage.failed(error)
        self._owned.discard(entry)

    async def _finish(self, entry: str) -> None:
        await self._batcher.script(DONE_SCRIPT, (self.stream,), (GROUP, entry))

    def depth(self) -> int:
        return self._depth

    async def forget(self, drop: Callable[[PushJob], bool], page: int = 1000) -> int:
        """Remove the jobs `drop` picks (an erased user's) from the stream, the delayed set
        and this node's read buffer; how many. Reads the whole queue in pages: it is
        bounded by `max_jobs`, and erasures are rare. Raises the Redis error if any."""
        removed = 0
        kept = deque(item for item in self._buffer if not drop(item[1]))
        removed += len(self._buffer) - len(kept)
        self._buffer = kept
        start = "-"
        while True:
            entries = await self.redis.xrange(self.stream, min=start, max="+", count=page)
            doomed = [text(entry_id) for entry_id, fields in entries
                      if _picked((fields or {}).get(b"j"), drop)]
            if doomed:
                await self.redis.xack(self.stream, GROUP, *doomed)
                removed += int(await self.redis.xdel(self.stream, *doomed))
            if len(entries) < page:
                break
            start = "(" + text(entries[-1][0])
        offset = 0
        while True:
            jobs = await self.redis.zrange(self.delayed, offset, offset + page - 1)
            doomed_jobs = [job for job in jobs if _picked(job, drop)]
            if doomed_jobs:
                removed += int(await self.redis.zrem(self.delayed, *doomed_jobs))
            if len(jobs) < page:
                break
            offset += page - len(doomed_jobs)
        return removed

    # -- reading ------------------------------------------------------------------------
    async def _fill(self) -> None:
        try:
            wait_ms = int(await self._promote(keys=[self.stream, self.delayed],
                                              args=[self.batch * 4, self.max_jobs]))
            block = BLOCK_MS if wait_ms < 0 else max(1, min(BLOCK_MS, wait_ms))
            reply = await self.redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"},
                                                count=self.batch, block=block)
            for _stream, entries in reply or ():
                self._add(entries)
            self._outage.ok()
            self._backoff.reset()
        except ResponseError as error:
            if "NOGROUP" in str(error):  # Redis restarted empty, or the stream was deleted
                await self._ensure_group()
                return
            self._outage.failed(error)
            await asyncio.sleep(self._backoff.next())
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            await asyncio.sleep(self._backoff.next())

    async def _keep_up(self) -> None:
        """Every third of `claim_idle_s`, whether or not a worker is free to read."""
        while True:
            await asyncio.sleep(max(0.1, self.claim_idle_s / 3))
            try:
                await self._upkeep()
                self._outage.ok()
            except ResponseError as error:
                if "NOGROUP" in str(error):
                    await self._ensure_group()
                else:
                    self._outage.failed(error)
            except REDIS_ERRORS as error:
                self._outage.failed(error)

    async def _upkeep(self) -> None:
        """Keep our own entries fresh, take over idle ones of stopped nodes, read depth."""
        mine = list(self._owned) + [entry for entry, _ in self._buffer]
        if mine:
            await self.redis.xclaim(self.stream, GROUP, self.consumer, 0, mine, justid=True)
        self._depth = int(await self.redis.xlen(self.stream)) + int(
            await self.redis.zcard(self.delayed))
        self._upkeeps += 1
        if self._upkeeps % 30 == 0:
            await self._forget_stopped_consumers()
        if len(self._buffer) >= self.batch:
            return  # busy enough: take over more once these are done
        reply = await self.redis.xautoclaim(self.stream, GROUP, self.consumer,
                                            min_idle_time=int(self.claim_idle_s * 1000),
                                            start_id=self._claim_cursor, count=self.batch)
        self._claim_cursor = text(reply[0])
        before = len(self._buffer)
        self._add(await self._without_poison(reply[1]))
        taken_over = len(self._buffer) - before
        if taken_over:
            self.reclaimed += taken_over
            log.warning("took over pushes of a stopped node", extra={"jobs": taken_over})

    async def _without_poison(self, entries: list[Any]) -> list[Any]:
        """Drop the taken-over entries handed out `max_deliveries` times, this claim included:
        a job that stopped every node that tried it (a crash, not an error: the dispatcher
        survives those) would otherwise go round the cluster forever. Logged without its job,
        counted."""
        if not entries:
            return entries
        pipe = self.redis.pipeline(transaction=False)
        for entry_id, _ in entries:
            pipe.xpending_range(self.stream, GROUP, min=entry_id, max=entry_id, count=1)
        kept = []
        for entry, pending in zip(entries, await pipe.execute(), strict=True):
            reads = int(pending[0]["times_delivered"]) if pending else 0
            if reads < self.max_deliveries:
                kept.append(entry)
                continue
            self.abandoned += 1
            self.on_abandon()
            log.error("dropping a push job that no node finished",
                      extra={"entry": text(entry[0]), "reads": reads})
            await self._finish(text(entry[0]))
        return kept

    async def _forget_stopped_consumers(self) -> None:
        """Every node start is a new consumer: drop the ones with nothing pending that have
        been idle for ten claim periods (a living one is re-created by its next read)."""
        idle_ms = int(self.claim_idle_s * 10_000)
        for info in await self.redis.xinfo_consumers(self.stream, GROUP):
            name = text(info.get("name", info.get(b"name", b"")))
            if name != self.consumer and int(info.get("pending", 0)) == 0 \
                    and int(info.get("idle", 0)) > idle_ms:
                await self.redis.xgroup_delconsumer(self.stream, GROUP, name)

    def _add(self, entries: Iterable[Any]) -> None:
        for entry_id, fields in entries:
            entry = text(entry_id)
            data = (fields or {}).get(b"j")
            if data is None:
                continue  # trimmed by MAXLEN before anyone read it
            try:
                job = unpack_job(data)
            except ValueError:
                log.error("dropping an undecodable push job", extra={"entry": entry})
                asyncio.get_running_loop().create_task(self._finish(entry))
                continue
            self._buffer.append((entry, job))


def _picked(data: bytes | None, drop: Callable[[PushJob], bool]) -> bool:
    if data is None:
        return False
    try:
        return drop(unpack_job(data))
    except ValueError:
        return False


class RedisPushGates:
    """`PushGates` as Redis keys with a TTL. When Redis fails the gates open (a push too
    many beats a push lost): each outage is logged once."""

    def __init__(self, client: Any, *, prefix: str = "rdv:") -> None:
        self.redis = client
        self.prefix = f"{prefix}push:"
        self._claim = client.register_script(CLAIM)
        self._outage = Outage("push gates", logger=log)

    def keys_of(self, user: str, match_ids: Iterable[str]) -> list[str]:
        """The burst and delivery marks `user` may have in these matches (for erasure)."""
        return [f"{self.prefix}{kind}:{match_id}:{user}" for match_id in match_ids
                for kind in ("burst", "dlv")]

    async def first_in_burst(self, user: str, match_id: str, window_s: float) -> bool:
        if window_s <= 0:
            return True
        try:
            created = await self.redis.set(f"{self.prefix}burst:{match_id}:{user}", b"1",
                                           nx=True, px=max(1, int(window_s * 1000)))
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return True
        self._outage.ok()
        return bool(created)

    async def mark_delivered(self, user: str, match_id: str, window_s: float) -> None:
        if window_s <= 0:
            return
        try:
            await self.redis.set(f"{self.prefix}dlv:{match_id}:{user}", b"1",
                                 px=max(1, int(window_s * 1000)))
        except REDIS_ERRORS as error:
            self._outage.failed(error)

    async def recently_delivered(self, user: str, match_id: str) -> bool:
        try:
            found = await self.redis.exists(f"{self.prefix}dlv:{match_id}:{user}")
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return False
        return bool(found)

    async def claim(self, push_id: str, ttl_s: float) -> tuple[Claim, float]:
        try:
            state, left_ms = await self._claim(keys=[f"{self.prefix}id:{push_id}"],
                                               args=[max(1, int(ttl_s * 1000))])
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return Claim.NEW, 0.0
        return Claim(text(state)), max(0, int(left_ms)) / 1000

    async def finish(self, push_id: str, final: bool) -> None:
        key = f"{self.prefix}id:{push_id}"
        try:
            if final:
                await self.redis.set(key, b"sent", px=int(SENT_MARK_S * 1000))
            else:
                await self.redis.delete(key)
        except REDIS_ERRORS as error:
            self._outage.failed(error)

    async def refresh(self, push_ids: Iterable[str], ttl_s: float) -> None:
        ids = list(push_ids)
        if not ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for push_id in ids:
                    pipe.pexpire(f"{self.prefix}id:{push_id}", max(1, int(ttl_s * 1000)))
                await pipe.execute()
        except REDIS_ERRORS as error:
            self._outage.failed(error)
