"""The acceptance flow, by a client written only from docs/protocol.md.

No project code is used on the client side: raw `websockets`, `msgpack`, `json`, `httpx` and
PyJWT with the shared secret, as a mobile team would write it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import jwt
import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.conftest import SECRET, Harness


def token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")


class PlainClient:
    """A protocol client in thirty lines: frames in, frames out, events kept in order."""

    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self.r = 0

    @classmethod
    async def open(cls, url: str, user: str, proto: str) -> tuple[PlainClient, dict[str, Any]]:
        ws = await connect(url, subprotocols=[Subprotocol(proto)],
                           additional_headers={"Authorization": f"Bearer {token(user)}"})
        client = cls(ws, proto.endswith("msgpack"))
        return client, await client.recv()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(frame) if self.binary else json.dumps(frame))

    async def recv(self) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), 5)
        frame: dict[str, Any] = msgpack.unpackb(data) if self.binary else json.loads(data)
        return frame

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        self.r += 1
        await self.send({**frame, "r": self.r})
        while True:
            reply = await self.recv()
            if reply.get("r") == self.r:
                return reply

    async def expect(self, t: str) -> dict[str, Any]:
        while True:
            frame = await self.recv()
            if frame["t"] == t:
                return frame


async def test_acceptance_flow(rdv: Harness) -> None:
    url = rdv.ws_url
    alice, welcome = await PlainClient.open(url, "alice", "rdv.v1.msgpack")
    bob, _ = await PlainClient.open(url, "bob", "rdv.v1.json")
    assert welcome["t"] == "welcome" and welcome["user"] == "alice"
    async with httpx.AsyncClient(base_url=rdv.http_url) as http:
        def auth(user: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token(user)}"}

        first = await http.post("/v1/swipes", json={"target": "bob", "action": "like"},
                                headers=auth("alice"))
        assert first.status_code == 200 and first.json() == {"match": None}
        second = await http.post("/v1/swipes", json={"target": "alice", "action": "like"},
                                 headers=auth("bob"))
        match = second.json()["match"]
        assert match["peer"] == "alice"
        m = match["id"]
        assert (await alice.expect("match"))["peer"] == "bob"
        assert (await bob.expect("match"))["peer"] == "alice"

        # send, ack, msg
        ack = await alice.request({"t": "send", "m": m, "c": "hello-1", "body": "hi bob"})
        assert ack["t"] == "ack" and ack["c"] == "hello-1"
        msg = await bob.expect("msg")
        assert msg["body"] == "hi bob" and msg["id"] == str(ack["id"])  # JSON: id as string

        # presence: alice sees bob online (bob connected after alice)
        presence = await alice.request({"t": "presence"})
        assert presence["users"] == [{"u": "bob", "on": True}]

        # typing and read receipts
        await bob.send({"t": "typing", "m": m, "on": True})
        typing = await alice.expect("typing")
        assert typing["from"] == "bob" and typing["on"] is True
        await bob.send({"t": "read", "m": m, "id": msg["id"]})
        read = await alice.expect("read")
        assert read["id"] == ack["id"] and read["from"] == "bob"

        # history pages newest first
        for i in range(3):
            await alice.request({"t": "send", "m": m, "c": f"more-{i}", "body": f"#{i}"})
        page = await bob.request({"t": "history", "m": m, "limit": 2})
        assert [x["body"] for x in page["msgs"]] == ["#2", "#1"] and page["more"] is True
        older = await bob.request({"t": "history", "m": m, "before": page["msgs"][-1]["id"]})
        assert [x["body"] for x in older["msgs"]] == ["#0", "hi bob"] and not older["more"]

        # bob goes offline: alice sees it; messages sent meanwhile come back through sync
        cursor = (await bob.request({"t": "sync"}))["cursor"]
        await bob.ws.close()
        offline = await alice.expect("presence")
        assert offline["u"] == "bob" and offline["on"] is False
        missed = [(await alice.request({"t": "send", "m": m, "c": f"off-{i}",
                                        "body": f"while away {i}"}))["id"] for i in range(3)]
        bob, _ = await PlainClient.open(url, "bob", "rdv.v1.json")
        synced = await bob.request({"t": "sync", "since": cursor})
        assert [int(x["id"]) for x in synced["msgs"]] == missed
        assert synced["convs"][0]["unread"] == 6 and synced["more"] is False

        listed = (await http.get("/v1/matches", headers=auth("bob"))).json()
        assert listed["matches"][0]["id"] == m and listed["matches"][0]["unread"] == 6
    await alice.ws.close()
    await bob.ws.close()
