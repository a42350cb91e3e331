"""`welcome` is the first frame after auth, whatever arrives for the user while the
connection is still being set up (docs/architecture.md, "Fan-out and backpressure"; the
cluster drill is in tests/cluster/test_welcome_first.py)."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from protocol.codec import Frame, codec_for
from tests.conftest import Harness


async def raw_connect(rdv: Harness, user: str, subprotocol: str) -> ClientConnection:
    return await connect(rdv.ws_url, subprotocols=[Subprotocol(subprotocol)], compression=None,
                         additional_headers={"Authorization": f"Bearer {rdv.token(user)}"})


async def frames_until(ws: ClientConnection, subprotocol: str, wanted: set[str],
                       timeout: float = 5) -> list[Frame]:
    """Frames in the order they arrived, until every type in `wanted` was seen."""
    codec = codec_for(subprotocol)
    seen: list[Frame] = []
    async with asyncio.timeout(timeout):
        while not wanted <= {f["t"] for f in seen}:
            seen.append(codec.decode(await ws.recv()))
    return seen


@pytest.mark.parametrize("auth", ["header", "frame"])
async def test_events_during_the_broker_subscription_come_after_welcome(
        rdv: Harness, subprotocol: str, auth: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session is in the hub, and subscribed, before its `welcome` goes out (a Redis
    round trip in a cluster): a message, typing and presence for the user then arrive
    first. They are held and follow the welcome."""
    m = await rdv.pair("alice", "bob")
    await rdv.pair("carol", "bob")
    alice = await rdv.connect("alice")
    broker = rdv.node.services.gateway.broker
    subscribe = broker.subscribe
    subscribed, release = asyncio.Event(), asyncio.Event()

    async def slow_subscribe(user: str) -> None:
        await subscribe(user)
        if user == "bob":  # subscribed: events for bob are delivered from now on
            subscribed.set()
            await release.wait()

    monkeypatch.setattr(broker, "subscribe", slow_subscribe)
    codec = codec_for(subprotocol)
    if auth == "header":
        opening = asyncio.create_task(raw_connect(rdv, "bob", subprotocol))
    else:
        async def open_plain() -> ClientConnection:
            return await connect(rdv.ws_url, compression=None,
                                 subprotocols=[Subprotocol(subprotocol)])
        opening = asyncio.create_task(open_plain())
    try:
        if auth == "frame":
            ws = await opening
            await ws.send(codec.encode({"t": "auth", "token": rdv.token("bob")}))
        await asyncio.wait_for(subscribed.wait(), 5)
        ack = await alice.send(m, "while bob connects")
        await alice.send_raw({"t": "typing", "m": m, "on": True})
        await rdv.connect("carol")  # bob's other match comes online: a presence event
        await asyncio.sleep(0.2)  # let them all reach bob's session
        release.set()
        if auth == "header":
            ws = await opening
        frames = await frames_until(ws, subprotocol, {"welcome", "msg", "typing", "presence"})
        await ws.close()
    finally:
        release.set()
        if not opening.done():
            opening.cancel()
    assert frames[0]["t"] == "welcome", [f["t"] for f in frames]
    assert [f["t"] for f in frames].count("welcome") == 1
    msg = next(f for f in frames if f["t"] == "msg")
    assert msg["body"] == "while bob connects"
    assert str(msg["id"]) == str(ack["id"])


async def test_many_connects_with_events_flying_all_start_with_welcome(
        rdv: Harness, subprotocol: str) -> None:
    """Users reconnecting at once while their matches chat to them: every connection's first
    frame is its welcome."""
    users = [f"u{i}" for i in range(8)]
    matches = {u: await rdv.pair("hub-user", u) for u in users}
    sender = await rdv.connect("hub-user")

    async def chatter() -> None:
        while True:
            for u, m in matches.items():
                await sender.send_raw({"t": "typing", "m": m, "on": True})
                await sender.send(m, f"to {u}")

    chatting = asyncio.create_task(chatter())
    try:
        for _ in range(3):
            sockets = await asyncio.gather(*(raw_connect(rdv, u, subprotocol) for u in users))
            codec = codec_for(subprotocol)
            firsts = [codec.decode(await asyncio.wait_for(ws.recv(), 5)) for ws in sockets]
            assert [f["t"] for f in firsts] == ["welcome"] * len(users), firsts
            await asyncio.gather(*(ws.close() for ws in sockets))
    finally:
        chatting.cancel()
