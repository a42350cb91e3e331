"""The per-connection frame limit counts every frame after auth, `refresh` has a limit of its
own, and every frame carrying `r` gets exactly one answer, limited or not (docs/protocol.md,
"Rate limits"), over real sockets in both subprotocols.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable

import jwt
import pytest

from client import RendezvousClient
from client.errors import ClientClosed
from protocol.codec import Frame
from server.config import JwtKey
from server.edge.gateway import MAX_STRIKES
from tests.conftest import SECRET, Harness, NodeFactory
from tests.server.test_auth import KEY_MAKERS, claims, pem_private, pem_public

BURST = 6


def undecodable(subprotocol: str) -> bytes | str:
    return b"\xc1" if subprotocol == "rdv.v1.msgpack" else "{nope"


# kind -> (a frame of that kind, the `t` and code of its normal answer)
KINDS: dict[str, tuple[Callable[[str], Frame | bytes | str], tuple[str, str | None]]] = {
    "ping": (lambda sp: {"t": "ping", "r": 1}, ("pong", None)),
    "ping-without-r": (lambda sp: {"t": "ping"}, ("pong", None)),
    "unknown-type": (lambda sp: {"t": "teleport", "r": 1}, ("error", "unknown_type")),
    "bad-request": (lambda sp: {"t": "history", "r": 1}, ("error", "bad_request")),
    "undecodable": (undecodable, ("error", "bad_frame")),
    "second-auth": (lambda sp: {"t": "auth", "r": 1, "token": "x"}, ("error", "bad_request")),
}


def is_answer(frame: Frame) -> bool:
    """Not an event (a peer's presence may come in around a test's start)."""
    return frame["t"] != "presence" or "r" in frame


async def collect(client: RendezvousClient, count: int, timeout: float = 10) -> list[Frame]:
    return [await client.next_event(timeout=timeout, predicate=is_answer)
            for _ in range(count)]


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_every_kind_of_frame_counts_against_the_frame_limit(
        node_factory: NodeFactory, harness_for: Callable[..., Harness], subprotocol: str,
        kind: str) -> None:
    """A burst of frames that were free before (ping, unknown `t`, bad requests, undecodable
    frames) uses the bucket up: the next frame is refused with `rate_limited`."""
    rdv = harness_for(await node_factory(frames_per_s=0.01, frame_burst=BURST))
    client = await rdv.connect("alice", subprotocol=subprotocol)
    make, (t, code) = KINDS[kind]
    for _ in range(BURST):
        await client.send_raw(make(subprotocol))
    for answer in await collect(client, BURST):
        assert answer["t"] == t and answer.get("code") == code, answer
    await client.send_raw({"t": "ping", "r": 99})
    refused = await client.next_event(timeout=5, predicate=is_answer)
    assert refused["t"] == "error" and refused["code"] == "rate_limited", refused
    assert refused["r"] == 99 and refused["retry_ms"] > 0
    # and a frame over the limit of that same kind is refused too
    await client.send_raw(make(subprotocol))
    again = await client.next_event(timeout=5, predicate=is_answer)
    assert again["t"] == "error" and again["code"] == "rate_limited", again
    assert await client.no_event(within=0.2, predicate=is_answer)


@pytest.mark.parametrize("kind", ["ping", "undecodable", "unknown-type"])
async def test_a_flood_of_free_frames_closes_4008(
        node_factory: NodeFactory, harness_for: Callable[..., Harness], subprotocol: str,
        kind: str) -> None:
    """The issue's socket ran 20-25k pings a second and stayed open: now it is closed."""
    rdv = harness_for(await node_factory(frames_per_s=5, frame_burst=BURST))
    client = await rdv.connect("alice", subprotocol=subprotocol)
    make = KINDS[kind][0]
    try:
        for _ in range(BURST + MAX_STRIKES + 20):
            await client.send_raw(make(subprotocol))
    except ClientClosed:
        pass
    assert await client.wait_closed(timeout=10) == 4008
    assert (await rdv.connect("alice", subprotocol=subprotocol)).user == "alice"


def answers_by_r(frames: list[Frame]) -> Counter[int]:
    return Counter(f["r"] for f in frames if "r" in f)


async def read_until_closed(client: RendezvousClient, timeout: float = 10) -> list[Frame]:
    out: list[Frame] = []
    try:
        while True:
            out.append(await client.next_event(timeout=timeout, predicate=is_answer))
    except ClientClosed:
        return out


async def test_pipelined_typing_with_r_is_answered_once_each(rdv: Harness,
                                                             subprotocol: str) -> None:
    """The issue's case: 220 typing frames with `r` got 201 ok and 19 nothing. Each gets
    `ok` or `rate_limited` now, exactly once (default limits: 200 frames of burst)."""
    m = await rdv.pair("alice", "bob")
    await rdv.connect("bob")
    alice = await rdv.connect("alice", subprotocol=subprotocol)
    total = 220
    for r in range(1, total + 1):
        await alice.send_raw({"t": "typing", "r": r, "m": m, "on": r % 2 == 0})
    answers = await collect(alice, total)
    assert answers_by_r(answers) == Counter(range(1, total + 1))
    kinds = Counter((a["t"], a.get("code")) for a in answers)
    assert set(kinds) <= {("ok", None), ("error", "rate_limited")}, kinds
    assert kinds[("error", "rate_limited")] >= total - rdv.node.config.frame_burst - 15
    assert await alice.no_event(within=0.3, predicate=is_answer)
    # a typing frame without r over the limit needs no answer, and gets none
    for _ in range(5):
        await alice.send_raw({"t": "typing", "m": m, "on": True})
    assert await alice.no_event(within=0.3, predicate=is_answer)


def mixed_request(r: int, m: str) -> Frame:
    frames: list[Frame] = [
        {"t": "typing", "r": r, "m": m, "on": True},
        {"t": "read", "r": r, "m": m, "id": 1},
        {"t": "delivered", "r": r, "m": m, "id": 1},
        {"t": "ping", "r": r},
        {"t": "history", "r": r, "m": m, "limit": 1},
        {"t": "presence", "r": r},
        {"t": "teleport", "r": r},
        {"t": "history", "r": r},  # bad_request
        {"t": "refresh", "r": r, "token": "not.a.jwt"},
        {"t": "auth", "r": r, "token": "x"},
    ]
    return frames[r % len(frames)]


async def test_every_frame_with_r_is_answered_once_up_to_the_4008_close(
        node_factory: NodeFactory, harness_for: Callable[..., Harness],
        subprotocol: str) -> None:
    """Past the limit, every frame with `r` still gets one answer, the one that closes the
    connection (strike MAX_STRIKES) included; the close follows the answers."""
    rdv = harness_for(await node_factory(frames_per_s=0.01, frame_burst=BURST))
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice", subprotocol=subprotocol)
    total = BURST + MAX_STRIKES
    for r in range(1, total + 1):
        await alice.send_raw(mixed_request(r, m))
    answers = await read_until_closed(alice)
    assert alice.close_code == 4008
    assert answers_by_r(answers) == Counter(range(1, total + 1)), answers
    limited = [a for a in answers if a.get("code") == "rate_limited"]
    assert len(limited) == MAX_STRIKES
    assert all(a["retry_ms"] > 0 for a in limited)


async def test_a_request_error_always_echoes_r(rdv: Harness, subprotocol: str) -> None:
    """Errors raised deep in a handler carry the request's `r` (else the client could not
    match them to the request)."""
    m = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice", subprotocol=subprotocol)
    for r, frame in enumerate(({"t": "typing", "m": "m-nobody", "on": True},
                               {"t": "read", "m": m, "id": 2**40},
                               {"t": "history", "m": "m-nobody"}), start=1):
        await alice.send_raw({**frame, "r": r})
    answers = await collect(alice, 3)
    assert sorted(a["r"] for a in answers) == [1, 2, 3], answers
    assert all(a["t"] == "error" for a in answers)


# -- refresh ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsa_pair() -> tuple[bytes, str]:
    key = KEY_MAKERS["RS256"]()
    return pem_private(key), pem_public(key)


async def test_a_refresh_flood_is_limited_and_does_not_slow_other_clients(
        node_factory: NodeFactory, harness_for: Callable[..., Harness], subprotocol: str,
        rsa_pair: tuple[bytes, str]) -> None:
    """An RS256 node: each refresh is an RSA verification. A connection pipelining refreshes
    gets `refresh_burst` of them verified, then `rate_limited` (with its `r`) for the rest,
    however fast the frames come; another client's pings stay quick meanwhile."""
    private, public = rsa_pair
    burst = 3
    rdv = harness_for(await node_factory(
        jwt_keys=(JwtKey("HS256", SECRET), JwtKey("RS256", public)),
        frames_per_s=1e6, frame_burst=10**6, refresh_burst=burst, refreshes_per_s=0.01))
    token = jwt.encode(claims("flooder", ttl_s=600), private, algorithm="RS256")
    flooder = await rdv.connect("flooder", token=token, subprotocol=subprotocol)
    other = await rdv.connect("other")
    total = 1500
    frames = [flooder.codec.encode({"t": "refresh", "r": r, "token": token})
              for r in range(1, total + 1)]

    async def flood() -> None:
        for data in frames:
            await flooder.send_raw(data)

    async def pings() -> list[float]:
        took = []
        for _ in range(30):
            started = time.perf_counter()
            await other.ping()
            took.append(time.perf_counter() - started)
        return took

    flooding = asyncio.create_task(flood())
    latencies = await pings()
    await flooding
    answers = await collect(flooder, total, timeout=20)
    assert answers_by_r(answers) == Counter(range(1, total + 1))
    oks = [a for a in answers if a["t"] == "ok"]
    assert len(oks) == burst, len(oks)
    assert all(a["t"] == "error" and a["code"] == "rate_limited" and a["retry_ms"] > 0
               for a in answers if a["t"] != "ok")
    assert statistics.median(latencies) < 0.05, latencies
    assert not flooder.closed  # refused refreshes are answered, not strikes
