"""Bad input over real sockets: the node answers every frame with its documented code, never
crashes, and never loses or leaks another user's data.

Covers undecodable and malformed frames, every field rule, oversized frames, a fuzz loop,
rate limits, slow readers and requests into someone else's match.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from client import RendezvousClient
from client.errors import ServerError
from protocol.codec import Frame, codec_for
from server.edge.gateway import MAX_STRIKES
from server.node import Node
from tests.conftest import Harness, NodeFactory

REPLY_TYPES = {"error", "pong", "ack", "history", "sync", "presence", "ok"}


async def next_error(client: RendezvousClient) -> Frame:
    return await client.next_event("error", timeout=5)


def leftovers(client: RendezvousClient) -> list[Frame]:
    """Buffered events other than presence (members come and go around a test)."""
    return [f for f in client.drain_events() if f["t"] != "presence"]


async def all_messages(client: RendezvousClient, m: str) -> list[Frame]:
    """Every message of `m`, newest first, paging through history."""
    out: list[Frame] = []
    before = None
    while True:
        page = await client.history(m, before=before, limit=100)
        out.extend(page["msgs"])
        if not page["more"]:
            return out
        before = page["msgs"][-1]["id"]


async def still_serves(rdv: Harness, user: str = "newcomer") -> None:
    """The node accepts a new connection and answers it."""
    fresh = await rdv.connect(user)
    assert (await fresh.ping())["t"] == "pong"


# -- undecodable and malformed frames ---------------------------------------------------------

# (frame as sent, code, r expected in the error); bytes/str are sent as they are.
MSGPACK_BAD: list[tuple[Any, str, int | None]] = [
    (b"\xc1", "bad_frame", None),  # a byte msgpack never uses
    (b"\x81\xa1t", "bad_frame", None),  # truncated
    (msgpack.packb({"t": "ping"}) + b"\x00", "bad_frame", None),  # trailing data
    (msgpack.packb({1: "ping"}), "bad_frame", None),  # a non-string key
    (msgpack.packb(msgpack.ExtType(5, b"xx")), "bad_frame", None),
    (msgpack.packb([1, 2, 3]), "bad_frame", None),
    (msgpack.packb("ping"), "bad_frame", None),
    (b"", "bad_frame", None),
    ('{"t": "ping", "r": 1}', "bad_frame", None),  # a text frame in msgpack mode
    (msgpack.packb({"r": 5}), "bad_request", 5),
    (msgpack.packb({"t": 7, "r": 6}), "bad_request", 6),
    (msgpack.packb({"t": None, "r": 8}), "bad_request", 8),
    (msgpack.packb({"t": b"ping", "r": 9}), "bad_request", 9),
    (msgpack.packb({"t": "teleport", "r": 10}), "unknown_type", 10),
    (msgpack.packb({"t": "teleport"}), "unknown_type", None),
    (msgpack.packb({"t": "ping", "r": -1}), "bad_request", None),
    (msgpack.packb({"t": "ping", "r": "1"}), "bad_request", None),
]
JSON_BAD: list[tuple[Any, str, int | None]] = [
    ("{not json", "bad_frame", None),
    ("", "bad_frame", None),
    ("[1, 2, 3]", "bad_frame", None),
    ('"ping"', "bad_frame", None),
    ("null", "bad_frame", None),
    ("[" * 100_00 + "]" * 100_00, "bad_frame", None),  # nesting deeper than the parser takes
    (b'{"t": "ping", "r": 1}', "bad_frame", None),  # a binary frame in JSON mode
    ('{"r": 5}', "bad_request", 5),
    ('{"t": 7, "r": 6}', "bad_request", 6),
    ('{"t": ["ping"], "r": 7}', "bad_request", 7),
    ('{"t": "teleport", "r": 10}', "unknown_type", 10),
    ('{"t": "ping", "r": 1.5}', "bad_request", None),
    ('{"t": "ping", "r": true}', "bad_request", None),
]


@pytest.mark.parametrize("subprotocol", ["rdv.v1.msgpack", "rdv.v1.json"])
async def test_malformed_frames_get_their_code_and_the_connection_survives(
        rdv: Harness, subprotocol: str) -> None:
    client = await rdv.connect("alice", subprotocol=subprotocol)
    cases = MSGPACK_BAD if subprotocol == "rdv.v1.msgpack" else JSON_BAD
    for raw, code, r in cases:
        await client.send_raw(raw)
        error = await next_error(client)
        assert error["code"] == code, (raw[:40], error)
        assert error.get("r") == r, (raw[:40], error)
        assert isinstance(error["msg"], str) and error["msg"]
        assert (await client.ping())["t"] == "pong", raw[:40]
    assert leftovers(client) == []
    await still_serves(rdv)


# -- field rules ------------------------------------------------------------------------------

def field_cases(m: str) -> list[tuple[Frame, str]]:
    """(frame, code) for frames that break one rule each; `m` is a real match of the sender,
    so a rule that were not checked would show up as a success, not as `forbidden`."""
    return [
        ({"t": "send", "r": 1, "c": "c1", "body": "hi"}, "bad_request"),  # missing m
        ({"t": "send", "r": 1, "m": "", "c": "c1", "body": "hi"}, "bad_request"),
        ({"t": "send", "r": 1, "m": 5, "c": "c1", "body": "hi"}, "bad_request"),
        ({"t": "send", "r": 1, "m": "m" * 65, "c": "c1", "body": "hi"}, "bad_request"),
        ({"t": "send", "m": m, "c": "c1", "body": "hi"}, "bad_request"),  # missing r
        ({"t": "send", "r": 1, "m": m, "body": "hi"}, "bad_request"),  # missing c
        ({"t": "send", "r": 1, "m": m, "c": "c" * 65, "body": "hi"}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": 17, "body": "hi"}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1"}, "bad_request"),  # neither body nor media
        ({"t": "send", "r": 1, "m": m, "c": "c1", "body": "hi",
          "media": {"kind": "image", "url": "https://cdn.example/a.jpg"}}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1", "body": ""}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1", "body": "   "}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1", "body": 42}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1", "body": "x" * 4001}, "too_large"),
        ({"t": "send", "r": 1, "m": m, "c": "c1",
          "media": {"kind": "video", "url": "https://cdn.example/a.mp4"}}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1", "media": {"url": "https://cdn/a"}},
         "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1",
          "media": {"kind": "image", "url": "javascript:alert(1)"}}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1",
          "media": {"kind": "image", "url": "https://cdn/a", "w": -3}}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1",
          "media": {"kind": "voice", "url": "https://cdn/a", "dur": "long"}}, "bad_request"),
        ({"t": "send", "r": 1, "m": m, "c": "c1", "media": "https://cdn/a.jpg"},
         "bad_request"),
        ({"t": "typing", "r": 2, "on": True}, "bad_request"),  # missing m
        ({"t": "typing", "r": 2, "m": m}, "bad_request"),  # missing on
        ({"t": "typing", "r": 2, "m": m, "on": "yes"}, "bad_request"),
        ({"t": "typing", "m": m, "on": 1}, "bad_request"),  # no r: the error has none
        ({"t": "read", "r": 3, "id": 1}, "bad_request"),  # missing m
        ({"t": "read", "r": 3, "m": m}, "bad_request"),  # missing id
        ({"t": "read", "r": 3, "m": m, "id": -1}, "bad_request"),
        ({"t": "read", "r": 3, "m": m, "id": "-1"}, "bad_request"),
        ({"t": "read", "r": 3, "m": m, "id": 1.5}, "bad_request"),
        ({"t": "read", "r": 3, "m": m, "id": 2**63}, "bad_request"),
        ({"t": "read", "m": m, "id": -5}, "bad_request"),
        ({"t": "delivered", "r": 4, "id": 1}, "bad_request"),
        ({"t": "delivered", "r": 4, "m": m, "id": -1}, "bad_request"),
        ({"t": "delivered", "r": 4, "m": m, "id": "abc"}, "bad_request"),
        ({"t": "delivered", "r": 4, "m": m, "id": True}, "bad_request"),
        ({"t": "history", "m": m}, "bad_request"),  # missing r
        ({"t": "history", "r": 5}, "bad_request"),  # missing m
        ({"t": "history", "r": 5, "m": m, "limit": 0}, "bad_request"),
        ({"t": "history", "r": 5, "m": m, "limit": 101}, "bad_request"),
        ({"t": "history", "r": 5, "m": m, "limit": -1}, "bad_request"),
        ({"t": "history", "r": 5, "m": m, "limit": "10"}, "bad_request"),
        ({"t": "history", "r": 5, "m": m, "limit": True}, "bad_request"),
        ({"t": "history", "r": 5, "m": m, "before": -1}, "bad_request"),
        ({"t": "history", "r": 5, "m": m, "before": "yesterday"}, "bad_request"),
        ({"t": "sync"}, "bad_request"),  # missing r
        ({"t": "sync", "r": 6, "since": 12}, "bad_request"),
        ({"t": "sync", "r": 6, "since": "not-a-cursor"}, "bad_request"),
        ({"t": "sync", "r": 6, "since": "v2.10"}, "bad_request"),
        ({"t": "sync", "r": 6, "since": "v1.zz"}, "bad_request"),
        ({"t": "sync", "r": 6, "since": "v1.-1"}, "bad_request"),
        ({"t": "sync", "r": 6, "since": "v1.-" + "f" * 40}, "bad_request"),
        ({"t": "sync", "r": 6, "since": "v1." + "f" * 40}, "bad_request"),
        ({"t": "sync", "r": 6, "since": "x" * 513}, "bad_request"),
        ({"t": "presence"}, "bad_request"),  # missing r
        ({"t": "refresh", "token": "a.b.c"}, "bad_request"),  # missing r
        ({"t": "refresh", "r": 7}, "bad_request"),
        ({"t": "refresh", "r": 7, "token": ["a.b.c"]}, "bad_request"),
        ({"t": "refresh", "r": 7, "token": "t" * 9000}, "bad_request"),
    ]


async def test_field_rules(rdv: Harness, subprotocol: str) -> None:
    m = await rdv.pair("alice", "bob")
    client = await rdv.connect("alice", subprotocol=subprotocol)
    bob = await rdv.connect("bob")
    for frame, code in field_cases(m):
        await client.send_raw(frame)
        error = await next_error(client)
        assert error["code"] == code, (frame, error)
        assert error.get("r") == frame.get("r"), (frame, error)
    assert leftovers(client) == []
    assert (await client.history(m))["msgs"] == []  # nothing got through
    assert await bob.no_event({"msg", "typing", "read", "delivered"}, within=0.2)
    # the limits themselves are allowed
    ack = await client.send(m, "x" * 4000, c="c" * 64)
    assert (await client.history(m, limit=100))["msgs"][0]["id"] == ack["id"]
    assert (await client.history(m, limit=1))["more"] is False


# -- oversized frames -------------------------------------------------------------------------

async def chat_rounds(a: RendezvousClient, b: RendezvousClient, m: str, rounds: int,
                      tag: str) -> list[int]:
    """`a` and `b` take turns sending; each sees the other's message. The acked ids."""
    ids = []
    for i in range(rounds):
        for sender, receiver in ((a, b), (b, a)):
            body = f"{tag}-{i}-{sender.user}"
            ack = await sender.send(m, body)
            ids.append(ack["id"])
            got = await receiver.next_event("msg", predicate=lambda f, b=body: f["body"] == b)
            assert got["id"] == ack["id"]
    return ids


async def test_oversized_frame_closes_only_that_connection(rdv: Harness,
                                                           subprotocol: str) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob", subprotocol="rdv.v1.json")
    max_bytes = rdv.node.config.limits.max_frame_bytes
    chatting = asyncio.create_task(chat_rounds(alice, bob, m, 15, "during"))
    for i in range(3):
        carol = await rdv.connect(f"carol{i}", subprotocol=subprotocol)
        huge: bytes | str = (b"\x80" * (max_bytes + 1) if subprotocol == "rdv.v1.msgpack"
                             else '{"t":"ping","pad":"' + "x" * max_bytes + '"}')
        await carol.send_raw(huge)
        assert await carol.wait_closed() == 1009
    ids = await chatting
    ids += await chat_rounds(alice, bob, m, 3, "after")
    stored = await all_messages(alice, m)
    assert sorted(x["id"] for x in stored) == sorted(ids)
    # exactly at the limit is still accepted
    dana = await rdv.connect("dana", subprotocol=subprotocol)
    if subprotocol == "rdv.v1.msgpack":
        packed = msgpack.packb({"t": "ping", "r": 1, "pad": ""})
        pad = max_bytes - len(packed) - 2  # str 16 header: 3 bytes instead of 1
        edge: bytes | str = msgpack.packb({"t": "ping", "r": 1, "pad": "x" * pad})
    else:
        edge = '{"t":"ping","r":1,"pad":"' + "x" * (max_bytes - 27) + '"}'
    assert len(edge if isinstance(edge, bytes) else edge.encode()) == max_bytes
    await dana.send_raw(edge)
    assert (await dana.next_event("pong"))["r"] == 1
    await still_serves(rdv)


# -- fuzz -------------------------------------------------------------------------------------

FIELDS = ["t", "r", "m", "c", "body", "media", "on", "id", "before", "limit", "since",
          "token", "kind", "url", "w", "h", "dur"]
TYPES = ["auth", "send", "typing", "read", "delivered", "history", "sync", "presence",
         "refresh", "ping", "", "pong", "msg", "welcome", "SEND", "t"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(12 if depth < 2 else 9)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.randint(-(2**63), 2**64 - 1)
    if choice == 3:
        return rng.choice([-1, 0, 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 100, 101])
    if choice == 4:
        return rng.choice([float("nan"), float("inf"), -0.0, 1e308, 3.5])
    if choice == 5:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0xD7FF),
                                       rng.randrange(0xE000, 0x10FFFF)]))
                       for _ in range(rng.randrange(0, 20)))
    if choice == 6:
        return rng.choice(["", " ", "m_1", "v1.10", "v1.-1", "https://cdn/x.jpg", "image",
                           "x" * 4001, "9" * 20, "a.b.c"])
    if choice == 7:
        return rng.randbytes(rng.randrange(0, 16))
    if choice == 8:
        return rng.choice(TYPES)
    if choice == 9:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return random_map(rng, depth + 1)


def random_map(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if depth == 0 and rng.random() < 0.85:
        out["t"] = rng.choice(TYPES)
    for _ in range(rng.randrange(0, 7)):
        key = rng.choice(FIELDS) if rng.random() < 0.8 else str(rng.randrange(1000))
        out[key] = random_value(rng, depth)
    if rng.random() < 0.5:
        out["r"] = rng.randrange(0, 1000)
    return out


# Well-formed requests (into a match the fuzzer is not in) to mutate, so that many frames
# get past validation into the handlers.
TEMPLATES: list[Frame] = [
    {"t": "send", "r": 1, "m": "m-fuzz", "c": "c1", "body": "hi"},
    {"t": "send", "r": 1, "m": "m-fuzz", "c": "c1",
     "media": {"kind": "image", "url": "https://cdn/x.jpg", "w": 10, "h": 10}},
    {"t": "typing", "m": "m-fuzz", "on": True},
    {"t": "read", "r": 1, "m": "m-fuzz", "id": 5},
    {"t": "delivered", "m": "m-fuzz", "id": "5"},
    {"t": "history", "r": 1, "m": "m-fuzz", "limit": 10, "before": 2**40},
    {"t": "sync", "r": 1, "since": "v1.0"},
    {"t": "presence", "r": 1},
    {"t": "refresh", "r": 1, "token": "a.b.c"},
    {"t": "ping", "r": 1},
]


def mutated_request(rng: random.Random) -> Frame:
    frame = dict(rng.choice(TEMPLATES))
    frame["r"] = rng.randrange(1000)
    for _ in range(rng.randrange(3)):
        key = rng.choice([*frame, *FIELDS])
        if rng.random() < 0.2:
            frame.pop(key, None)
        else:
            frame[key] = random_value(rng)
    return frame


async def test_fuzz_every_frame_gets_exactly_one_answer(
        node_factory: NodeFactory, harness_for: Callable[[Node], Harness]) -> None:
    rdv = harness_for(await node_factory(frames_per_s=1e6, frame_burst=10**6))
    m = await rdv.pair("alice", "bob")
    bob = await rdv.connect("bob")
    before = await bob.send(m, "kept")
    fuzzer = await rdv.connect("fuzzer")
    rng = random.Random(20240611)
    frames: list[bytes | str] = []
    for _ in range(300):
        frames.append(rng.randbytes(rng.randrange(0, 64)))
        frame = random_map(rng) if rng.random() < 0.5 else mutated_request(rng)
        frames.append(msgpack.packb(frame, use_bin_type=rng.random() < 0.5))
    for _ in range(20):  # and some text frames, wrong for this subprotocol
        frames.append("".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(40))))
    for data in frames:
        await fuzzer.send_raw(data)
    answers = [await fuzzer.next_event(timeout=10) for _ in frames]
    assert await fuzzer.no_event(within=0.5)
    kinds = {a["t"] for a in answers}
    assert kinds <= REPLY_TYPES, kinds
    assert sum(a["t"] == "error" for a in answers) > len(frames) // 2
    assert all(a["code"] != "internal" for a in answers if a["t"] == "error"), [
        a for a in answers if a.get("code") == "internal"]
    assert (await fuzzer.ping())["t"] == "pong"
    # the node still serves, and bob's data is untouched
    assert [x["id"] for x in (await bob.history(m))["msgs"]] == [before["id"]]
    assert (await bob.send(m, "after"))["id"] > before["id"]
    await still_serves(rdv)


# -- rate limits ------------------------------------------------------------------------------

async def test_frame_rate_limit_answers_rate_limited_then_closes_4008(
        node_factory: NodeFactory, harness_for: Callable[[Node], Harness],
        subprotocol: str) -> None:
    rdv = harness_for(await node_factory(frames_per_s=5, frame_burst=5))
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice", subprotocol=subprotocol)
    for r in range(1, 11):
        await alice.send_raw({"t": "history", "r": r, "m": m})
    replies = {}
    for _ in range(10):
        frame = await alice.next_event({"history", "error"})
        replies[frame["r"]] = frame
    assert sorted(replies) == list(range(1, 11))
    assert all(replies[r]["t"] == "history" for r in range(1, 6))
    limited = [f for f in replies.values() if f["t"] == "error"]
    assert len(limited) >= 3
    for frame in limited:
        assert frame["code"] == "rate_limited"
        assert 0 < frame["retry_ms"] <= 1000
    # ping counts too (tests/server/test_frame_limits.py); once the bucket refills, it is
    # answered again
    await asyncio.sleep(0.5)
    assert (await alice.ping())["t"] == "pong"
    # a sustained flood closes the connection with 4008
    for r in range(100, 100 + MAX_STRIKES + 10):
        try:
            await alice.send_raw({"t": "history", "r": r, "m": m})
        except ConnectionError:
            break
    assert await alice.wait_closed() == 4008
    errors = [f for f in alice.drain_events() if f["t"] == "error"]
    assert errors and all(f["code"] == "rate_limited" for f in errors)
    # only that connection: alice's new one and the node work
    again = await rdv.connect("alice", subprotocol=subprotocol)
    assert (await again.history(m))["msgs"] == []


async def test_send_rate_limit_is_per_user_and_stores_nothing_refused(
        node_factory: NodeFactory, harness_for: Callable[[Node], Harness]) -> None:
    rdv = harness_for(await node_factory(sends_per_s=0.5, send_burst=3))
    m = await rdv.pair("alice", "bob")
    phone = await rdv.connect("alice")
    laptop = await rdv.connect("alice", subprotocol="rdv.v1.json")
    sends = [device.send(m, f"n{i}", c=f"c{i}-{j}")
             for i in range(3) for j, device in enumerate((phone, laptop))]
    results = await asyncio.gather(*sends, return_exceptions=True)
    acks = [x for x in results if isinstance(x, dict)]
    refused = [x for x in results if isinstance(x, ServerError)]
    assert len(acks) == 3 and len(refused) == 3, results
    for error in refused:
        assert error.code == "rate_limited"
        assert error.retry_ms is not None and 0 < error.retry_ms <= 2000
    stored = await all_messages(phone, m)
    assert sorted(x["id"] for x in stored) == sorted(a["id"] for a in acks)
    assert {x["c"] for x in stored} == {a["c"] for a in acks}
    # bob has his own bucket
    bob = await rdv.connect("bob")
    assert (await bob.send(m, "hi"))["t"] == "ack"


# -- slow consumers ---------------------------------------------------------------------------

async def open_stalled(rdv: Harness, user: str) -> ClientConnection:
    """A connection that reads its welcome and then nothing: a tiny receive buffer and a
    one-frame client queue, so the server's writes back up quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", rdv.node.ws_port))
    ws = await connect(rdv.ws_url, sock=sock, max_queue=1, compression=None,
                       additional_headers={"Authorization": f"Bearer {rdv.token(user)}"},
                       subprotocols=[Subprotocol("rdv.v1.msgpack")])
    welcome = codec_for("rdv.v1.msgpack").decode(await ws.recv())
    assert welcome["t"] == "welcome"
    return ws


def is_slow_closed(node: Node, user: str) -> bool:
    return all(s.closing for s in node.hub.sessions() if s.user == user)


async def test_slow_reader_is_closed_4009_and_nothing_is_lost(
        node_factory: NodeFactory, harness_for: Callable[[Node], Harness]) -> None:
    node = await node_factory(send_queue_frames=8, inflight_per_connection=4,
                              sends_per_s=1e6, send_burst=10**6,
                              frames_per_s=1e6, frame_burst=10**6,
                              close_timeout_s=30)  # alice reads again before it drops her
    rdv = harness_for(node)
    m = await rdv.pair("alice", "bob")
    stalled = await open_stalled(rdv, "alice")
    try:
        await slow_reader_scenario(rdv, node, m, stalled)
    finally:
        stalled.transport.abort()


async def slow_reader_scenario(rdv: Harness, node: Node, m: str,
                               stalled: ClientConnection) -> None:
    bob = await rdv.connect("bob")
    body = "z" * 4000
    acks: list[Frame] = []
    deadline = time.monotonic() + 15
    while not is_slow_closed(node, "alice"):
        assert time.monotonic() < deadline, f"alice never closed after {len(acks)} messages"
        # a few at a time: bob's own acks count against his queue of 8 too
        acks.extend(await asyncio.gather(*(bob.send(m, body) for _ in range(4))))
    for _ in range(5):
        acks.extend(await asyncio.gather(*(bob.send(m, body) for _ in range(4))))
    assert (await bob.ping())["t"] == "pong" and not bob.closed
    # alice starts reading again: whatever was queued, then 4009
    received = 0
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(stalled.recv(), 10)
            received += 1
    assert stalled.close_code == 4009
    assert received < len(acks)
    # every acked message is stored, once, and a reconnecting alice gets them all by sync
    stored = await all_messages(bob, m)
    assert sorted(x["id"] for x in stored) == sorted(a["id"] for a in acks)
    alice = await rdv.connect("alice")
    synced: list[Frame] = []
    cursor = None
    while True:
        page = await alice.sync(cursor)
        synced.extend(page["msgs"])
        cursor = page["cursor"]
        if not page["more"]:
            break
    assert sorted(x["id"] for x in synced) == sorted(a["id"] for a in acks)


# -- someone else's match ---------------------------------------------------------------------

async def test_non_member_is_forbidden_and_members_see_nothing(rdv: Harness,
                                                               subprotocol: str) -> None:
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    bob = await rdv.connect("bob")
    first = await alice.send(m, "private")
    await bob.next_event("msg")
    carol = await rdv.connect("carol", subprotocol=subprotocol)
    for match_id in (m, "m-made-up-0000", m + "x"):
        for frame in ({"t": "send", "r": 1, "m": match_id, "c": "c1", "body": "let me in"},
                      {"t": "send", "r": 2, "m": match_id, "c": "c2",
                       "media": {"kind": "gif", "url": "https://cdn/x.gif"}},
                      {"t": "history", "r": 3, "m": match_id},
                      {"t": "history", "r": 4, "m": match_id, "before": first["id"] + 1},
                      {"t": "typing", "m": match_id, "on": True},
                      {"t": "typing", "r": 5, "m": match_id, "on": False},
                      {"t": "read", "m": match_id, "id": first["id"]},
                      {"t": "read", "r": 6, "m": match_id, "id": first["id"]},
                      {"t": "delivered", "r": 7, "m": match_id, "id": first["id"]},
                      {"t": "delivered", "m": match_id, "id": first["id"]}):
            await carol.send_raw(frame)
            error = await next_error(carol)
            assert error["code"] == "forbidden", (frame, error)
            assert error.get("r") == frame.get("r")
            assert "private" not in str(error)
    assert leftovers(carol) == []
    for member in (alice, bob):
        assert await member.no_event({"msg", "typing", "read", "delivered"}, within=0.3)
    assert [x["id"] for x in (await bob.history(m))["msgs"]] == [first["id"]]
    sync = await carol.sync()
    assert sync["msgs"] == [] and sync["convs"] == []
    assert (await carol.presence())["users"] == []
