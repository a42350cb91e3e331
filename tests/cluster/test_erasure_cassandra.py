"""Account erasure on a node storing in real Cassandra with real Redis: after
`DELETE /v1/me` every table of the keyspace (from `system_schema.tables`) and every Redis
key (SCAN, names and contents) hold nothing of the user but the residue of
`tests/erasure_checks.ALLOWED` (none in Redis); the peer sees tombstones and the unmatch;
old tokens are refused; a second call changes nothing; a failure mid-way is finished by a
retry and by a restarted node. The embedded default: tests/server/test_erasure.py.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from client import ConnectionRejected
from server.node import Node
from storage.cassandra_schema import ClusterSettings, connect, host_port
from tests.cassandra_node import CassandraNode
from tests.conftest import Harness, NodeFactory
from tests.erasure_checks import (
    PEER,
    RULES_ON,
    USER,
    build,
    cassandra_tables,
    leftovers,
    redis_leftovers,
)
from tests.redis_servers import RedisServer
from tests.server.test_erasure import fail_once


@pytest.fixture
def keyspace() -> str:
    return f"er_{secrets.token_hex(4)}"


@pytest.fixture
def cql(cassandra_node: CassandraNode, keyspace: str) -> Iterator[Any]:
    """A session to look at the tables; the test's keyspace is dropped at the end (the
    session's Cassandra node has a small heap)."""
    cluster, session = connect(ClusterSettings((host_port(cassandra_node.contact_point,
                                                          9042),)))
    yield session
    session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    cluster.shutdown()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Any]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def make_node(node_factory: NodeFactory, cassandra_node: CassandraNode,
              redis_server: RedisServer, keyspace: str, tmp_path: Path) -> Any:
    async def make() -> Node:
        return await node_factory(redis_url=redis_server.url, data_dir=tmp_path / "data",
                                  cassandra_contact_points=(cassandra_node.contact_point,),
                                  cassandra_keyspace=keyspace, presence_grace_s=1.0,
                                  **RULES_ON)
    return make


async def test_erasure_on_cassandra_and_redis_leaves_only_the_allowed_residue(
        make_node: Any, cql: Any, keyspace: str, redis: Any) -> None:
    h = Harness(await make_node())
    try:
        scene = await build(h)
        before = await asyncio.to_thread(cassandra_tables, cql, keyspace)
        assert set(leftovers(before)) >= {
            "messages", "message_client_ids", "conversations_by_user", "read_cursors",
            "swipes_by_swiper", "likes_received", "swipes_received", "matches_by_user",
            "user_matches", "blocks", "devices_by_user", "device_owner", "settings",
            "last_swipes", "likes_by_time", "blocks_received", "mutes"}
        in_redis = await redis_leftovers(redis)
        assert any(":rl:send:" in k or "rl:send:" in k for k in in_redis), in_redis
        assert any("conns:" in k for k in in_redis) and any("{u:" in k for k in in_redis)
        assert any("q:{" in k for k in in_redis) and any("openers:{" in k for k in in_redis)
        # send claims are hashed keys holding no user id: looked up by their parts
        claims = [h.node.backends.claims.key(m, USER, c)  # type: ignore[attr-defined]
                  for m, c in scene.user_cids]
        assert await redis.exists(*claims) == len(claims) == 4
        assert any("{push}:delayed" in k for k in in_redis)
        api = h.http(None, token=scene.token)
        response = await api.raw("DELETE", "/v1/me")
        assert response.status_code == 202
        erased_at = response.json()["erased_at"]
        assert await scene.erin.wait_closed(3) == 4001
        assert (await scene.pat.next_event("unmatch"))["m"] == scene.match
        tables = await asyncio.to_thread(cassandra_tables, cql, keyspace)
        assert {"erasures", "erasures_pending", "token_revocations", "user_matches"} <= set(
            tables)
        assert leftovers(tables) == {}
        assert tables["erasures_pending"] == []
        assert await redis_leftovers(redis) == {}
        assert await redis.exists(*claims) == 0
        history = await h.http(PEER).messages(scene.match)
        deleted = {m["id"]: m.get("deleted", False) for m in history["msgs"]}
        assert deleted == {**{i: True for i in scene.user_msgs},
                           **{i: False for i in scene.peer_msgs}}
        assert all("body" not in m for m in history["msgs"] if m["from"] == USER)
        assert scene.match not in [c["m"] for c in (await scene.pat.sync())["convs"]]
        assert (await api.raw("GET", "/v1/matches")).status_code == 401
        with pytest.raises(ConnectionRejected) as refused:
            await h.connect("x", token=scene.token)
        assert refused.value.code == 4001
        again = await api.raw("DELETE", "/v1/me")
        assert (again.status_code, again.json()) == (202, {"erased_at": erased_at})
        await asyncio.sleep(1.5)  # past presence_grace_s: no delayed offline writes back
        assert await redis_leftovers(redis) == {}
    finally:
        await h.close()


async def test_a_failure_mid_way_is_finished_by_a_retry_and_a_restart(
        make_node: Any, cql: Any, keyspace: str, redis: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    node = await make_node()
    h = Harness(node)
    try:
        scene = await build(h)
        fail_once(node.store, "swipes", monkeypatch)
        api = h.http(None, token=scene.token)
        assert (await api.raw("DELETE", "/v1/me")).status_code == 503
        pending = await node.store.pending_erasures(10)
        assert [e.user for e in pending] == [USER]
        # a second user's erasure, cut short the same way, is left to the next start
        other = h.http("zed-e4")
        await other.swipe(USER, "like")
        fail_once(node.store, "blocks", monkeypatch)
        assert (await other.raw("DELETE", "/v1/me")).status_code == 503
        assert (await api.raw("DELETE", "/v1/me")).status_code == 202  # the retry
        assert leftovers(await asyncio.to_thread(cassandra_tables, cql, keyspace)) == {}
        assert await redis_leftovers(redis) == {}
    finally:
        await h.close()
    await node.stop()
    assert await _pending(cql, keyspace) == ["zed-e4"]
    restarted = await make_node()
    for _ in range(200):
        erasure = await restarted.store.get_erasure("zed-e4")
        if erasure is not None and erasure.done:
            break
        await asyncio.sleep(0.05)
    assert erasure is not None and erasure.done
    tables = await asyncio.to_thread(cassandra_tables, cql, keyspace)
    assert tables["erasures_pending"] == []
    assert not [r for r in tables["swipes_by_swiper"] if r["swiper"] == "zed-e4"]


async def _pending(cql: Any, keyspace: str) -> list[str]:
    rows = await asyncio.to_thread(
        lambda: list(cql.execute(f"SELECT user FROM {keyspace}.erasures_pending")))
    return [r["user"] for r in rows]
