"""The chat flows of docs/protocol.md against a real node, in both subprotocols."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from client import ServerError
from protocol.limits import Limits
from server.edge.gateway import LISTEN_BACKLOG
from tests.conftest import Harness, NodeFactory


async def test_send_ack_and_delivery(rdv: Harness, subprotocol: str) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice", subprotocol=subprotocol)
    bob = await rdv.connect("bob", subprotocol=subprotocol)
    ack = await alice.send(m, "hello bob", c="c-1")
    assert ack["t"] == "ack" and ack["m"] == m and ack["c"] == "c-1"
    assert isinstance(ack["id"], int) and ack["ts"] > 0
    msg = await bob.next_event("msg")
    assert msg == {"t": "msg", "m": m, "id": ack["id"], "from": "alice", "ts": ack["ts"],
                   "body": "hello bob", "c": "c-1"}
    assert await alice.no_event("msg", within=0.2)  # the sending device gets only the ack


async def test_media_message(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob", subprotocol="rdv.v1.json")
    media = {"kind": "image", "url": "https://cdn.example/p.jpg", "w": 640, "h": 480}
    ack = await alice.send(m, media=media)
    msg = await bob.next_event("msg")
    assert msg["media"] == media and "body" not in msg and msg["id"] == ack["id"]


async def test_json_ids_are_strings_on_the_wire(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    headers = {"Authorization": f"Bearer {rdv.token('bob')}"}
    async with connect(rdv.ws_url, subprotocols=[Subprotocol("rdv.v1.json")],
                       additional_headers=headers) as raw:
        assert json.loads(await raw.recv())["t"] == "welcome"
        ack = await alice.send(m, "x")
        text = await raw.recv()
        while json.loads(text)["t"] != "msg":
            text = await raw.recv()
        assert isinstance(text, str) and json.loads(text)["id"] == str(ack["id"])


async def test_ids_strictly_increase_within_a_match(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    acks = await asyncio.gather(*(alice.send(m, f"a{i}") for i in range(20)),
                                *(bob.send(m, f"b{i}") for i in range(20)))
    ids = [a["id"] for a in acks]
    assert len(set(ids)) == 40
    page = await alice.history(m, limit=100)
    stored = [x["id"] for x in page["msgs"]]
    assert stored == sorted(stored, reverse=True) and set(stored) == set(ids)


async def test_same_client_id_returns_the_first_ack(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    first = await alice.send(m, "once", c="dup")
    again = await alice.send(m, "once", c="dup")
    racing = await asyncio.gather(*(alice.send(m, "race", c="race") for _ in range(10)))
    assert again["id"] == first["id"] and again["ts"] == first["ts"]
    assert len({a["id"] for a in racing}) == 1
    page = await bob.history(m)
    assert [x["body"] for x in page["msgs"]] == ["race", "once"]
    await bob.next_event("msg")
    await bob.next_event("msg")
    assert await bob.no_event("msg", within=0.3)


async def test_history_pages_newest_first(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    ids = [(await alice.send(m, f"n{i}"))["id"] for i in range(7)]
    first = await alice.history(m, limit=3)
    assert [x["id"] for x in first["msgs"]] == ids[::-1][:3] and first["more"] is True
    second = await alice.history(m, before=first["msgs"][-1]["id"], limit=3)
    assert [x["id"] for x in second["msgs"]] == ids[::-1][3:6] and second["more"] is True
    last = await alice.history(m, before=second["msgs"][-1]["id"], limit=3)
    assert [x["id"] for x in last["msgs"]] == [ids[0]] and last["more"] is False
    default = await alice.history(m)
    assert len(default["msgs"]) == 7 and default["more"] is False


async def test_typing_on_off_and_expiry(node_factory: NodeFactory,
                                        harness_for: type[Harness]) -> None:
    rdv = harness_for(await node_factory(limits=Limits(typing_ttl_s=0.4)))
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    await alice.typing(m, True)
    assert await bob.next_event("typing") == {"t": "typing", "m": m, "from": "alice",
                                              "on": True}
    await alice.typing(m, False)
    assert (await bob.next_event("typing"))["on"] is False
    started = time.monotonic()
    await alice.typing(m, True)
    assert (await bob.next_event("typing"))["on"] is True
    expired = await bob.next_event("typing", timeout=3)
    assert expired["on"] is False and time.monotonic() - started >= 0.35
    assert await alice.no_event("typing", within=0.2)  # typing goes to the peer only


async def test_sending_ends_typing(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    await alice.typing(m, True)
    await bob.next_event("typing")
    await alice.send(m, "done typing")
    assert (await bob.next_event("typing"))["on"] is False
    await bob.next_event("msg")


async def test_read_and_delivered_receipts(rdv: Harness, subprotocol: str) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice", subprotocol=subprotocol)
    bob = await rdv.connect("bob", subprotocol=subprotocol)
    ack = await alice.send(m, "read me")
    await bob.next_event("msg")
    await bob.delivered(m, ack["id"])
    assert await alice.next_event("delivered") == {"t": "delivered", "m": m, "from": "bob",
                                                   "id": ack["id"]}
    ok = await bob.read(m, ack["id"], ack=True)
    assert ok is not None and ok["t"] == "ok"
    assert await alice.next_event("read") == {"t": "read", "m": m, "from": "bob",
                                              "id": ack["id"]}
    await bob.read(m, ack["id"])  # not forward: nothing new to tell
    assert await alice.no_event("read", within=0.3)


async def test_read_receipts_off_is_reciprocal(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    await rdv.http("bob").put_settings(read_receipts=False)
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    to_bob = await alice.send(m, "one")
    to_alice = await bob.send(m, "two")
    await bob.read(m, to_bob["id"], ack=True)
    await alice.read(m, to_alice["id"], ack=True)
    assert await alice.no_event("read", within=0.3)
    assert await bob.no_event("read", within=0.1)
    sync = await alice.sync()
    assert sync["convs"][0]["peer_read"] == 0


async def test_several_devices_of_one_user(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    phone = await rdv.connect("alice")
    tablet = await rdv.connect("alice", subprotocol="rdv.v1.json")
    bob = await rdv.connect("bob")
    ack = await phone.send(m, "from my phone")
    assert (await tablet.next_event("msg"))["id"] == ack["id"]  # own other device
    assert (await bob.next_event("msg"))["id"] == ack["id"]
    reply = await bob.send(m, "hi both")
    assert (await phone.next_event("msg"))["id"] == reply["id"]
    assert (await tablet.next_event("msg"))["id"] == reply["id"]
    await phone.read(m, reply["id"], ack=True)
    assert (await tablet.next_event("read"))["from"] == "alice"  # clears its badge too


async def test_offline_messages_come_back_through_sync(rdv: Harness,
                                                       subprotocol: str) -> None:
    m = await rdv.pair("alice", "bob")
    other = await rdv.pair("bob", "carol")
    bob = await rdv.connect("bob", subprotocol=subprotocol)
    cursor = (await bob.sync())["cursor"]
    await bob.close()
    alice = await rdv.connect("alice")
    carol = await rdv.connect("carol")
    sent = []
    for i in range(5):
        sent.append((await alice.send(m, f"a{i}"))["id"])
        sent.append((await carol.send(other, f"c{i}"))["id"])
    bob = await rdv.connect("bob", subprotocol=subprotocol)
    result = await bob.sync(cursor)
    assert [x["id"] for x in result["msgs"]] == sorted(sent)
    assert result["more"] is False
    convs = {c["m"]: c for c in result["convs"]}
    assert convs[m]["unread"] == 5 and convs[m]["peer"] == "alice"
    assert convs[other]["last_id"] == max(sent[1::2])
    again = await bob.sync(result["cursor"])
    assert again["msgs"] == [] and again["more"] is False


async def test_sync_pages_when_many_were_missed(node_factory: NodeFactory,
                                                harness_for: type[Harness]) -> None:
    rdv = harness_for(await node_factory(limits=Limits(sync_max_msgs=7),
                                         sends_per_s=1000, send_burst=1000))
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    sent = [(await alice.send(m, f"m{i}"))["id"] for i in range(20)]
    bob = await rdv.connect("bob")
    got: list[int] = []
    cursor = None
    for _ in range(10):
        page = await bob.sync(cursor)
        got += [x["id"] for x in page["msgs"]]
        cursor = page["cursor"]
        if not page["more"]:
            break
    assert got == sent


async def test_sync_unread_counts_past_the_read_cursor_wherever_it_is(
        node_factory: NodeFactory, harness_for: type[Harness]) -> None:
    rdv = harness_for(await node_factory(limits=Limits(sync_max_msgs=4),
                                         sends_per_s=1000, send_burst=1000))
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    first = [(await alice.send(m, f"a{i}"))["id"] for i in range(3)]
    cursor = (await bob.sync())["cursor"]  # past the first three
    later = [(await alice.send(m, f"b{i}"))["id"] for i in range(3)]
    await bob.send(m, "mine")  # not unread for bob

    def unread(reply: dict[str, Any]) -> int:
        return int({c["m"]: c for c in reply["convs"]}[m]["unread"])

    await bob.read(m, first[1], ack=True)  # read cursor before the sync cursor
    assert unread(await bob.sync(cursor)) == 4
    await bob.read(m, later[0], ack=True)  # past it: counted from the page
    assert unread(await bob.sync(cursor)) == 2
    more = [(await alice.send(m, f"c{i}"))["id"] for i in range(3)]
    reply = await bob.sync(cursor)  # a page cut at 4: counted by the store
    assert reply["more"] is True and unread(reply) == 5
    await bob.read(m, more[-1], ack=True)
    assert unread(await bob.sync(cursor)) == 0


async def test_presence_online_offline_and_query(rdv: Harness) -> None:
    await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    assert await alice.next_event("presence") == {"t": "presence", "u": "bob", "on": True}
    reply = await alice.presence()
    assert reply["users"] == [{"u": "bob", "on": True}]
    await bob.close()
    offline = await alice.next_event("presence")
    assert offline["u"] == "bob" and offline["on"] is False
    assert offline["seen"] % 60_000 == 0  # coarse on purpose
    assert abs(offline["seen"] - time.time() * 1000) < 120_000
    reply = await alice.presence()
    assert reply["users"][0]["on"] is False and reply["users"][0]["seen"] == offline["seen"]


async def test_second_device_does_not_repeat_presence(rdv: Harness) -> None:
    await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob1 = await rdv.connect("bob")
    await alice.next_event("presence")
    bob2 = await rdv.connect("bob")
    await bob1.close()
    assert await alice.no_event("presence", within=0.3)
    await bob2.close()
    assert (await alice.next_event("presence"))["on"] is False


async def test_presence_reaches_only_matches(rdv: Harness) -> None:
    await rdv.pair("alice", "bob")
    stranger = await rdv.connect("mallory")
    alice = await rdv.connect("alice")
    await rdv.connect("bob")
    await alice.next_event("presence")
    assert await stranger.no_event("presence", within=0.3)
    assert (await stranger.presence())["users"] == []


async def test_hidden_presence(rdv: Harness) -> None:
    await rdv.pair("alice", "bob")
    await rdv.http("bob").put_settings(show_online=False)
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    assert await alice.no_event("presence", within=0.3)
    assert (await alice.presence())["users"] == []
    await bob.close()
    assert await alice.no_event("presence", within=0.3)


async def test_hiding_while_online_tells_matches(rdv: Harness) -> None:
    await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    await rdv.connect("bob")
    assert (await alice.next_event("presence"))["on"] is True
    await rdv.http("bob").put_settings(show_online=False)
    assert await alice.next_event("presence") == {"t": "presence", "u": "bob", "on": False}


async def test_ack_only_after_durable_write(node_factory: NodeFactory,
                                            harness_for: type[Harness], tmp_path) -> None:
    """An acked message survives a restart; with the store down a send is never acked."""
    data_dir = tmp_path / "durable"
    node = await node_factory(data_dir=data_dir)
    rdv = harness_for(node)
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    ack = await alice.send(m, "keep me")
    await node.store.close()  # the store goes away under the node
    with pytest.raises(ServerError) as refused:
        await alice.send(m, "not stored")
    assert refused.value.code == "unavailable" and refused.value.retry_ms
    assert (await alice.ping())["t"] == "pong"  # the node stays up
    await rdv.close()
    await node.stop()
    restarted = harness_for(await node_factory(data_dir=data_dir))
    bob = await restarted.connect("bob")
    page = await bob.history(m)
    assert [x["id"] for x in page["msgs"]] == [ack["id"]]


async def test_ping(rdv: Harness) -> None:
    alice = await rdv.connect("alice")
    assert await alice.ping() == {"t": "pong", "r": 1}


async def test_no_subprotocol_offered_means_msgpack(rdv: Harness) -> None:
    alice = await rdv.connect("alice", subprotocol=None)
    assert alice.subprotocol is None and alice.welcome["user"] == "alice"
    assert (await alice.ping())["t"] == "pong"


async def test_a_receipt_for_a_message_that_does_not_exist_is_not_found(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    with pytest.raises(ServerError) as empty:
        await bob.read(m, 12345, ack=True)  # no message yet
    assert empty.value.code == "not_found"
    ack = await alice.send(m, "one")
    with pytest.raises(ServerError) as beyond:
        await bob.delivered(m, ack["id"] + 1, ack=True)
    assert beyond.value.code == "not_found"
    assert await alice.no_event({"read", "delivered"}, within=0.2)
    assert (await bob.read(m, ack["id"], ack=True) or {})["t"] == "ok"


async def test_a_receipt_for_a_message_this_node_stored_reads_no_history(rdv: Harness) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    first = await alice.send(m, "one")
    second = await alice.send(m, "two")
    registry = rdv.node.metrics.registry

    def history_reads() -> float | None:
        return registry.get_sample_value("rendezvous_store_op_seconds_count", {"op": "history"})

    reads_before = history_reads()
    assert (await bob.delivered(m, second["id"], ack=True) or {})["t"] == "ok"
    assert (await bob.read(m, first["id"], ack=True) or {})["t"] == "ok"
    assert history_reads() == reads_before


async def test_an_internal_error_is_answered_and_the_node_keeps_serving(
        rdv: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(rdv.node.store, "history", broken)
    with pytest.raises(ServerError) as failed:
        await alice.history(m)
    assert failed.value.code == "internal" and failed.value.frame["r"] == 1
    monkeypatch.undo()
    assert (await alice.ping())["t"] == "pong"
    assert (await alice.history(m))["msgs"] == []


async def test_the_websocket_port_queues_a_connect_burst(rdv: Harness) -> None:
    """asyncio listens again with a backlog of 100 unless told otherwise; a reconnect storm
    then overflows it and connects wait for SYN retries (1 s, 3 s)."""
    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2) to read the listen backlog")
    port = rdv.node.ws_port
    done = await asyncio.to_thread(subprocess.run, ["ss", "-ltnH", f"sport = :{port}"],
                                   capture_output=True, text=True, check=True)
    out = done.stdout.split()
    assert out[2] == str(LISTEN_BACKLOG)  # State Recv-Q Send-Q(backlog) Local Peer
