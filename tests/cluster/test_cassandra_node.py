"""A real node process storing in a real Cassandra node: the flow, the layout, an outage."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from cassandra.cluster import Cluster

from client import RendezvousClient, ServerError
from tests.cassandra_node import CassandraNode
from tests.cluster.conftest import StartNode, Users
from tests.node_process import NodeProcess


@pytest.fixture
async def keyspace() -> str:
    return f"rdv_{secrets.token_hex(4)}"


@pytest.fixture
async def cassandra_rendezvous(cassandra_node: CassandraNode, start_node: StartNode,
                               keyspace: str) -> AsyncIterator[NodeProcess]:
    node = await start_node("--cassandra", cassandra_node.contact_point,
                            RENDEZVOUS_CASSANDRA_KEYSPACE=keyspace)
    yield node


def rows(node: CassandraNode, query: str) -> list[tuple[object, ...]]:
    cluster = Cluster([node.host], port=node.port)
    try:
        return [tuple(r) for r in cluster.connect().execute(query)]
    finally:
        cluster.shutdown()


async def test_the_flow_on_cassandra_and_its_partitions(
        cassandra_node: CassandraNode, cassandra_rendezvous: NodeProcess, users: Users,
        keyspace: str) -> None:
    node = cassandra_rendezvous
    alice = await users.connect(node, "alice")
    m = await users.pair(node, "alice", node, "bob")
    assert (await alice.next_event("match"))["peer"] == "bob"
    bob = await users.connect(node, "bob", subprotocol="rdv.v1.json")
    cursor = (await bob.sync())["cursor"]
    acks = [await alice.send(m, f"n{i}") for i in range(5)]
    assert [x["id"] for x in (await bob.history(m))["msgs"]] == [a["id"] for a in acks][::-1]
    again = await alice.send(m, "n0", c=acks[0]["c"])
    assert again["id"] == acks[0]["id"]  # idempotent resend
    synced = await bob.sync(cursor)
    assert [x["id"] for x in synced["msgs"]] == [a["id"] for a in acks]
    stored = await asyncio.to_thread(
        rows, cassandra_node, f"SELECT match_id, bucket, id FROM {keyspace}.messages")
    assert {(r[0], r[1]) for r in stored} == {(m, stored[0][1])}  # one (match, bucket)
    assert sorted(r[2] for r in stored) == sorted(a["id"] for a in acks)


async def test_cassandra_outage_no_false_ack_and_recovery(
        cassandra_node: CassandraNode, cassandra_rendezvous: NodeProcess,
        users: Users) -> None:
    node = cassandra_rendezvous
    m = await users.pair(node, "carol", node, "dave")
    carol = await users.connect(node, "carol")
    before = await carol.send(m, "before")
    await asyncio.to_thread(cassandra_node.stop)
    try:
        refused = []
        for i in range(3):
            with pytest.raises(ServerError) as error:
                await carol.send(m, f"during {i}", c=f"during-{i}")
            refused.append(error.value.code)
        assert refused == ["unavailable"] * 3
        with pytest.raises(ServerError) as read_error:
            await carol.history(m)
        assert read_error.value.code == "unavailable"
        assert (await carol.ping())["t"] == "pong"  # the node stays up
    finally:
        await asyncio.to_thread(cassandra_node.start)
    restarted = time.monotonic()
    ack = None
    while ack is None and time.monotonic() - restarted < 60:
        try:
            ack = await carol.send(m, "after", c="after-1")
        except ServerError as error:
            assert error.code == "unavailable"
            await asyncio.sleep(0.5)
    assert ack is not None, "the node did not recover within 60 s of Cassandra returning"
    print(f"\nCassandra back: first ack {time.monotonic() - restarted:.1f} s later")
    dave = await RendezvousClient.connect(node.ws_url, node.token("dave"))
    users.clients.append(dave)
    bodies = [x["body"] for x in (await dave.history(m))["msgs"]]
    assert bodies == ["after", "before"]  # nothing refused was stored
    assert before["id"] < ack["id"]
