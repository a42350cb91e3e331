"""Opener rules on a real embedded node (SQLite, the in-process ledger): the daily limit,
duplicate openers, two devices racing, what a refused send leaves (nothing), and what the
rules cost a send (nothing when off; one store read per match and user when on)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from client import ServerError
from server.services.openers import normalise
from tests.conftest import Harness, NodeFactory
from tests.helpers import Apis

MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_rdv(node_factory: NodeFactory) -> AsyncIterator[MakeHarness]:
    made: list[Harness] = []

    async def make(**overrides: object) -> Harness:
        made.append(Harness(await node_factory(**overrides)))
        return made[-1]
    yield make
    for harness in made:
        await harness.close()


async def store_ops(rdv: Harness, http: Apis, op: str) -> float:
    text = (await http(rdv, None).raw("GET", "/metrics")).text
    line = f'rendezvous_store_op_seconds_count{{op="{op}"}} '
    return next((float(r.split()[-1]) for r in text.splitlines() if r.startswith(line)), 0.0)


async def code_of(call: Awaitable[object]) -> ServerError:
    with pytest.raises(ServerError) as error:
        await call
    return error.value


def test_normalise_folds_case_spacing_and_compatibility_forms() -> None:
    assert normalise("  Hey\u00a0 THERE\n\twhat's up? ") == "hey there what's up?"
    assert normalise("\uff28\uff25\uff39") == "hey"  # full-width letters
    assert normalise("Straße") == normalise("STRASSE")
    assert normalise("hey!") != normalise("hey")  # punctuation counts


async def test_past_openers_per_day_a_first_message_is_refused_and_not_stored(
        make_rdv: MakeHarness, http: Apis) -> None:
    rdv = await make_rdv(openers_per_day=2)
    matches = [await http.pair(rdv, "ann", peer) for peer in ("bob", "cat", "dan")]
    ann = await rdv.connect("ann")
    await ann.send(matches[0], "hi bob")
    await ann.send(matches[1], "hi cat")
    refused = await code_of(ann.send(matches[2], "hi dan", c="to-dan"))
    assert refused.code == "opener_limit"
    assert refused.retry_ms is not None and 23 * 3600_000 < refused.retry_ms <= 24 * 3600_000
    again = await code_of(ann.send(matches[2], "hi dan", c="to-dan"))  # the same c again
    assert again.code == "opener_limit"  # its claim was given back: not "pending"
    assert (await ann.history(matches[2]))["msgs"] == []
    dan = await rdv.connect("dan")
    assert await dan.no_event("msg", within=0.2)
    await ann.send(matches[0], "a second message is no opener")  # still allowed
    reply = await dan.send(matches[2], "dan opens instead")  # his own first message
    assert reply["t"] == "ack"
    await code_of(ann.send(matches[2], "and ann may not answer yet"))  # her opener there


async def test_a_duplicate_opener_is_refused_in_another_match(make_rdv: MakeHarness,
                                                              http: Apis) -> None:
    rdv = await make_rdv(reject_duplicate_openers=True)
    m1, m2, m3 = [await http.pair(rdv, "ann", p) for p in ("bob", "cat", "dan")]
    ann = await rdv.connect("ann")
    await ann.send(m1, "Hey there, love your dog!")
    refused = await code_of(ann.send(m2, "  hey   THERE, love your dog! "))
    assert refused.code == "duplicate_opener"
    assert (await ann.history(m2))["msgs"] == []
    await ann.send(m2, "Hey there, love your cat!")  # another text
    await ann.send(m1, "Hey there, love your dog!")  # no opener in m1 any more
    await ann.send(m3, media={"kind": "gif", "url": "https://gifs.test/wave.gif"})
    bob = await rdv.connect("bob")
    await bob.send(m1, "Hey there, love your dog!")  # bob's text is his own


async def test_two_devices_racing_to_open_never_overspend(make_rdv: MakeHarness,
                                                          http: Apis) -> None:
    rdv = await make_rdv(openers_per_day=1)
    m1, m2 = [await http.pair(rdv, "ann", p) for p in ("bob", "cat")]
    phone, tablet = await rdv.connect("ann"), await rdv.connect("ann")
    results = await asyncio.gather(phone.send(m1, "from the phone"),
                                   tablet.send(m2, "from the tablet"),
                                   return_exceptions=True)
    oks = [r for r in results if isinstance(r, dict)]
    codes = [r.code for r in results if isinstance(r, ServerError)]
    assert len(oks) == 1 and codes == ["opener_limit"]
    stored = [len((await phone.history(m))["msgs"]) for m in (m1, m2)]
    assert sorted(stored) == [0, 1]


async def test_two_devices_racing_in_one_match_make_one_opener(make_rdv: MakeHarness,
                                                               http: Apis) -> None:
    rdv = await make_rdv(openers_per_day=2)
    m1, m2, m3 = [await http.pair(rdv, "ann", p) for p in ("bob", "cat", "dan")]
    phone, tablet = await rdv.connect("ann"), await rdv.connect("ann")
    results = await asyncio.gather(phone.send(m1, "phone first"),
                                   tablet.send(m1, "tablet first"), return_exceptions=True)
    for result in results:  # one opener; the other waits for it (retry), or follows it
        if isinstance(result, ServerError):
            assert result.code == "unavailable" and result.retry_ms == 250
            await tablet.send(m1, "tablet again")
    await phone.send(m2, "the second opener of the day")
    assert (await code_of(phone.send(m3, "a third"))).code == "opener_limit"


async def test_with_the_rules_off_a_send_does_no_opener_work(make_rdv: MakeHarness,
                                                             http: Apis) -> None:
    rdv = await make_rdv()
    assert rdv.node.services.chat.openers is None and rdv.node.backends.openers is None
    m = await http.pair(rdv, "ann", "bob")
    ann = await rdv.connect("ann")
    for _ in range(5):
        await ann.send(m, "same words")  # duplicates are no concern either
    assert await store_ops(rdv, http, "has_sent") == 0


async def test_with_the_rules_on_only_a_first_send_costs_a_lookup(make_rdv: MakeHarness,
                                                                  http: Apis) -> None:
    rdv = await make_rdv(openers_per_day=5)
    m1, m2 = [await http.pair(rdv, "ann", p) for p in ("bob", "cat")]
    ann, bob = await rdv.connect("ann"), await rdv.connect("bob")
    for i in range(10):
        await ann.send(m1, f"m1 {i}")
        await ann.send(m2, f"m2 {i}")
        await bob.send(m1, f"bob {i}")
    assert await store_ops(rdv, http, "has_sent") == 3  # (ann, m1), (ann, m2), (bob, m1)
