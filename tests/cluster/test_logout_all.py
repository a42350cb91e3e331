"""Log out everywhere on a cluster: two nodes over one real redis-server, storing in one real
Cassandra keyspace (docs/protocol.md, "Log out everywhere"; docs/operations.md).

The user's sockets on both nodes close with 4001 within a second of the call on either node;
the old tokens are refused by both, on the WebSocket and HTTP; a later token works on both.
The not-before is the store's: a Redis restart (no persistence: it comes back empty) changes
nothing, and a node started afterwards, which never saw the revocation's message, refuses the
old token from its first request.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from client.errors import ServerError
from tests.cassandra_node import CassandraNode
from tests.cluster.conftest import TwoNodes
from tests.conftest import Harness, NodeFactory
from tests.helpers import wait_until
from tests.redis_servers import RedisServer
from tests.server.test_logout_all import (
    REVOKED,
    after_second_of,
    close_times,
    http_status,
    refused_ws,
)

CACHE_S = 0.5  # revocation_cache_s: short, so "after the cache expired" is a short wait


@pytest.fixture
def on_cassandra(cassandra_node: CassandraNode) -> dict[str, Any]:
    """Node settings that store in a keyspace of this test's own on the real Cassandra."""
    return {"cassandra_contact_points": (cassandra_node.contact_point,),
            "cassandra_keyspace": f"rdv_{secrets.token_hex(4)}",
            "revocation_cache_s": CACHE_S}


async def test_logout_all_closes_the_users_sockets_on_both_nodes(
        two_nodes: TwoNodes, on_cassandra: dict[str, Any], node_factory: NodeFactory,
        harness_for: Any, redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = await two_nodes(**on_cassandra)
    old = a.token("ann")
    for node in (a, b):  # both nodes have read (and cached) ann's not-before: none
        assert (await http_status(node, old))[0] == 200
    anns = [await a.connect("ann", token=old), await a.connect("ann"),
            await b.connect("ann", token=old), await b.connect("ann", subprotocol="rdv.v1.json")]
    bobs = [await a.connect("bob"), await b.connect("bob")]
    await wait_until(lambda: len(a.node.hub) == 3 and len(b.node.hub) == 3)

    started = time.monotonic()
    await a.http(None, token=old).logout_all()
    closes = await close_times(anns, started)
    slowest = max(t for _, t in closes)
    print(f"\nlogout-all on A to 4001 on A and B: {slowest * 1000:.0f} ms (slowest of 4)")
    assert [code for code, _ in closes] == [4001] * 4
    assert slowest < 1.0
    assert a.node.services.accounts.closed == 2 and b.node.services.accounts.closed == 2
    assert all(not c.closed for c in bobs)
    assert [(await c.ping())["t"] for c in bobs] == ["pong", "pong"]

    # the old token is refused on both nodes, at once
    for node in (b, a):
        status, error = await http_status(node, old)
        assert status == 401 and REVOKED in error["msg"]
        assert (await refused_ws(node, old)).code == 4001
    not_before = await a.node.store.tokens_not_before("ann")
    assert not_before is not None and b.node.services.accounts.not_before.known("ann") == \
        not_before

    # a later token works on both
    await after_second_of(not_before)
    fresh = b.token("ann")
    for node in (a, b):
        assert (await http_status(node, fresh))[0] == 200
        renewed = await node.connect("ann", token=fresh)
        with pytest.raises(ServerError) as refused:  # refresh with the old one: refused
            await renewed.refresh(old)
        assert refused.value.code == "unauthorized" and REVOKED in (refused.value.msg or "")
        assert (await renewed.ping())["t"] == "pong"

    # Redis restarts empty: the not-before is in Cassandra, and read again once the caches
    # expire
    redis_server.stop(kill=True)
    redis_server.start()
    await wait_until(lambda: a.node.broker.healthy() and b.node.broker.healthy(), timeout=15)
    await asyncio.sleep(CACHE_S + 0.1)
    for node in (a, b):
        assert (await http_status(node, old))[0] == 401
        assert (await refused_ws(node, old)).code == 4001
        assert (await http_status(node, fresh))[0] == 200

    # a node started now never saw the message: it refuses the old token from the store
    c = harness_for(await node_factory(redis_url=redis_server.url, node_name="C",
                                       data_dir=tmp_path / "shared", **on_cassandra))
    assert c.node.services.accounts.not_before.known("ann") is None
    assert (await refused_ws(c, old)).code == 4001
    assert (await http_status(c, old))[0] == 401
    assert (await http_status(c, fresh))[0] == 200


async def test_logout_all_without_redis_stores_closes_here_and_asks_for_a_retry(
        two_nodes: TwoNodes, on_cassandra: dict[str, Any], redis_server: RedisServer) -> None:
    """Redis down: the not-before is stored and this node's sockets close, but the other
    node cannot be told: 503, and the retry once Redis is back closes the sockets there."""
    a, b = await two_nodes(**on_cassandra)
    old = a.token("ann")
    on_a, on_b = await a.connect("ann", token=old), await b.connect("ann", token=old)
    redis_server.stop(kill=True)
    try:
        await wait_until(lambda: not a.node.broker.healthy(), timeout=15)
        response = await a.http(None, token=old).raw("POST", "/v1/me/logout-all")
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert response.json()["error"]["code"] == "unavailable"
        assert await on_a.wait_closed(1.0) == 4001
        assert not on_b.closed
        assert await a.node.store.tokens_not_before("ann") is not None
    finally:
        redis_server.start()
    await wait_until(lambda: a.node.broker.healthy() and b.node.broker.healthy(), timeout=15)
    # the old token is refused now, so the retry needs a new one: minted after the first
    retry_token = await retry_after_the_first(a)
    started = time.monotonic()
    await a.http(None, token=retry_token).logout_all()
    assert await on_b.wait_closed(1.0) == 4001
    print(f"\nthe retry closed the socket on B in {(time.monotonic() - started) * 1000:.0f} ms")


async def retry_after_the_first(node: Harness) -> str:
    not_before = await node.node.store.tokens_not_before("ann")
    assert not_before is not None
    await after_second_of(not_before)
    return node.token("ann")
