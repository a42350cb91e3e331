"""Cluster-wide rate limits, send claims and node-id leases in Redis, and the shared client.

Every key here is touched alone (one key per command or script), so all of it works on a
Redis Cluster as well as on one Redis. Takes, claims, confirms and releases go through the
node's `TurnBatcher` (runtime/redis_batch.py): all the sends of one loop turn cost one
pipeline, not a round trip each. A Redis failure never stops the chat: limits fall back to
this node's buckets, claims to the store's own idempotency, and each outage is logged once
and counted in `redis_fallbacks`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import FullJitterBackoff

from protocol.ids import MAX_NODE
from runtime.redis_batch import BatchScript, Command, TurnBatcher
from runtime.redis_calls import REDIS_ERRORS, Outage, RedisClient, text
from runtime.tasks import stop_tasks
from server.backends.cluster_state import Claim, Limiter
from server.config import Config
from server.metrics import Metrics

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0  # connect and read: past it the caller falls back instead of waiting
HEALTH_CHECK_S = 15  # PING a pooled connection idle this long before reusing it


def connect_redis(config: Config) -> Redis | RedisCluster:
    """The node's one Redis client (shared by broker, presence and state).

    Retries are kept to one quick reconnect (a pooled connection that died with a restarted
    Redis); longer outages are the callers' business, and they fall back rather than wait.
    Responses stay bytes: the broker carries binary frames on the same client.
    """
    options: dict[str, Any] = {"socket_timeout": TIMEOUT_S,
                               "socket_connect_timeout": TIMEOUT_S,
                               "socket_keepalive": True,
                               "health_check_interval": HEALTH_CHECK_S}
    # Full jitter (redis-py's ExponentialWithJitterBackoff caps after the jitter, so
    # from the third retry on every client waits exactly the cap, in step).
    backoff = FullJitterBackoff(base=0.02, cap=0.2)
    if config.redis_cluster_nodes:
        seeds = []
        for seed in config.redis_cluster_nodes:
            host, _, port = seed.rpartition(":")
            seeds.append(ClusterNode(host, int(port)))
        # Two retries let a command follow a failover (the client re-reads the slots).
        return RedisCluster(startup_nodes=seeds, retry=Retry(backoff, 2), **options)
    if not config.redis_url:
        raise ValueError("connect_redis needs redis_url or redis_cluster_nodes")
    return Redis.from_url(config.redis_url, retry=Retry(backoff, 1), **options)


# -- rate limits -------------------------------------------------------------------------

# KEYS[1] the bucket (a hash); ARGV rate/s, burst. Returns the wait in seconds as a string
# (a Lua number would be truncated to an integer). Redis TIME: one clock for all nodes.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(b[1])
local stamp = tonumber(b[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'stamp', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""
TOKEN_BUCKET_SCRIPT = BatchScript(TOKEN_BUCKET)


class RedisLimiter:
    """One token bucket per key for the whole cluster (a user's sends on any node count).

    The bucket key expires once it would be full again, so idle users cost nothing.
    """

    def __init__(self, client: RedisClient, *, name: str, prefix: str, rate: float,
                 burst: int, fallback: Limiter, metrics: Metrics,
                 batcher: TurnBatcher | None = None) -> None:
        self._batcher = batcher or TurnBatcher(client)
        self._prefix = f"{prefix}rl:{name}:"
        self.rate = rate
        self.burst = burst
        self._args = (repr(rate), burst)
        self._fallback = fallback
        self._outage = Outage("rate_limit", metrics.redis_fallbacks)

    async def take(self, key: str) -> float:
        try:
            reply = await self._batcher.script(
                TOKEN_BUCKET_SCRIPT, (self._prefix + key,), self._args)
        except REDIS_ERRORS as error:
            reply = error
        return await self.settle(key, reply)

    def key(self, user: str) -> str:
        """The Redis key of `user`'s bucket (erasure deletes it)."""
        return self._prefix + user

    def forget_local(self, user: str) -> None:
        """Drop the fallback's bucket of `user`, if the fallback keeps one."""
        forget = getattr(self._fallback, "forget", None)
        if forget is not None:
            forget(user)

    def command(self, key: str) -> Command:
        """The take of `key`, for a batch of several commands (`RedisSendGate`)."""
        return self._batcher.command(TOKEN_BUCKET_SCRIPT, (self._prefix + key,), self._args)

    async def settle(self, key: str, reply: Any) -> float:
        """The wait Redis answered, or the local bucket's if it answered an error."""
        if isinstance(reply, Exception):
            if not isinstance(reply, REDIS_ERRORS):
                raise reply
            self._outage.failed(reply)
            return await self._fallback.take(key)
        self._outage.ok()
        return float(text(reply))


# -- send claims -------------------------------------------------------------------------

PENDING = "pending"
PENDING_MS = 30_000  # a claim whose node died mid-store frees itself after this
DONE_MS = 7 * 24 * 3600 * 1000  # how long a resend is answered from the claim

# KEYS[1] the claim; ARGV[1] the pending marker. Deletes the claim only while pending.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
RELEASE_SCRIPT = BatchScript(RELEASE)


class RedisSendClaims:
    """Claims on (match, sender, c) so that a resend racing its original on another node is
    stored once; the claim becomes the answer ("done") to later resends for a week."""

    def __init__(self, client: RedisClient, *, prefix: str, metrics: Metrics,
                 batcher: TurnBatcher | None = None) -> None:
        self._batcher = batcher or TurnBatcher(client)
        self._prefix = f"{prefix}claim:"
        self._outage = Outage("claims", metrics.redis_fallbacks)

    def key(self, match_id: str, sender: str, client_id: str) -> str:
        """A short key whatever the parts hold (length-prefixed so parts cannot run
        together, then hashed)."""
        parts = "".join(f"{len(p)}:{p}" for p in (match_id, sender, client_id))
        return self._prefix + hashlib.blake2b(parts.encode(), digest_size=12).hexdigest()

    async def claim(self, match_id: str, sender: str, client_id: str) -> Claim:
        try:
            old = await self._batcher.call(*self.command(match_id, sender, client_id))
        except REDIS_ERRORS as error:
            old = error
        return self.settle(old)

    def command(self, match_id: str, sender: str, client_id: str) -> Command:
        """The claim, for a batch of several commands (`RedisSendGate`)."""
        # SET NX GET (Redis 7): claims the key, or returns what holds it, atomically.
        return ("SET", self.key(match_id, sender, client_id), PENDING, "NX", "PX",
                PENDING_MS, "GET")

    def settle(self, old: Any) -> Claim:
        """The claim from the reply to `command` (the old value, or an error)."""
        if isinstance(old, Exception):
            if not isinstance(old, REDIS_ERRORS):
                raise old
            self._outage.failed(old)
            return Claim("new")  # the store's idempotency key still dedupes the resend
        self._outage.ok()
        if old is None:
            return Claim("new", exclusive=True)  # ours: no other save of this key runs
        parts = text(old).split(":")
        if len(parts) == 3 and parts[0] == "done" and parts[1].isdigit() and parts[2].isdigit():
            return Claim("done", int(parts[1]), int(parts[2]))
        return Claim("pending")

    def confirm(self, match_id: str, sender: str, client_id: str, message_id: int,
                ts: int) -> None:
        key = self.key(match_id, sender, client_id)
        try:
            reply = self._batcher.call("SET", key, f"done:{message_id}:{ts}", "PX", DONE_MS)
        except REDIS_ERRORS as error:  # BatchFull: the claim stays pending, then expires
            self._outage.failed(error)
            return
        reply.add_done_callback(self._confirmed)

    def _confirmed(self, reply: asyncio.Future[Any]) -> None:
        if reply.cancelled():
            return
        error = reply.exception()
        if error is None:
            self._outage.ok()
        elif isinstance(error, REDIS_ERRORS):
            self._outage.failed(error)
        else:
            log.error("confirming a send claim failed", exc_info=error)

    async def release(self, match_id: str, sender: str, client_id: str) -> None:
        key = self.key(match_id, sender, client_id)
        try:
            await self._batcher.script(RELEASE_SCRIPT, (key,), (PENDING,))
        except REDIS_ERRORS as error:
            self._outage.failed(error)
            return
        self._outage.ok()


class RedisSendGate:
    """The send token and the claim in one batch entry: one round trip for both, where
    taking them one after the other cost two (each waits for the batch on the wire)."""

    def __init__(self, limiter: RedisLimiter, claims: RedisSendClaims,
                 batcher: TurnBatcher) -> None:
        self.limiter = limiter
        self.claims = claims
        self._batcher = batcher

    async def admit(self, user: str, match_id: str, client_id: str) -> tuple[float, Claim]:
        try:
            take, old = await self._batcher.call_many(
                [self.limiter.command(user), self.claims.command(match_id, user, client_id)])
        except REDIS_ERRORS as error:
            take = old = error
        wait = await self.limiter.settle(user, take)
        claim = self.claims.settle(old)
        if wait and claim.exclusive:  # refused: the claim just won must not linger
            await self.claims.release(match_id, user, client_id)
        return wait, claim


# -- node ids ----------------------------------------------------------------------------

LEASE_S = 30.0

# KEYS[1] the id's lease; ARGV owner token, lease ms. 1: renewed; 2: it had expired and is
# ours again; else the token of the node that holds it now.
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return holder
"""


class RedisNodeIds:
    """Leases a node id (the 10 bits that keep message ids unique across nodes).

    The lease is renewed every third of its length; a node that stops renewing (dead or
    hung) loses its id after `lease_s`, and another node may take it. The owner token is
    unique per process, so two nodes misconfigured with one name still get two ids.
    """

    def __init__(self, client: RedisClient, *, node: str, prefix: str, metrics: Metrics,
                 lease_s: float = LEASE_S) -> None:
        self._redis = client
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._prefix = f"{prefix}node-id:"
        self.token = f"{node}:{uuid.uuid4().hex[:8]}"
        self.lease_ms = max(1, int(lease_s * 1000))
        self.node_id: int | None = None
        self._metrics = metrics
        self._outage = Outage("node_id", metrics.redis_fallbacks)
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> int:
        if self.node_id is not None:
            return self.node_id
        start = random.randint(0, MAX_NODE)
        try:
            for i in range(MAX_NODE + 1):
                node_id = (start + i) % (MAX_NODE + 1)
                if await self._redis.set(self._prefix + str(node_id), self.token, nx=True,
                                         px=self.lease_ms):
                    break
            else:
                raise RuntimeError(f"all {MAX_NODE + 1} node ids are leased by running "
                                   "nodes: none left for this one")
        except REDIS_ERRORS as error:
            raise RuntimeError(f"cannot lease a node id: Redis did not answer ({error!r}); "
                               "a node does not start with a guessed id") from error
        self.node_id = node_id
        self._task = asyncio.get_running_loop().create_task(self._keep(),
                                                            name="node-id-lease")
        log.info("leased node id %d as %s", node_id, self.token)
        return node_id

    async def renew(self) -> bool:
        """Extend the lease (or take the id back if it ran out); False if another node holds
        it now or Redis did not answer."""
        if self.node_id is None:
            return False
        key = self._prefix + str(self.node_id)
        try:
            answer = await self._renew(keys=[key], args=[self.token, self.lease_ms])
        except REDIS_ERRORS as error:
            self._outage.failed(error)  # keep the id: nothing better to do until it answers
            return False
        self._outage.ok()
        if answer == 1:
            return True
        if answer == 2:
            log.warning("node id %d lease had run out; leased it again", self.node_id)
            return True
        self._metrics.redis_fallbacks.labels("node_id_conflict").inc()
        log.error("node id %d is now held by %s: this node kept it past its lease, message "
                  "ids of the two nodes could collide", self.node_id, text(answer))
        return False

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.renew()
            except Exception:
                log.exception("node id lease renewal failed")

    async def release(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        if self.node_id is None:
            return
        key = self._prefix + str(self.node_id)
        self.node_id = None
        try:
            await self._release(keys=[key], args=[self.token])
        except REDIS_ERRORS as error:
            self._outage.failed(error)  # the lease runs out by itself
