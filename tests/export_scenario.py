"""One user's data made through a real node's API, and what her export must hold then: the
same scenario on every store (tests/server/test_export.py on SQLite, tests/cluster/
test_export_stores.py on Cassandra with Redis).

alice has settings, two push tokens, three swipes, an open match with bob (messages both
ways, one of hers a tombstone) and a closed one with dana (messages both ways). Around her:
erin liked her (a like received is erin's data, not hers) and erin and bob have a match of
their own, with messages alice must never see.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from client import RendezvousClient, RendezvousHttp

Http = Callable[[str], RendezvousHttp]
Connect = Callable[[str], Awaitable[RendezvousClient]]
Tombstone = Callable[[str, int], Awaitable[None]]  # (match id, message id): clear its body
TOP_KEYS = {"user", "exported_at", "settings", "devices", "swipes", "matches", "mutes",
            "blocks", "messages"}


@dataclass
class Scenario:
    ab: str = ""  # alice and bob, open
    ad: str = ""  # alice and dana, closed by alice
    be: str = ""  # bob and erin: not alice's
    settings: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token: platform
    # per match, oldest first: (id, sender, body or None for the tombstone)
    messages: dict[str, list[tuple[int, str, str | None]]] = field(default_factory=dict)
    secret: str = ""  # a body of bob and erin's match
    read_id: int = 0  # alice's read cursor in ab
    delivered_id: int = 0  # and her delivered one
    started_ms: int = 0


async def make_scenario(http: Http, connect: Connect, tombstone: Tombstone) -> Scenario:
    s = Scenario(started_ms=int(time.time() * 1000), secret=f"for erin {secrets.token_hex(4)}")
    alice = http("alice")
    s.settings = await alice.put_settings(show_online=False, push_previews=True)
    s.tokens = {f"apns-{secrets.token_hex(32)}": "apns", f"fcm-{secrets.token_hex(40)}": "fcm"}
    for token, platform in s.tokens.items():
        await alice.put_device(token, platform, app="dating", locale="fr-FR")
    assert (await alice.swipe("carl", "pass"))["match"] is None
    await alice.swipe("bob", "like")
    await alice.swipe("dana", "superlike")
    await http("erin").swipe("alice", "like")
    s.ab = (await http("bob").swipe("alice", "like"))["match"]["id"]
    await asyncio.sleep(0.005)  # matches are listed newest first: each its own ms
    s.ad = (await http("dana").swipe("alice", "like"))["match"]["id"]
    await asyncio.sleep(0.005)
    await http("bob").swipe("erin", "like")
    s.be = (await http("erin").swipe("bob", "like"))["match"]["id"]
    ws = {user: await connect(user) for user in ("alice", "bob", "dana", "erin")}

    async def say(user: str, match_id: str, body: str) -> int:
        ack = await ws[user].send(match_id, body)
        s.messages.setdefault(match_id, []).append((ack["id"], user, body))
        return int(ack["id"])

    await say("alice", s.ab, "hi bob")
    s.read_id = await say("bob", s.ab, "hi alice")
    unsent = await say("alice", s.ab, "sorry, wrong chat")
    s.delivered_id = await say("bob", s.ab, "ok")
    await ws["alice"].read(s.ab, s.read_id, ack=True)
    await ws["alice"].delivered(s.ab, s.delivered_id, ack=True)
    await say("dana", s.ad, "hello alice")
    bye = await say("alice", s.ad, "bye dana")
    await ws["dana"].read(s.ad, bye, ack=True)  # dana's cursor: not alice's data
    await ws["bob"].send(s.be, s.secret)
    await ws["erin"].send(s.be, "hi bob")
    await tombstone(s.ab, unsent)
    s.messages[s.ab] = [(i, u, None if i == unsent else b) for i, u, b in s.messages[s.ab]]
    await alice.unmatch(s.ad)
    await alice.mute(s.ab)
    await alice.block("fred")  # hers; the block frank made against her is not
    await http("frank").block("alice")
    return s


async def check_export(raw: bytes, s: Scenario, alice: RendezvousHttp) -> dict[str, Any]:
    """Everything of alice's is in the document `raw`, exactly, and nothing else."""
    doc = json.loads(raw)
    assert set(doc) == TOP_KEYS
    assert doc["user"] == "alice"
    assert s.started_ms <= doc["exported_at"] <= time.time() * 1000 + 1
    assert doc["settings"] == s.settings == (await alice.raw("GET", "/v1/me/settings")).json()

    assert [d["token_sha256"] for d in doc["devices"]] == [
        hashlib.sha256(t.encode()).hexdigest() for t in sorted(s.tokens)]
    for device, token in zip(doc["devices"], sorted(s.tokens), strict=True):
        assert set(device) == {"platform", "app", "locale", "token_sha256", "ts"}
        assert (device["platform"], device["app"], device["locale"]) == (
            s.tokens[token], "dating", "fr-FR")
        assert token.encode() not in raw  # the tokens themselves never
        assert token.split("-")[1][:16].encode() not in raw

    assert [(w["target"], w["action"]) for w in doc["swipes"]] == [
        ("bob", "like"), ("carl", "pass"), ("dana", "superlike")]  # by target
    assert all(set(w) == {"target", "action", "ts"} and type(w["ts"]) is int
               for w in doc["swipes"])

    assert [(m["id"], m["peer"]) for m in doc["matches"]] == [(s.ad, "dana"), (s.ab, "bob")]
    ad, ab = doc["matches"]
    assert set(ad) == {"id", "peer", "ts", "closed"}  # alice has no cursor there; dana's
    assert set(ab) == {"id", "peer", "ts", "read_id", "delivered_id"}  # is not hers
    assert (ab["read_id"], ab["delivered_id"]) == (str(s.read_id), str(s.delivered_id))
    assert ad["closed"] >= ad["ts"] >= ab["ts"] >= s.started_ms

    assert doc["mutes"] == [{"match": s.ab, "until": None}]
    assert [b["user"] for b in doc["blocks"]] == ["fred"] and b"frank" not in raw

    msgs = doc["messages"]
    assert all(type(x["id"]) is str for x in msgs)  # ids as strings, as the HTTP API writes
    got = [(x["m"], int(x["id"]), x["from"], x.get("body")) for x in msgs]
    assert got == [(m, *row) for m in (s.ad, s.ab) for row in s.messages[m]]
    (dead,) = [x for x in msgs if x.get("deleted")]
    assert set(dead) == {"m", "id", "from", "ts", "deleted"} and dead["from"] == "alice"
    assert b"sorry, wrong chat" not in raw
    # the open match's part is what the history route shows, entry for entry
    history = (await alice.raw("GET", f"/v1/matches/{s.ab}/messages")).json()["msgs"]
    assert [x for x in msgs if x["m"] == s.ab] == history[::-1]

    assert s.be not in raw.decode() and s.secret.encode() not in raw
    assert b"erin" not in raw  # erin's like and erin's match are hers
    return dict(doc)
