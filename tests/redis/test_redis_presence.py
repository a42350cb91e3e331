"""RedisPresence against real Redis (standalone and cluster): what only it does (a session
id per node, index entries put back, a user whose keys are damaged, the keys' slots and
TTLs, an outage that degrades quietly) and the same answers as MemoryPresence on scripted
lives. What every `Presence` promises is in tests/contracts/test_presence_contract.py.

Each "node" is a RedisPresence with its own client, as in a real cluster; keys carry a
prefix unique to the test because the cluster is shared by the session.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from server.backends.presence import MemoryPresence, Status, coarse
from server.backends.redis_presence import RedisPresence
from server.backends.redis_state import connect_redis
from server.config import Config
from server.metrics import Metrics
from tests.redis_servers import RedisServer

Client = Redis | RedisCluster
Nodes = Callable[..., RedisPresence]


@pytest.fixture(params=["standalone", "cluster"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[Nodes]:
    """Makes presence "nodes" on one Redis (or the cluster), each with its own client."""
    if request.param == "standalone":
        config = Config(redis_url=request.getfixturevalue("redis_server").url)
    else:
        config = Config(redis_cluster_nodes=request.getfixturevalue("redis_cluster").seeds)
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    clients: list[Client] = []

    def make(name: str, ttl_s: float = 60.0, **options: Any) -> RedisPresence:
        clients.append(connect_redis(config))
        return RedisPresence(clients[-1], node=name, prefix=prefix, ttl_s=ttl_s,
                             metrics=options.pop("metrics", None) or Metrics(), **options)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def standalone(redis_server: RedisServer) -> AsyncIterator[Client]:
    client = connect_redis(Config(redis_url=redis_server.url))
    yield client
    await client.aclose()


# -- across nodes ------------------------------------------------------------------------

def test_a_users_keys_spread_over_the_cluster_slots() -> None:
    presence = RedisPresence(Redis(), node="n", prefix="rdv:", ttl_s=60, metrics=Metrics())
    users = [f"user-{i}" for i in range(40)] + ["with|pipe", "{braces}", "ünï", "a:b"]
    slots = {key_slot(presence.sessions_key(u).encode()) for u in users}
    assert len(slots) > 30  # spread over the cluster's masters, not one hash tag


async def test_the_same_session_id_on_two_nodes_is_two_sessions(nodes: Nodes) -> None:
    a, b = nodes("node-a"), nodes("node-b")
    assert await a.connect("alice", "s1")
    assert not await b.connect("alice", "s1")
    assert await a.disconnect("alice", "s1") is None
    assert (await a.status(["alice"]))["alice"].online


# -- a node that stops refreshing ----------------------------------------------------------

async def test_a_refreshed_session_is_not_reaped(nodes: Nodes) -> None:
    """An index entry that expires while its session was refreshed (a refresh that landed
    after the reaper read the index) is put back, so the session stays reapable."""
    t = [time.time()]

    def clock() -> float:
        return t[0]

    a, b = nodes("node-a", ttl_s=30, clock=clock), nodes("node-b", ttl_s=30, clock=clock)
    await a.connect("alice", "s1")
    t[0] += 20
    await a._redis.zadd(a.sessions_key("alice"), {a.member("s1"): int(t[0] * 1000) + 30_000},
                        xx=True)  # the session is refreshed, its index entry lags behind
    t[0] += 15
    assert await b.reap() == []
    assert (await b.status(["alice"]))["alice"].online
    t[0] += 30  # now the node is dead: the re-indexed session is reaped
    assert await b.reap() == [("alice", coarse(int((t[0] - 45) * 1000)))]  # refreshed at +20


async def test_a_user_that_cannot_be_reaped_does_not_stop_the_others(nodes: Nodes) -> None:
    a, b = nodes("node-a", ttl_s=0.3), nodes("node-b", ttl_s=0.3)
    await a.connect("alice", "s1")
    await a.connect("bob", "s2")
    await asyncio.sleep(0.4)
    await b._redis.delete(b.sessions_key("alice"))
    await b._redis.set(b.sessions_key("alice"), "not a sorted set")  # the script fails
    assert [user for user, _ in await b.reap()] == ["bob"]
    entry = b.index_member("alice", a.member("s1"))
    assert await b._redis.zscore(b.index_key("alice"), entry) is not None  # put back
    await b._redis.delete(b.sessions_key("alice"))
    assert await b.reap() == []  # taken again; no session left to report
    assert await b._redis.zscore(b.index_key("alice"), entry) is None


# -- same answers as MemoryPresence ------------------------------------------------------

async def test_same_answers_as_memory_presence(nodes: Nodes) -> None:
    """Scripted lives of users on two nodes, one of which dies midway, replayed against
    MemoryPresence on the same (fake) clock: every answer matches."""
    t = [time.time()]

    def clock() -> float:
        return t[0]

    redis_a = nodes("node-a", ttl_s=30, clock=clock)
    redis_b = nodes("node-b", ttl_s=30, clock=clock)
    seen_events = reaped = 0
    for seed in range(6):
        memory = MemoryPresence(ttl_s=30, clock=clock)
        rng = random.Random(seed)
        users = [f"{seed}-user-{i}" for i in range(8)]
        live: dict[str, set[tuple[str, str]]] = {"node-a": set(), "node-b": set()}
        dead_after = rng.randint(20, 50)  # node-a stops refreshing (and serving) here
        for step in range(90):
            alive = ["node-a", "node-b"] if step < dead_after else ["node-b"]
            name = alive[0] if rng.random() < 0.6 else alive[-1]
            node = redis_a if name == "node-a" else redis_b
            op = rng.random()
            if op < 0.3 and step < dead_after:  # then only departures: users go offline
                user, session = rng.choice(users), f"s{step}"
                live[name].add((user, session))
                assert (await node.connect(user, session)
                        == await memory.connect(user, session)), (seed, step)
            elif op < 0.6 and live[name]:
                user, session = rng.choice(sorted(live[name]))
                live[name].discard((user, session))
                seen = await node.disconnect(user, session)
                assert seen == await memory.disconnect(user, session), (seed, step)
                seen_events += seen is not None
            elif op < 0.7:
                assert (await redis_b.status(users)
                        == await memory.status(users)), (seed, step)
            else:  # time passes; live nodes refresh and reap, as Node._keep_presence does
                t[0] += rng.choice([5, 10, 20])
                for refresher in (redis_a, redis_b)[2 - len(alive):]:
                    await refresher.refresh(live[refresher.node])
                    await memory.refresh(live[refresher.node])
                gone = sorted(await redis_b.reap())
                assert gone == sorted(await memory.reap()), (seed, step)
                reaped += len(gone)
        t[0] += 31
        await redis_b.refresh(live["node-b"])
        await memory.refresh(live["node-b"])
        gone = sorted(await redis_b.reap())
        assert gone == sorted(await memory.reap()), seed
        reaped += len(gone)
        assert await redis_b.status(users) == await memory.status(users), seed
        for user, session in sorted(live["node-b"]):  # leave nothing for the next seed
            assert (await redis_b.disconnect(user, session)
                    == await memory.disconnect(user, session)), seed
    assert seen_events > 10 and reaped > 3  # the script went through both ways offline


# -- Redis outage --------------------------------------------------------------------------

async def test_an_outage_degrades_quietly_and_recovers(
        standalone: Client, redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    node = RedisPresence(standalone, node="n", prefix="rdv:", ttl_s=60, metrics=metrics)
    assert await node.connect("alice", "s1")
    redis_server.stop(kill=True)
    assert await node.connect("bob", "s2") is False
    assert await node.disconnect("alice", "s1") is None
    assert await node.status(["alice", "bob"]) == {"alice": Status(False, None),
                                                   "bob": Status(False, None)}
    await node.refresh([("alice", "s1"), ("bob", "s2")])
    assert await node.reap() == []
    value = metrics.registry.get_sample_value("rendezvous_redis_fallbacks_total",
                                              {"what": "presence"})
    assert value == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and "unavailable for presence" in r.getMessage()]
    assert len(warnings) == 1
    redis_server.start()  # empty: no persistence
    assert await node.connect("bob", "s2") is True
    assert await node.status(["bob"]) == {"bob": Status(True, None)}
    ops = metrics.registry.get_sample_value("rendezvous_presence_ops_total", {"op": "connect"})
    assert ops == 3


async def test_keys_expire_by_themselves(standalone: Client) -> None:
    node = RedisPresence(standalone, node="n", prefix="rdv:", ttl_s=60, metrics=Metrics())
    await node.connect("alice", "s1")
    await node.disconnect("alice", "s1")
    await node.connect("bob", "s2")
    await node.refresh([("bob", "s2")])
    keys = [k.decode() async for k in standalone.scan_iter("rdv:*")]
    ttls = {k: await standalone.pttl(k) for k in keys}
    assert {"rdv:{u:alice}:s", "rdv:{u:bob}:p"} <= set(keys), keys  # alice:p is gone
    assert any("presence-index" in k for k in keys), keys
    assert all(ttl > 0 for ttl in ttls.values()), ttls
