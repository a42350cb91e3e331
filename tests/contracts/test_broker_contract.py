"""The `Broker` contract (server/backends/broker.py): an event published on node A reaches the users
node B subscribed, in order, with its reach; a control message reaches every node.

With Redis, A and B are two brokers with a client each; in memory there is one process, so
A and B are the same node. What only Redis does (no firehose, reach over several nodes,
sharded pub/sub, canaries, restarts, garbage on the channels, undelivered `msg`s) is in
tests/redis/test_redis_broker.py. "Nothing arrived" is proved by a later event on the same
channel arriving first, never by a bare sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from server.backends.broker import Broker, MemoryBroker
from server.backends.redis_broker import RedisBroker
from server.metrics import Metrics
from tests.contracts.conftest import Backing
from tests.helpers import wait_until


class Node:
    """A started broker and what it delivered: (user, frame, skip_session) and controls."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.events: list[tuple[str, dict[str, Any], str | None]] = []
        self.controls: list[dict[str, Any]] = []

    def deliver(self, user: str, frame: dict[str, Any], skip_session: str | None) -> int:
        self.events.append((user, frame, skip_session))
        return 1

    def got(self, user: str, frame: dict[str, Any]) -> bool:
        return any(u == user and f == frame for u, f, _ in self.events)

    def frames(self, user: str) -> list[dict[str, Any]]:
        return [f for u, f, _ in self.events if u == user]


Nodes = tuple[Node, Node]


@pytest.fixture
async def nodes(backing: Backing) -> AsyncIterator[Nodes]:
    """Started nodes A and B (memory: one node twice)."""
    brokers: list[Broker]
    if backing.shared:
        brokers = [RedisBroker(await backing.client(), node=name, prefix=backing.prefix,
                               sharded=backing.sharded, metrics=Metrics())
                   for name in ("node-a", "node-b")]
    else:
        brokers = [MemoryBroker()]
    started = [Node(broker) for broker in brokers]
    for one in started:
        await one.broker.start(one.deliver, one.controls.append)
    yield started[0], started[-1]
    for one in started:
        await one.broker.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        await wait_until(condition, timeout=5.0)
    except AssertionError as error:
        raise AssertionError(f"{what} did not happen within 5 s") from error


async def test_started_brokers_are_healthy_until_closed(nodes: Nodes) -> None:
    a, b = nodes
    await until(lambda: a.broker.healthy() and b.broker.healthy(), "healthy after start")
    await a.broker.close()
    await b.broker.close()
    assert not a.broker.healthy() and not b.broker.healthy()


async def test_an_event_reaches_the_subscribed_user_with_its_reach(nodes: Nodes) -> None:
    a, b = nodes
    await b.broker.subscribe("bob")
    assert await a.broker.publish(["bob", "nobody"], {"t": "msg", "n": 1}, "sess-1") \
        == [1, 0]
    assert await a.broker.publish(["bob"], {"t": "msg", "n": 2}) == [1]
    assert await a.broker.publish([], {"t": "typing"}) == []
    await until(lambda: b.got("bob", {"t": "msg", "n": 2}), "delivery on B")
    assert b.events == [("bob", {"t": "msg", "n": 1}, "sess-1"),
                        ("bob", {"t": "msg", "n": 2}, None)]


async def test_unsubscribe_stops_delivery(nodes: Nodes) -> None:
    a, b = nodes
    await b.broker.subscribe("bob")
    await b.broker.unsubscribe("bob")
    n = 0
    # Redis applies an UNSUBSCRIBE a moment after it returns: until then events still come.
    while await a.broker.publish(["bob"], {"t": "msg", "n": n}) != [0]:
        n += 1
        assert n < 500, "still subscribed"
    await b.broker.subscribe("bob")
    await a.broker.publish(["bob"], {"t": "msg", "n": "after"})
    await until(lambda: b.got("bob", {"t": "msg", "n": "after"}), "the later event")
    assert {"t": "msg", "n": n} not in b.frames("bob")


async def test_control_reaches_every_node_including_the_sender(nodes: Nodes) -> None:
    a, b = nodes
    await a.broker.publish_control({"k": "match", "id": "m-1"})
    await until(lambda: a.controls == b.controls == [{"k": "match", "id": "m-1"}],
                "control on A and B")


async def test_order_per_publisher_and_user(nodes: Nodes) -> None:
    a, b = nodes
    await b.broker.subscribe("bob")
    for n in range(250):  # one at a time...
        await a.broker.publish(["bob"], {"t": "msg", "n": n})
    await asyncio.gather(*(a.broker.publish(["bob"], {"t": "msg", "n": n})  # ...and batched
                           for n in range(250, 500)))
    await until(lambda: len(b.events) == 500, "500 events")
    assert [frame["n"] for _, frame, _ in b.events] == list(range(500))


async def test_one_publish_reaches_many_users(nodes: Nodes) -> None:
    a, b = nodes
    users = [f"user-{i}" for i in range(300)]
    await asyncio.gather(*(b.broker.subscribe(user) for user in users))
    assert await a.broker.publish(users, {"t": "presence", "on": True}) == [1] * 300
    await until(lambda: len(b.events) == 300, "300 events")
    assert {user for user, _, _ in b.events} == set(users)
