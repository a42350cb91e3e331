"""Two in-process nodes over a real redis-server: the sending node queues no push job for a
recipient whom another node holds (the publish's reach says so), and pushes resume once the
recipient is gone; a node that took a `msg` with no session left pushes it itself."""

from __future__ import annotations

from typing import Any

from push.recorder import RecorderPusher
from server.node import Node
from tests.cluster.conftest import TwoNodes
from tests.helpers import stays, wait_until
from tests.redis_servers import RedisServer


def pushed(node: Node, user: str) -> list[dict[str, Any]]:
    pusher = node.services.pushes.pushers["apns"]
    assert isinstance(pusher, RecorderPusher)
    return [r for r in pusher.sent if r["user"] == user and r["kind"] == "message"]


def skipped_online(node: Node) -> float:
    return node.metrics.registry.get_sample_value(
        "rendezvous_push_skipped_total", {"reason": "online"}) or 0.0


async def test_no_push_job_for_a_recipient_held_by_another_node(
        two_nodes: TwoNodes, redis_server: RedisServer) -> None:
    a, b = await two_nodes(push_coalesce_s=0.0)
    match_id = await a.pair("ann", "bob")
    await b.http("bob").put_device("a0b1c2d3" * 8, "apns")
    ann = await a.connect("ann")
    bob = await b.connect("bob")
    await ann.send(match_id, "you are on the other node")
    await bob.next_event("msg", timeout=3)
    # skipped once, at the send: a queued job would have been skipped again by a worker
    assert await stays(lambda: skipped_online(a.node) + skipped_online(b.node) == 1
                       and pushed(a.node, "bob") == pushed(b.node, "bob") == [], within=1.0)
    await bob.close()  # gone everywhere: B unsubscribes, the reach is 0, A queues the push
    await wait_until(lambda: not b.node.hub.has_user("bob"))
    await wait_until(lambda: redis_subscribers(redis_server, "bob") == 0, timeout=5)
    await ann.send(match_id, "now you are not")
    await wait_until(lambda: len(pushed(a.node, "bob") + pushed(b.node, "bob")) == 1,
                     timeout=5)


def redis_subscribers(server: RedisServer, user: str) -> int:
    import redis

    with redis.Redis(port=server.port) as probe:
        channels = probe.pubsub_channels(f"*u:{user}")
        return sum(int(n) for _, n in probe.pubsub_numsub(*channels)) if channels else 0


async def test_a_node_that_took_a_msg_with_no_session_left_pushes_it(
        two_nodes: TwoNodes) -> None:
    """What the broker hands to `undelivered` (tests/redis/test_redis_broker.py) becomes
    the push the sending node skipped."""
    a, b = await two_nodes(push_coalesce_s=0.0)
    match_id = await a.pair("ann", "bob")
    await b.http("bob").put_device("a0b1c2d3" * 8, "apns")
    # as B's broker would hand it over: bob's last session here closed as it arrived
    frame = {"t": "msg", "m": match_id, "id": 7 << 22, "from": "ann",
             "ts": 1_700_000_000_000, "c": "c-1", "body": "hello"}
    b.node.services.chat.undelivered("bob", frame)
    # a durable job: the worker of either node may send it
    [record] = await wait_until(lambda: pushed(a.node, "bob") + pushed(b.node, "bob"),
                                timeout=5)
    assert record["m"] == match_id
    b.node.services.chat.undelivered("bob", {"t": "msg", "m": match_id})  # malformed: ignored
    assert await stays(lambda: len(pushed(a.node, "bob") + pushed(b.node, "bob")) == 1)
