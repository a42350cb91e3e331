"""`GET /v1/me/export` from a real node process: the whole document on Cassandra with
Redis, and the memory bound on both stores: 100k messages stream out while the node's
resident memory grows less than 50 MB (docs/privacy.md, "Export")."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cassandra.cluster import Cluster

from client import RendezvousClient, RendezvousHttp
from storage.buckets import bucket_of
from storage.sqlite import SqliteStore
from tests.cassandra_node import CassandraNode
from tests.cluster.conftest import StartNode, Users
from tests.export_scenario import check_export, make_scenario
from tests.export_seed import seed_match, seeded_body
from tests.node_process import NodeProcess
from tests.redis_servers import RedisServer

MESSAGES = 100_000
RSS_BOUND = 50 * 2**20


@pytest.fixture
def keyspace() -> str:
    return f"rdv_{secrets.token_hex(4)}"


@pytest.fixture
async def cassandra_session(cassandra_node: CassandraNode) -> AsyncIterator[Any]:
    cluster = Cluster([cassandra_node.host], port=cassandra_node.port)
    session = await asyncio.to_thread(cluster.connect)
    yield session
    await asyncio.to_thread(cluster.shutdown)


async def cassandra_rendezvous(start_node: StartNode, cassandra_node: CassandraNode,
                               redis_server: RedisServer, keyspace: str) -> NodeProcess:
    return await start_node("--cassandra", cassandra_node.contact_point,
                            "--redis-url", redis_server.url,
                            RENDEZVOUS_CASSANDRA_KEYSPACE=keyspace)


async def test_the_export_holds_exactly_the_users_data_on_cassandra(
        cassandra_node: CassandraNode, redis_server: RedisServer, start_node: StartNode,
        users: Users, keyspace: str, cassandra_session: Any) -> None:
    node = await cassandra_rendezvous(start_node, cassandra_node, redis_server, keyspace)

    async def tombstone(match_id: str, message_id: int) -> None:
        await asyncio.to_thread(
            cassandra_session.execute,
            f"DELETE body, media FROM {keyspace}.messages WHERE match_id = %s"
            " AND bucket = %s AND id = %s", (match_id, bucket_of(message_id), message_id))

    async def connect(user: str) -> RendezvousClient:
        return await users.connect(node, user)

    apis: dict[str, RendezvousHttp] = {}

    def http(user: str) -> RendezvousHttp:
        if user not in apis:
            apis[user] = users.http(node, user)
        return apis[user]

    s = await make_scenario(http, connect, tombstone)
    response = await http("alice").raw("GET", "/v1/me/export")
    assert response.status_code == 200
    await check_export(response.content, s, http("alice"))


class Rss:
    """The resident memory of one process, from /proc: sampled every few ms while an
    export runs, and its high-water mark (VmHWM, which no sample can miss)."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")

    def read(self) -> dict[str, int]:
        fields = dict(line.split(":", 1) for line in self.path.read_text().splitlines())
        return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}

    async def growth_during(self, work: asyncio.Task[int]) -> tuple[int, int]:
        """(bytes of growth over the resident size before `work`, work's result)."""
        before = self.read()
        peak = before["VmRSS"]
        while not work.done():
            peak = max(peak, self.read()["VmRSS"])
            await asyncio.sleep(0.01)
        after = self.read()
        if after["VmHWM"] > before["VmHWM"]:  # a new high-water mark: the exact peak
            peak = max(peak, after["VmHWM"])
        return peak - before["VmRSS"], await work


async def export_and_measure(node: NodeProcess, label: str) -> None:
    assert node.proc is not None
    rss = Rss(node.proc.pid)
    token = node.token("alice")
    async with httpx.AsyncClient(base_url=node.http_url, timeout=120) as client:
        # a first, small request: the HTTP route and its imports are warm before measuring
        assert (await client.get("/healthz")).status_code == 200

        async def export() -> int:
            started = time.monotonic()
            response = await client.get("/v1/me/export",
                                        headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200
            doc = json.loads(response.content)
            msgs = doc["messages"]
            assert [x["body"] for x in msgs[:2]] == [seeded_body(0, 80), seeded_body(1, 80)]
            assert msgs[-1]["body"] == seeded_body(MESSAGES - 1, 80)
            assert len({x["id"] for x in msgs}) == len(msgs)
            print(f"\n{label}: {len(msgs)} messages, {len(response.content) / 2**20:.1f} MB "
                  f"of JSON in {time.monotonic() - started:.1f} s", end="")
            return len(msgs)

        growth, count = await rss.growth_during(asyncio.create_task(export()))
    print(f"; node RSS growth {growth / 2**20:.1f} MB (bound {RSS_BOUND / 2**20:.0f} MB)")
    assert count == MESSAGES
    assert growth < RSS_BOUND


async def test_100k_messages_export_within_the_memory_bound_on_sqlite(
        start_node: StartNode, tmp_path: Path) -> None:
    started = time.monotonic()
    store = SqliteStore(tmp_path / "data" / "rendezvous.db", synchronous="OFF")
    (tmp_path / "data").mkdir()
    await store.start()
    await seed_match(store, "alice", "bob", MESSAGES)
    await store.close()
    print(f"\nsqlite: seeded {MESSAGES} messages in {time.monotonic() - started:.1f} s",
          end="")
    await export_and_measure(await start_node(), "sqlite")


async def test_100k_messages_export_within_the_memory_bound_on_cassandra(
        cassandra_node: CassandraNode, redis_server: RedisServer, start_node: StartNode,
        keyspace: str) -> None:
    from storage.cassandra import CassandraStore

    started = time.monotonic()
    store = CassandraStore([cassandra_node.contact_point], keyspace=keyspace)
    await store.start()
    try:
        await seed_match(store, "alice", "bob", MESSAGES, batch=1000, rows_only=True)
    finally:
        await store.close()
    print(f"\ncassandra: seeded {MESSAGES} messages in {time.monotonic() - started:.1f} s",
          end="")
    node = await cassandra_rendezvous(start_node, cassandra_node, redis_server, keyspace)
    await export_and_measure(node, "cassandra")
