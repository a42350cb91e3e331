"""The connect-time guards across nodes through one real redis-server (docs/operations.md,
"Connection limits"): the connection cap counts a user's sockets on every node, failed
authentications count per IP for the cluster, and a user flapping between nodes does not
flap for their matches.
Both nodes share one data dir (one SQLite file), as cluster nodes share Cassandra."""

from __future__ import annotations

from client import ConnectionRejected
from tests.cluster.conftest import TwoNodes
from tests.helpers import wait_until
from tests.redis_servers import RedisServer
from tests.server.test_guards import bad_upgrade, presence_events


async def test_the_cap_counts_sockets_on_every_node(two_nodes: TwoNodes) -> None:
    a, b = await two_nodes(max_connections_per_user=4)
    on_a = [await a.connect("ann") for _ in range(3)]
    on_b = [await b.connect("ann") for _ in range(3)]
    # the two oldest, both on node A, are closed by A when B's connects pass the cap
    for old in on_a[:2]:
        assert await old.wait_closed() == 4008
        assert "max_connections_per_user (4)" in (old.close_reason or "")
    assert not on_a[2].closed and not any(c.closed for c in on_b)
    await wait_until(lambda: len(a.node.hub) + len(b.node.hub) == 4)
    assert a.node.services.guard.evicted == 2 and b.node.services.guard.evicted == 0


async def test_failed_auths_count_for_the_whole_cluster(two_nodes: TwoNodes) -> None:
    a, b = await two_nodes(auth_failures_per_ip=4)
    assert [await bad_upgrade(a.ws_url) for _ in range(2)] == [4001, 4001]
    bad_http = b.http(None, token="bad")
    assert [(await bad_http.raw("GET", "/v1/matches")).status_code
            for _ in range(2)] == [401, 401]
    # the fourth failure (on B) blocked the IP: B tells A, which refuses it too
    await wait_until(lambda: a.node.services.guard.throttle.blocked("127.0.0.1") > 0)
    assert await bad_upgrade(a.ws_url) == 429
    assert (await a.http("ann").raw("GET", "/v1/matches")).status_code == 429
    assert await bad_upgrade(b.ws_url, b.token("ann")) == 429


async def test_a_user_moving_between_nodes_does_not_flap(two_nodes: TwoNodes) -> None:
    a, b = await two_nodes(presence_grace_s=1.0)
    await a.pair("ann", "bob")
    bob = await a.connect("bob")
    ann = await a.connect("ann")
    assert (await bob.next_event("presence"))["on"] is True
    for node in (b, a, b, a, b) * 4:  # 20 moves, each a close then a connect elsewhere
        await ann.close()
        ann = await node.connect("ann")
    # never offline; at most a repeated "online" when a connect on one node overtook
    # the mark of the disconnect on the other (invisible to the user: already online)
    assert all(e["on"] is True for e in await presence_events(bob, 1.5))
    await ann.close()
    offline = await bob.next_event("presence", timeout=3)
    assert offline["u"] == "ann" and offline["on"] is False
    assert await presence_events(bob, 1.2) == []  # one node announced it, not two


async def test_the_guards_fall_back_when_redis_is_gone(
        two_nodes: TwoNodes, redis_server: RedisServer) -> None:
    """Redis down: the cap and the throttle act per node instead; nobody is refused."""
    a, _ = await two_nodes(max_connections_per_user=2, auth_failures_per_ip=2)
    try:
        redis_server.stop(kill=True)
        anns = [await a.connect("ann") for _ in range(3)]
        assert await anns[0].wait_closed() == 4008
        assert [await bad_upgrade(a.ws_url) for _ in range(3)] == [4001, 4001, 429]
    except ConnectionRejected as exc:  # pragma: no cover - the assertion above explains
        raise AssertionError(f"refused while Redis was down: {exc}") from exc
    finally:
        redis_server.start()
