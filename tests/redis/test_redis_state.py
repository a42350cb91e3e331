"""Rate limits, send claims and node-id leases against real Redis, standalone and cluster:
what only the Redis implementations do (outage fallbacks, claim keys, the send gate's one
batch, node ids). What every `Limiter` and `SendClaims` promises is in tests/contracts/.

Each "node" gets its own client, as real nodes do; keys carry a prefix unique to the test
because the cluster is shared by the session.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from protocol.ids import MAX_NODE
from runtime.redis_batch import TurnBatcher
from runtime.tasks import stop_tasks
from server.backends.cluster_state import Claim, MemoryLimiter
from server.backends.redis_state import (
    RedisLimiter,
    RedisNodeIds,
    RedisSendClaims,
    RedisSendGate,
    connect_redis,
)
from server.config import Config
from server.metrics import Metrics
from tests.redis_servers import RedisServer

Client = Redis | RedisCluster
Clients = Callable[[], Client]


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def standalone(redis_server: RedisServer) -> AsyncIterator[Client]:
    client = connect_redis(Config(redis_url=redis_server.url))
    yield client
    await client.aclose()


def fallbacks(metrics: Metrics, what: str) -> float:
    value = metrics.registry.get_sample_value("rendezvous_redis_fallbacks_total",
                                              {"what": what})
    return value or 0.0


def outage_warnings(caplog: pytest.LogCaptureFixture, what: str) -> int:
    return sum(1 for r in caplog.records
               if r.levelno == logging.WARNING and f"unavailable for {what}" in r.getMessage())


def limiter(client: Client, prefix: str, metrics: Metrics | None = None, rate: float = 10.0,
            burst: int = 3, fallback: Any = None) -> RedisLimiter:
    return RedisLimiter(client, name="send", prefix=prefix, rate=rate, burst=burst,
                        fallback=fallback or MemoryLimiter(rate, burst),
                        metrics=metrics or Metrics())


def test_clients_fail_fast_rather_than_retry() -> None:
    client = connect_redis(Config(redis_url="redis://127.0.0.1:6399/2"))
    assert isinstance(client, Redis)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"], kwargs["db"]) == (
        2.0, 2.0, 2)
    assert kwargs["health_check_interval"] > 0
    retry = client.get_retry()
    assert retry is not None and retry.get_retries() == 1
    assert kwargs.get("decode_responses", False) is False  # the broker carries bytes
    cluster = connect_redis(Config(redis_cluster_nodes=("127.0.0.1:7000", "127.0.0.2:7001")))
    assert isinstance(cluster, RedisCluster)
    assert [(n.host, n.port) for n in cluster.startup_nodes] == [("127.0.0.1", 7000),
                                                                 ("127.0.0.2", 7001)]
    assert cluster.retry.get_retries() == 2
    assert cluster.connection_kwargs["socket_timeout"] == 2.0


# -- rate limits -------------------------------------------------------------------------

async def test_limiter_falls_back_to_the_local_bucket_while_redis_is_down(
        standalone: Client, redis_server: RedisServer, prefix: str,
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    bucket = limiter(standalone, prefix, metrics, rate=1.0, burst=2)
    assert await bucket.take("alice") == 0.0
    redis_server.stop(kill=True)
    # The local bucket starts full: 2 allowed, then a wait.
    assert [await bucket.take("alice") for _ in range(2)] == [0.0, 0.0]
    assert await bucket.take("alice") > 0
    assert fallbacks(metrics, "rate_limit") == 3
    assert outage_warnings(caplog, "rate_limit") == 1  # once per outage, not per call
    redis_server.start()
    assert await bucket.take("carol") == 0.0
    assert fallbacks(metrics, "rate_limit") == 3


# -- send claims -------------------------------------------------------------------------

def test_claim_keys_are_short_and_keep_parts_apart() -> None:
    claims = RedisSendClaims(Redis(), prefix="rdv:", metrics=Metrics())
    key = claims.key("m" * 200, "u" * 64, "{c}:|\n")
    assert key.startswith("rdv:claim:") and len(key) <= 40
    assert claims.key("a:b", "c", "d") != claims.key("a", "b:c", "d")
    assert claims.key("m", "alice", "c1") == claims.key("m", "alice", "c1")


async def test_claims_degrade_to_the_store_while_redis_is_down(
        standalone: Client, redis_server: RedisServer, prefix: str,
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    claims = RedisSendClaims(standalone, prefix=prefix, metrics=metrics)
    assert await claims.claim("m", "alice", "c1") == Claim("new", exclusive=True)
    redis_server.stop(kill=True)
    # not exclusive: nobody settled it, so the store's own idempotency key must dedupe
    assert await claims.claim("m", "alice", "c1") == Claim("new", exclusive=False)
    claims.confirm("m", "alice", "c1", 1, 2)  # fails in the background, counted
    await claims.release("m", "alice", "c1")
    assert fallbacks(metrics, "claims") == 3
    assert outage_warnings(caplog, "claims") == 1
    redis_server.start()
    assert await claims.claim("m", "alice", "c1") == Claim("new", exclusive=True)
    assert await claims.claim("m", "alice", "c1") == Claim("pending")


# -- the send gate: token and claim in one round trip ------------------------------------

def gate(client: Client, prefix: str, metrics: Metrics, *, rate: float = 1000.0,
         burst: int = 1000) -> tuple[RedisSendGate, TurnBatcher]:
    batcher = TurnBatcher(client)
    limiter = RedisLimiter(client, name="send", prefix=prefix, rate=rate, burst=burst,
                           fallback=MemoryLimiter(rate, burst), metrics=metrics,
                           batcher=batcher)
    claims = RedisSendClaims(client, prefix=prefix, metrics=metrics, batcher=batcher)
    return RedisSendGate(limiter, claims, batcher), batcher


async def test_gate_takes_the_token_and_the_claim_in_one_batch(
        redis_clients: Clients, prefix: str) -> None:
    send_gate, batcher = gate(redis_clients(), prefix, Metrics())
    assert await send_gate.admit("alice", "m1", "c1") == (0.0, Claim("new", exclusive=True))
    batches = batcher.batches
    assert await send_gate.admit("alice", "m1", "c1") == (0.0, Claim("pending"))
    assert batcher.batches == batches + 1  # both commands went in one pipeline
    send_gate.claims.confirm("m1", "alice", "c1", 7, 8)
    assert await send_gate.admit("alice", "m1", "c1") == (0.0, Claim("done", 7, 8))
    await batcher.close()


async def test_a_refused_token_leaves_no_claim(redis_clients: Clients, prefix: str) -> None:
    send_gate, batcher = gate(redis_clients(), prefix, Metrics(), rate=0.01, burst=1)
    assert (await send_gate.admit("bob", "m1", "c1"))[0] == 0.0
    wait, _ = await send_gate.admit("bob", "m1", "c2")
    assert wait > 0
    # the refused send's claim was released: its retry (once allowed) claims it anew
    assert await send_gate.claims.claim("m1", "bob", "c2") == Claim("new", exclusive=True)
    await batcher.close()


async def test_gate_falls_back_to_local_token_and_store_claims_while_redis_is_down(
        standalone: Client, redis_server: RedisServer, prefix: str) -> None:
    metrics = Metrics()
    send_gate, batcher = gate(standalone, prefix, metrics)
    assert await send_gate.admit("carol", "m", "c1") == (0.0, Claim("new", exclusive=True))
    redis_server.stop(kill=True)
    assert await send_gate.admit("carol", "m", "c2") == (0.0, Claim("new", exclusive=False))
    assert fallbacks(metrics, "rate_limit") == 1 and fallbacks(metrics, "claims") == 1
    redis_server.start()
    await batcher.close()


# -- node ids ----------------------------------------------------------------------------

async def test_nodes_lease_distinct_ids_and_release_them(redis_clients: Clients,
                                                         prefix: str) -> None:
    nodes = [RedisNodeIds(redis_clients(), node=f"n{i}", prefix=prefix, metrics=Metrics())
             for i in range(3)]
    try:
        ids = [await n.acquire() for n in nodes]
        assert len(set(ids)) == 3 and all(0 <= i <= MAX_NODE for i in ids)
        assert await nodes[0].acquire() == ids[0]  # acquiring again keeps the lease
        check = redis_clients()
        assert await check.get(f"{prefix}node-id:{ids[0]}") == nodes[0].token.encode()
        await nodes[0].release()
        assert await check.get(f"{prefix}node-id:{ids[0]}") is None
        assert await check.get(f"{prefix}node-id:{ids[1]}") == nodes[1].token.encode()
    finally:
        for n in nodes:
            await n.release()


async def until_value(client: Any, key: str, value: bytes, within_s: float = 5.0) -> None:
    """Wait until `key` holds `value` (the refresher runs in the background)."""
    for _ in range(int(within_s / 0.05)):
        if await client.get(key) == value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} never held {value!r}")


async def test_an_expired_lease_is_taken_back_by_its_owner(redis_clients: Clients,
                                                           prefix: str) -> None:
    check = redis_clients()
    ids = RedisNodeIds(redis_clients(), node="n", prefix=prefix, metrics=Metrics(), lease_s=0.6)
    node_id = await ids.acquire()
    key = f"{prefix}node-id:{node_id}"
    try:
        await asyncio.sleep(1.0)  # the refresher runs every 0.2 s: the lease holds
        assert await check.get(key) == ids.token.encode()
        assert ids._task is not None
        # The node hangs: nobody renews. stop_tasks, not one cancel(): a cancel landing
        # as redis-py's send finishes is swallowed by Python 3.11's wait_for (CPython
        # gh-86296), and the refresher would go on renewing (CI saw it once).
        await stop_tasks([ids._task])
        for _ in range(100):  # a renew already in flight may land late under load
            if await check.get(key) is None:
                break
            await asyncio.sleep(0.05)
        assert await check.get(key) is None
        assert await ids.renew()
        assert ids.node_id == node_id
        assert await check.get(key) == ids.token.encode()
        assert 0 < await check.pttl(key) <= 600
    finally:
        await ids.release()


async def test_the_refresher_takes_a_vanished_lease_back(redis_clients: Clients,
                                                         prefix: str) -> None:
    check = redis_clients()
    ids = RedisNodeIds(redis_clients(), node="n", prefix=prefix, metrics=Metrics(), lease_s=0.6)
    node_id = await ids.acquire()
    key = f"{prefix}node-id:{node_id}"
    try:
        await check.delete(key)  # e.g. Redis restarted without persistence
        await until_value(check, key, ids.token.encode())
    finally:
        await ids.release()


async def test_a_lease_taken_by_another_node_is_an_error(
        redis_clients: Clients, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    check = redis_clients()
    metrics = Metrics()
    ids = RedisNodeIds(redis_clients(), node="n", prefix=prefix, metrics=metrics, lease_s=30)
    node_id = await ids.acquire()
    key = f"{prefix}node-id:{node_id}"
    try:
        await check.set(key, "other:1234")
        assert not await ids.renew()
        assert fallbacks(metrics, "node_id_conflict") == 1
        assert any(r.levelno == logging.ERROR and "could collide" in r.getMessage()
                   for r in caplog.records)
        await ids.release()
        assert await check.get(key) == b"other:1234"  # release never deletes another's
    finally:
        await ids.release()


async def test_acquire_refuses_to_guess_when_redis_is_down(standalone: Client,
                                                           redis_server: RedisServer,
                                                           prefix: str) -> None:
    redis_server.stop(kill=True)
    ids = RedisNodeIds(standalone, node="n", prefix=prefix, metrics=Metrics())
    with pytest.raises(RuntimeError, match="Redis did not answer"):
        await ids.acquire()


async def test_acquire_refuses_when_every_id_is_leased(standalone: Client,
                                                       prefix: str) -> None:
    await standalone.mset({f"{prefix}node-id:{i}": "someone" for i in range(MAX_NODE + 1)})
    ids = RedisNodeIds(standalone, node="n", prefix=prefix, metrics=Metrics())
    with pytest.raises(RuntimeError, match="all 1024 node ids"):
        await ids.acquire()
    await standalone.delete(f"{prefix}node-id:7")
    assert await ids.acquire() == 7
    await ids.release()


async def test_renewal_survives_a_redis_outage(standalone: Client, redis_server: RedisServer,
                                               prefix: str) -> None:
    metrics = Metrics()
    ids = RedisNodeIds(standalone, node="n", prefix=prefix, metrics=metrics, lease_s=0.6)
    node_id = await ids.acquire()
    redis_server.stop(kill=True)
    await asyncio.sleep(0.5)
    assert fallbacks(metrics, "node_id") >= 1
    assert ids._task is not None and not ids._task.done()
    redis_server.start()  # empty: the lease is gone, the refresher takes it back
    await until_value(standalone, f"{prefix}node-id:{node_id}", ids.token.encode())
    await ids.release()
