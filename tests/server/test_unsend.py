"""Unsend on a real embedded node (SQLite): the sender's own message within the window
becomes a tombstone in history and sync, both members' devices get `unsent`, every bad
request answers its code and changes nothing, and a racing delivery never shows the body
after the `unsent`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from client import RendezvousClient, ServerError
from tests.conftest import Harness, NodeFactory
from tests.helpers import Apis


@pytest.fixture
async def short_window(node_factory: NodeFactory) -> AsyncIterator[Harness]:
    harness = Harness(await node_factory(unsend_window_s=0.3))
    yield harness
    await harness.close()


async def refused(call: object) -> str:
    with pytest.raises(ServerError) as error:
        await call  # type: ignore[misc]
    assert error.value.code is not None
    return error.value.code


def tombstone_of(entry: dict[str, object]) -> bool:
    return entry.get("deleted") is True and not {"body", "media", "c"} & set(entry)


async def test_unsend_tombstones_and_tells_every_device(rdv: Harness, http: Apis) -> None:
    m = await http.pair(rdv, "ann", "bob")
    ann, ann_tablet = await rdv.connect("ann"), await rdv.connect("ann")
    bob = await rdv.connect("bob", subprotocol="rdv.v1.json")
    kept = await ann.send(m, "keep this")
    gone = await ann.send(m, "oops, wrong chat")
    assert (await bob.next_event("msg", predicate=lambda f: f["id"] == gone["id"]))["body"]
    assert await ann.unsend(m, gone["id"]) == {"t": "ok", "r": 3}  # r of the third request
    for device in (bob, ann_tablet):
        assert await device.next_event("unsent") == {"t": "unsent", "m": m, "id": gone["id"]}
    assert await ann.no_event("unsent", within=0.2)  # the caller has its ok
    for reader in (ann, bob):
        msgs = (await reader.history(m))["msgs"]
        assert [x["id"] for x in msgs] == [gone["id"], kept["id"]]
        assert tombstone_of(msgs[0]) and msgs[1]["body"] == "keep this"
        assert msgs[0]["from"] == "ann" and msgs[0]["ts"] == gone["ts"]
    synced = (await bob.sync())["msgs"]
    assert [tombstone_of(x) for x in synced] == [False, True]
    over_http = (await http(rdv, "bob").messages(m))["msgs"]
    assert tombstone_of(over_http[0])
    # again: ok, and the devices are told again (one that missed it learns it)
    assert (await ann.unsend(m, gone["id"]))["t"] == "ok"
    assert (await bob.next_event("unsent"))["id"] == gone["id"]


async def test_unsend_of_media_clears_it(rdv: Harness, http: Apis) -> None:
    m = await http.pair(rdv, "ann", "bob")
    ann = await rdv.connect("ann")
    pic = await ann.send(m, media={"kind": "image", "url": "https://cdn.test/p.jpg"})
    await ann.unsend(m, pic["id"])
    assert tombstone_of((await ann.history(m))["msgs"][0])


async def test_bad_unsends_answer_their_code_and_change_nothing(
        rdv: Harness, http: Apis) -> None:
    m = await http.pair(rdv, "ann", "bob")
    other = await http.pair(rdv, "cat", "dan")
    ann, bob = await rdv.connect("ann"), await rdv.connect("bob")
    cat = await rdv.connect("cat")
    mine = await ann.send(m, "ann's words")
    assert await refused(bob.unsend(m, mine["id"])) == "forbidden"  # someone else's
    assert await refused(cat.unsend(m, mine["id"])) == "forbidden"  # not a member
    assert await refused(cat.unsend(other, mine["id"])) == "not_found"  # not in that match
    assert await refused(ann.unsend(m, mine["id"] + 1)) == "not_found"  # no such id
    assert await refused(ann.unsend("m" + "0" * 24, mine["id"])) == "forbidden"
    for bad in ({"m": m}, {"m": m, "id": -1}, {"m": m, "id": "x"}, {"id": mine["id"]}):
        assert await refused(ann.request({"t": "unsend", **bad})) == "bad_request"
    await ann.send_raw({"t": "unsend", "m": m, "id": mine["id"]})  # no r: bad_request
    assert (await ann.next_event("error"))["code"] == "bad_request"
    assert (await bob.history(m))["msgs"][0]["body"] == "ann's words"
    assert await bob.no_event("unsent", within=0.2)


async def test_past_the_window_unsend_is_forbidden(short_window: Harness, http: Apis) -> None:
    rdv = short_window
    m = await http.pair(rdv, "ann", "bob")
    ann = await rdv.connect("ann")
    late = await ann.send(m, "said and meant")
    await asyncio.sleep(0.4)
    with pytest.raises(ServerError) as error:
        await ann.unsend(m, late["id"])
    assert error.value.code == "forbidden" and "window" in (error.value.msg or "")
    assert (await ann.history(m))["msgs"][0]["body"] == "said and meant"


async def check_race(sender: RendezvousClient, peer: RendezvousClient, m: str,
                     rounds: int) -> None:
    """Send and unsend at once, `rounds` times; the peer sees no body after its `unsent`,
    and history holds only tombstones."""
    acks = await asyncio.gather(*(sender.send(m, f"racing {i}") for i in range(rounds)))
    await asyncio.gather(*(sender.unsend(m, a["id"]) for a in acks))
    ids = {a["id"] for a in acks}
    unsent: set[int] = set()
    while unsent != ids:
        frame = await peer.next_event({"msg", "unsent"}, timeout=5)
        if frame["t"] == "unsent":
            unsent.add(frame["id"])
        else:
            assert frame["id"] not in unsent, "a body arrived after its unsent"
    assert await peer.no_event("msg", within=0.3)
    history = (await peer.history(m, limit=100))["msgs"]
    assert {x["id"] for x in history} == ids and all(tombstone_of(x) for x in history)


async def test_unsend_racing_delivery_never_shows_the_body_after_unsent(
        rdv: Harness, http: Apis) -> None:
    m = await http.pair(rdv, "ann", "bob")
    ann, bob = await rdv.connect("ann"), await rdv.connect("bob")
    await check_race(ann, bob, m, 40)
