"""`RedisBroker` against real Redis: two brokers ("node A", "node B") on one server, and the
same core cases on a 3-master Redis Cluster with sharded pub/sub. What every `Broker`
promises (delivery, reach, unsubscribe, control, order) is in
tests/contracts/test_broker_contract.py; this file holds what only Redis does.

Async effects are polled with `wait_until`; "nothing arrived" is proved by a later event on
the same path arriving first (Redis keeps order per connection), never by a bare sleep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from server.backends.redis_broker import RedisBroker
from server.metrics import Metrics
from tests.redis_servers import RedisCluster as ClusterProcesses
from tests.redis_servers import RedisServer


async def wait_until(condition: Callable[[], bool], within: float = 5.0,
                     what: str = "condition") -> float:
    """Poll until `condition()` holds; the seconds it took. Fails after `within` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} did not hold within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


class Node:
    """One broker plus what it delivered: (user, frame, skip_session) and control maps."""

    def __init__(self, name: str, client: Redis | RedisCluster, prefix: str,
                 sharded: bool) -> None:
        self.metrics = Metrics()
        self.broker = RedisBroker(client, node=name, prefix=prefix, sharded=sharded,
                                  metrics=self.metrics)
        self.metrics.watch_broker(self.broker.healthy)  # as server/node.py does
        self.events: list[tuple[str, dict[str, Any], str | None]] = []
        self.controls: list[dict[str, Any]] = []
        self.sessionless: set[str] = set()  # subscribed users whose sessions are gone
        self.undelivered: list[tuple[str, dict[str, Any]]] = []

    def deliver(self, user: str, frame: dict[str, Any], skip_session: str | None) -> int:
        self.events.append((user, frame, skip_session))
        return 0 if user in self.sessionless else 1

    def control(self, message: dict[str, Any]) -> None:
        self.controls.append(message)

    async def start(self) -> None:
        await self.broker.start(self.deliver, self.control,
                                lambda user, frame: self.undelivered.append((user, frame)))

    def got(self, user: str, frame: dict[str, Any]) -> bool:
        return any(u == user and f == frame for u, f, _ in self.events)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def standalone(redis_server: RedisServer,
                     prefix: str) -> AsyncIterator[tuple[Node, Node, Redis]]:
    """Nodes A and B, each with its own client (default retry policy), and a probe client."""
    clients = [Redis(host="127.0.0.1", port=redis_server.port) for _ in range(3)]
    a = Node("node-a", clients[0], prefix, sharded=False)
    b = Node("node-b", clients[1], prefix, sharded=False)
    await a.start()
    await b.start()
    yield a, b, clients[2]
    for node in (a, b):
        await node.broker.close()
    for client in clients:
        await client.aclose()


async def numsub(probe: Redis, channel: str) -> int:
    [(_, count)] = await probe.pubsub_numsub(channel)
    return int(count)


async def test_started_nodes_are_healthy(standalone: tuple[Node, Node, Redis]) -> None:
    a, b, _ = standalone
    assert a.broker.healthy() and b.broker.healthy()
    assert a.metric("rendezvous_broker_subscription_healthy") == 1


async def test_event_reaches_only_the_node_holding_the_user(
        standalone: tuple[Node, Node, Redis], prefix: str) -> None:
    a, b, probe = standalone
    await b.broker.subscribe("bob")
    assert await numsub(probe, f"{prefix}u:bob") == 1  # confirmed when subscribe returned
    await a.broker.publish(["bob", "nobody"], {"t": "msg", "n": 1}, "sess-1")
    await a.broker.publish(["bob"], {"t": "msg", "n": 2})
    await wait_until(lambda: b.got("bob", {"t": "msg", "n": 2}), what="delivery on B")
    assert b.events == [("bob", {"t": "msg", "n": 1}, "sess-1"),
                        ("bob", {"t": "msg", "n": 2}, None)]
    assert a.events == []
    # No firehose: the only user channel with a subscriber is bob's, and only B holds it.
    channels = await probe.pubsub_channels(f"{prefix}u:*")
    assert channels == [f"{prefix}u:bob".encode()]


async def test_publish_reach_counts_the_nodes_subscribed(
        standalone: tuple[Node, Node, Redis]) -> None:
    """The sender's node skips the push job when the reach shows a node holding the
    recipient; 0 means no session anywhere."""
    a, b, _ = standalone
    await b.broker.subscribe("bob")
    await a.broker.subscribe("bob")
    await b.broker.subscribe("carol")
    assert await a.broker.publish(["bob", "carol", "nobody"], {"t": "typing"}) == [2, 1, 0]
    assert await a.broker.publish([], {"t": "typing"}) == []


async def test_a_msg_no_session_took_is_handed_to_undelivered(
        standalone: tuple[Node, Node, Redis]) -> None:
    """Subscribed but sessionless (the last session closed a moment ago): the publisher
    counted this node in the reach, so this node must push; other events, and the sender's
    own copy, are not pushes."""
    a, b, _ = standalone
    await b.broker.subscribe("bob")
    b.sessionless.add("bob")
    msg = {"t": "msg", "m": "m1", "id": 5, "from": "ann", "ts": 1, "c": "c1"}
    assert await a.broker.publish(["bob"], msg) == [1]
    await a.broker.publish(["bob"], {"t": "typing", "from": "ann"})
    await a.broker.publish(["bob"], {**msg, "from": "bob"})
    await wait_until(lambda: len(b.events) == 3, what="three events on B")
    assert b.undelivered == [("bob", msg)]


async def test_publish_to_1000_users_is_one_batch(standalone: tuple[Node, Node, Redis]) -> None:
    a, b, _ = standalone
    users = [f"user-{i}" for i in range(1000)]
    started = time.perf_counter()
    await asyncio.gather(*(b.broker.subscribe(user) for user in users))
    subscribed = time.perf_counter() - started
    started = time.perf_counter()
    await a.broker.publish(users, {"t": "presence", "on": True})
    published = time.perf_counter() - started
    delivered = published + await wait_until(lambda: len(b.events) == 1000, what="1000 events")
    print(f"\n[standalone] subscribe 1000 users: {subscribed * 1000:.1f} ms; publish to 1000 "
          f"users: {published * 1000:.1f} ms; all delivered after {delivered * 1000:.1f} ms")
    assert {user for user, _, _ in b.events} == set(users)
    assert a.metric("rendezvous_broker_publish_seconds_count") == 1


async def test_garbage_is_dropped_and_counted(standalone: tuple[Node, Node, Redis],
                                              prefix: str) -> None:
    a, b, probe = standalone
    await b.broker.subscribe("bob")
    for junk in (b"\xc1", msgpack.packb("just a string"), msgpack.packb([1, 2, 3]),
                 msgpack.packb([{"t": "x"}, 42])):
        await probe.publish(f"{prefix}u:bob", junk)
    await probe.publish(f"{prefix}control", b"\xc1")
    await a.broker.publish(["bob"], {"t": "msg", "n": 1})
    await a.broker.publish_control({"k": "settings", "u": "bob"})
    await wait_until(lambda: b.got("bob", {"t": "msg", "n": 1}) and len(b.controls) == 1,
                     what="good messages after garbage")
    assert b.events == [("bob", {"t": "msg", "n": 1}, None)]
    assert b.broker.dropped == 5 and a.broker.dropped == 1


async def test_redis_restart(standalone: tuple[Node, Node, Redis],
                             redis_server: RedisServer) -> None:
    a, b, _ = standalone
    await b.broker.subscribe("bob")
    await a.broker.publish(["bob"], {"t": "msg", "n": 0})
    await wait_until(lambda: b.got("bob", {"t": "msg", "n": 0}), what="delivery before")

    redis_server.stop(kill=True)
    started = time.perf_counter()
    await a.broker.publish(["bob"], {"t": "msg", "n": 1})  # dropped, not raised
    first_publish = time.perf_counter() - started
    await wait_until(lambda: not a.broker.healthy() and not b.broker.healthy(),
                     what="unhealthy during the outage")
    started = time.perf_counter()
    await a.broker.publish(["bob"], {"t": "msg", "n": 2})
    later_publish = time.perf_counter() - started
    await asyncio.wait_for(b.broker.subscribe("dave"), 1.0)  # remembered, no waiting
    assert a.metric("rendezvous_redis_fallbacks_total", what="publish") >= 2
    assert b.metric("rendezvous_broker_subscription_healthy") == 0

    redis_server.start()
    restarted = time.monotonic()
    resumed = False

    async def delivered_again() -> None:
        nonlocal resumed
        n = 100
        while not b.got("bob", {"t": "msg", "n": n - 1}):
            await a.broker.publish(["bob"], {"t": "msg", "n": n})
            n += 1
            await asyncio.sleep(0.02)
        resumed = True

    await asyncio.wait_for(delivered_again(), 10.0)
    resume_s = time.monotonic() - restarted
    healthy_s = await wait_until(lambda: a.broker.healthy() and b.broker.healthy(),
                                 within=10.0, what="healthy after the restart")
    print(f"\n[standalone] outage: first publish returned in {first_publish * 1000:.1f} ms, "
          f"later ones in {later_publish * 1000:.2f} ms; delivery resumed "
          f"{resume_s:.2f} s after restart, both healthy {resume_s + healthy_s:.2f} s after")
    assert resumed
    await a.broker.publish(["dave"], {"t": "msg", "n": "dave"})
    await wait_until(lambda: b.got("dave", {"t": "msg", "n": "dave"}),
                     what="subscription made while down")
    assert not b.got("bob", {"t": "msg", "n": 1}) and not b.got("bob", {"t": "msg", "n": 2})
    assert b.metric("rendezvous_broker_resubscribes_total") >= 1
    assert a.metric("rendezvous_broker_resubscribes_total") >= 1


async def test_killed_subscription_connection_comes_back(
        standalone: tuple[Node, Node, Redis]) -> None:
    a, b, probe = standalone
    await b.broker.subscribe("bob")
    killed = await probe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed == 2  # A's and B's subscription connections; Redis itself stays up
    await wait_until(lambda: b.metric("rendezvous_broker_resubscribes_total") == 1,
                     what="B re-subscribed")
    await a.broker.publish(["bob"], {"t": "msg", "n": 1})
    await wait_until(lambda: b.got("bob", {"t": "msg", "n": 1}), what="delivery after")
    await wait_until(lambda: a.broker.healthy() and b.broker.healthy(), what="healthy")


# -- Redis Cluster, sharded pub/sub --------------------------------------------------------
@pytest.fixture
def cluster_seed(redis_cluster: ClusterProcesses) -> Iterator[tuple[str, int]]:
    host, port = redis_cluster.seeds[0].split(":")
    yield host, int(port)


@pytest.fixture
async def sharded(cluster_seed: tuple[str, int], prefix: str,
                  redis_cluster: ClusterProcesses) -> AsyncIterator[tuple[Node, Node,
                                                                          RedisCluster]]:
    clients = [RedisCluster(startup_nodes=[ClusterNode(*cluster_seed)]) for _ in range(3)]
    a = Node("node-a", clients[0], prefix, sharded=True)
    b = Node("node-b", clients[1], prefix, sharded=True)
    await a.start()
    await b.start()
    yield a, b, clients[2]
    for node in (a, b):
        await node.broker.close()
    for client in clients:
        await client.aclose()


async def users_on_every_shard(probe: RedisCluster, prefix: str) -> dict[str, str]:
    """user -> node name of the shard owning the user's channel, one user per shard."""
    await probe.initialize()
    masters = {node.name for node in probe.get_primaries()}
    chosen: dict[str, str] = {}
    for i in range(1000):
        user = f"user-{i}"
        channel = f"{prefix}u:{user}"
        slot = await probe.execute_command("CLUSTER KEYSLOT", channel)
        assert slot == probe.keyslot(channel)
        owner = probe.get_node_from_key(channel).name
        if owner not in chosen.values():
            chosen[user] = owner
        if len(chosen) == len(masters):
            return chosen
    raise AssertionError("could not find a user per shard")


async def shard_channels(probe: RedisCluster, node_name: str, pattern: str) -> list[bytes]:
    node = probe.get_node(node_name=node_name)
    result = await probe.execute_command("PUBSUB SHARDCHANNELS", pattern, target_nodes=node)
    return sorted(result)


async def test_cluster_delivery_to_the_right_node_and_shard(
        sharded: tuple[Node, Node, RedisCluster], prefix: str) -> None:
    a, b, probe = sharded
    assert a.broker.healthy() and b.broker.healthy()
    owners = await users_on_every_shard(probe, prefix)
    assert len(set(owners.values())) == 3
    for user in owners:
        await b.broker.subscribe(user)
    for user, owner in owners.items():  # each channel is subscribed on its own shard only
        for node in probe.get_primaries():
            expected = [f"{prefix}u:{user}".encode()] if node.name == owner else []
            assert await shard_channels(probe, node.name, f"{prefix}u:{user}") == expected
    reach = await a.broker.publish([*owners, "nobody"], {"t": "msg", "n": 1}, "sess-1")
    assert reach == [1, 1, 1, 0]  # SPUBLISH counts the shard's subscribers: exact
    await wait_until(lambda: len(b.events) == 3, what="events on B from every shard")
    assert sorted(b.events) == sorted((user, {"t": "msg", "n": 1}, "sess-1")
                                      for user in owners)
    gone = next(iter(owners))
    await b.broker.unsubscribe(gone)
    for _ in range(500):
        if not await shard_channels(probe, owners[gone], f"{prefix}u:{gone}"):
            break
    assert await shard_channels(probe, owners[gone], f"{prefix}u:{gone}") == []
    await a.broker.publish(list(owners), {"t": "msg", "n": 2})
    await wait_until(lambda: len(b.events) == 5, what="events for the users still held")
    assert a.events == [] and len(b.events) == 5


async def test_cluster_control_and_canary(sharded: tuple[Node, Node, RedisCluster],
                                          prefix: str) -> None:
    a, b, probe = sharded
    await b.broker.publish_control({"k": "match", "id": "m-2"})
    await wait_until(lambda: a.controls == b.controls == [{"k": "match", "id": "m-2"}],
                     what="control on A and B")
    assert b.broker.healthy() and b.metric("rendezvous_broker_subscription_healthy") == 1
    await probe.initialize()  # ClusterPubSub routes by the client's slot map
    watcher = probe.pubsub()  # B's canary travels over sharded pub/sub, every second
    try:
        await watcher.ssubscribe(f"{prefix}canary:node-b")
        started = time.monotonic()
        message = None
        while message is None or message["type"] != "smessage":
            assert time.monotonic() - started < 3.0, "no canary within 3 s"
            message = await watcher.get_sharded_message(timeout=0.1)
        assert isinstance(msgpack.unpackb(message["data"]), float)
    finally:
        await watcher.aclose()


async def test_cluster_batch_publish_to_1000_users(
        sharded: tuple[Node, Node, RedisCluster]) -> None:
    a, b, _ = sharded
    users = [f"many-{i}" for i in range(1000)]
    await asyncio.gather(*(b.broker.subscribe(user) for user in users))
    started = time.perf_counter()
    await a.broker.publish(users, {"t": "presence", "on": True})
    published = time.perf_counter() - started
    delivered = published + await wait_until(lambda: len(b.events) == 1000, what="1000 events")
    print(f"\n[cluster] publish to 1000 users on 3 shards: {published * 1000:.1f} ms; all "
          f"delivered after {delivered * 1000:.1f} ms")
    assert {user for user, _, _ in b.events} == set(users)


async def test_cluster_subscriptions_come_back_on_every_shard(
        sharded: tuple[Node, Node, RedisCluster], prefix: str) -> None:
    a, b, probe = sharded
    owners = await users_on_every_shard(probe, prefix)
    for user in owners:
        await b.broker.subscribe(user)
    killed = 0
    for node in probe.get_primaries():  # every shard drops the subscribers it holds
        killed += await probe.execute_command("CLIENT", "KILL", "TYPE", "pubsub",
                                              target_nodes=node)
    assert killed >= 1  # (B re-subscribes as soon as the first shard drops it)
    await wait_until(lambda: b.metric("rendezvous_broker_resubscribes_total") >= 1,
                     what="B re-subscribed")
    await a.broker.publish(list(owners), {"t": "msg", "n": 1})
    await wait_until(lambda: len(b.events) == 3, what="events from every shard after")
    await wait_until(lambda: a.broker.healthy() and b.broker.healthy(), what="healthy")
