"""Unsend, mutes, push kinds and opener rules on two real nodes sharing a real redis-server
and a real Cassandra node: what one node does, every node honours (docs/chat-controls.md).

The nodes run in this process (each on its own ports, with its own Redis client and
Cassandra session) so that a test can hand them a push provider it holds."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from client import HttpError, ServerError
from push.recorder import RecorderPusher
from server.node import Node
from tests.cassandra_node import CassandraNode
from tests.conftest import Harness, make_config
from tests.helpers import Apis, stays, wait_until
from tests.push.test_dispatcher import APNS_TOKEN, FCM_TOKEN, FakePusher, sent
from tests.redis_servers import RedisServer
from tests.server.test_unsend import check_race, tombstone_of

Pair = Callable[..., Awaitable[tuple[Harness, Harness]]]


@pytest.fixture
async def pair(redis_server: RedisServer, cassandra_node: CassandraNode,
               tmp_path: Path) -> AsyncIterator[Pair]:
    """Nodes A and B over `redis_server` and one keyspace of `cassandra_node`, with the
    given pushers (shared by both: what either sends is seen there) and settings."""
    made: list[Harness] = []
    keyspace = f"cc_{secrets.token_hex(4)}"

    async def make(pushers: dict[str, Any] | None = None,
                   **overrides: Any) -> tuple[Harness, Harness]:
        nodes = []
        for name in ("A", "B"):
            config = make_config(tmp_path / f"{name}{len(made)}", redis_url=redis_server.url,
                                 cassandra_contact_points=(cassandra_node.contact_point,),
                                 cassandra_keyspace=keyspace, node_name=name, **overrides)
            node = Node(config, pushers=pushers)
            await node.start()
            made.append(Harness(node))
            nodes.append(made[-1])
        return nodes[0], nodes[1]

    yield make
    for harness in made:
        await harness.close()
        if harness.node.started:
            await harness.node.stop()


def shared_recorder() -> tuple[RecorderPusher, dict[str, Any]]:
    recorder = RecorderPusher(None)
    return recorder, {"apns": recorder, "fcm": recorder}


def pushed(recorder: RecorderPusher, user: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in recorder.sent if r["user"] == user and r["kind"] == kind]


async def test_unsend_across_nodes_on_cassandra(pair: Pair, http: Apis) -> None:
    a, b = await pair()
    m = await http.pair(a, "ann", "bob")
    ann, ann_tablet = await a.connect("ann"), await b.connect("ann")
    bob, bob_tablet = await b.connect("bob"), await a.connect("bob")
    kept = await ann.send(m, "stays")
    gone = await ann.send(m, "goes")
    assert (await bob.next_event("msg", predicate=lambda f: f["id"] == gone["id"]))["body"]
    assert (await ann.unsend(m, gone["id"]))["t"] == "ok"
    for device in (bob, bob_tablet, ann_tablet):  # on both nodes
        assert await device.next_event("unsent") == {"t": "unsent", "m": m, "id": gone["id"]}
    for node, reader in ((a, ann), (b, bob)):
        msgs = (await reader.history(m))["msgs"]
        assert [x["id"] for x in msgs] == [gone["id"], kept["id"]]
        assert tombstone_of(msgs[0]) and msgs[1]["body"] == "stays"
        over_http = (await http(node, "bob").messages(m))["msgs"]
        assert tombstone_of(over_http[0])
    assert [tombstone_of(x) for x in (await bob_tablet.sync())["msgs"]] == [False, True]

    # each bad request answers its code, on either node, and changes nothing
    mine = await bob.send(m, "bob's own")
    cat = await b.connect("cat")
    for client, mid, code in ((ann, mine["id"], "forbidden"), (cat, mine["id"], "forbidden"),
                              (bob, mine["id"] + 1, "not_found")):
        with pytest.raises(ServerError) as error:
            await client.unsend(m, mid)
        assert error.value.code == code
    assert (await ann.history(m))["msgs"][0]["body"] == "bob's own"


async def test_unsend_racing_delivery_across_nodes(pair: Pair, http: Apis) -> None:
    a, b = await pair()
    m = await http.pair(a, "ann", "bob")
    ann, bob = await a.connect("ann"), await b.connect("bob")
    await check_race(ann, bob, m, 40)


async def test_past_the_window_unsend_is_forbidden(pair: Pair, http: Apis) -> None:
    a, b = await pair(unsend_window_s=0.5)
    m = await http.pair(a, "ann", "bob")
    ann = await b.connect("ann")
    old = await ann.send(m, "too late to take back")
    await asyncio.sleep(0.6)
    with pytest.raises(ServerError) as error:
        await ann.unsend(m, old["id"])
    assert error.value.code == "forbidden"
    assert (await ann.history(m))["msgs"][0]["body"] == "too late to take back"


async def test_mutes_and_push_kinds_hold_on_every_node(pair: Pair, http: Apis) -> None:
    recorder, pushers = shared_recorder()
    a, b = await pair(pushers, push_coalesce_s=0)
    muted = await http.pair(a, "ann", "bob")
    loud = await http.pair(a, "cat", "bob")
    await http(b, "bob").put_device(APNS_TOKEN + "bob", "apns")
    assert await http(b, "bob").mute(muted) == {"muted_until": None}  # through node B
    with pytest.raises(HttpError) as error:
        await http(a, "dan").mute(muted)  # not a member
    assert error.value.status == 403
    ann, cat = await a.connect("ann"), await a.connect("cat")  # sending through node A
    await ann.send(muted, "quiet")
    await cat.send(loud, "loud")
    first = await wait_until(lambda: pushed(recorder, "bob", "message"))
    assert [r["m"] for r in first] == [loud] and first[0]["badge"] == 2
    assert await stays(lambda: len(pushed(recorder, "bob", "message")) == 1)

    await http(a, "bob").unmute(muted)
    await http(a, "bob").put_settings(push_kinds={"message": False})  # through node A
    await ann.send(muted, "kinds off")
    await cat.send(loud, "kinds off too")
    assert await stays(lambda: len(pushed(recorder, "bob", "message")) == 1, within=0.5)
    await http(b, "bob").put_settings(push_kinds={"message": True})
    await ann.send(muted, "unmuted and on")
    await wait_until(lambda: len(pushed(recorder, "bob", "message")) == 2)
    assert pushed(recorder, "bob", "message")[-1]["m"] == muted


async def test_a_push_queued_in_redis_for_an_unsent_message_is_dropped(
        pair: Pair, http: Apis) -> None:
    """Each node's only worker is held by an iPhone push (a provider the test holds); bob's
    Android pushes go to the recorder and wait in the Redis stream meanwhile."""
    fake = FakePusher(sent)
    fake.gate = asyncio.Event()
    recorder = RecorderPusher(None)
    a, b = await pair({"apns": fake, "fcm": recorder}, push_workers=1, push_coalesce_s=0)
    holders = [await http.pair(a, "ann", peer) for peer in ("cat", "dan")]
    m = await http.pair(a, "ann", "bob")
    for user in ("cat", "dan"):
        await http(a, user).put_device(APNS_TOKEN + user, "apns")
    await http(a, "bob").put_device(FCM_TOKEN + "bob", "fcm")
    ann = await a.connect("ann")
    for holder in holders:  # one per node's only worker
        await ann.send(holder, "holds a worker")
    await wait_until(lambda: len(fake.messages()) == 2)
    kept = await ann.send(m, "kept")
    gone = await ann.send(m, "unsent while queued")
    queued = await a.node.backends.redis.xlen(f"{a.node.config.redis_prefix}{{push}}:jobs")
    assert queued >= 2  # both of bob's jobs wait in the Redis stream
    await (await b.connect("ann")).unsend(m, gone["id"])  # through the other node
    fake.gate.set()
    to_bob = await wait_until(lambda: pushed(recorder, "bob", "message"))
    assert await stays(lambda: len(pushed(recorder, "bob", "message")) == 1, within=0.5)
    assert str(kept["id"]) in to_bob[0]["push_id"]


async def test_opener_rules_hold_across_nodes(pair: Pair, http: Apis) -> None:
    a, b = await pair(openers_per_day=2, reject_duplicate_openers=True)
    m1, m2, m3, m4 = [await http.pair(a, "ann", p) for p in ("bob", "cat", "dan", "eve")]
    phone, tablet = await a.connect("ann"), await b.connect("ann")
    await phone.send(m1, "Coffee this week?")
    with pytest.raises(ServerError) as error:
        await tablet.send(m2, "coffee  THIS week?")  # the other node knows it
    assert error.value.code == "duplicate_opener"
    results = await asyncio.gather(phone.send(m2, "from the phone"),
                                   tablet.send(m3, "from the tablet"),
                                   return_exceptions=True)
    assert sorted(r["t"] if isinstance(r, dict) else r.code for r in results) == [
        "ack", "opener_limit"]
    with pytest.raises(ServerError) as error:
        await phone.send(m4, "one more")
    assert error.value.code == "opener_limit" and error.value.retry_ms
    assert (await phone.history(m4))["msgs"] == []
    await tablet.send(m1, "a reply is no opener")
    started = time.monotonic()
    assert (await phone.send(m1, "nor is this"))["t"] == "ack"
    assert time.monotonic() - started < 1.0
