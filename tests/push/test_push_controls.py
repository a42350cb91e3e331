"""Mutes, push kinds and unsent messages in the push dispatcher, on a real embedded node
with the push recorder (and, where a push must wait in the queue, a provider the test
holds). Live frames are never affected: only pushes."""

from __future__ import annotations

import asyncio
import time

import pytest

from client import HttpError
from push.dispatcher import PUSH_KIND_OF
from push.recorder import RecorderPusher, token_id
from storage.base import Settings
from tests.conftest import Harness
from tests.helpers import Apis, stays, wait_until
from tests.push.test_dispatcher import (  # noqa: F401  (make_node is a fixture)
    APNS_TOKEN,
    FCM_TOKEN,
    FakePusher,
    MakeNode,
    make_node,
    metric,
    records,
    register_both,
    sent,
)


async def test_a_muted_match_gets_no_push_but_its_unread_still_counts(
        make_node: MakeNode, http: Apis) -> None:  # noqa: F811
    rdv = await make_node(push_coalesce_s=0)
    muted = await http.pair(rdv, "ann", "bob")
    loud = await http.pair(rdv, "cat", "bob")
    await register_both(http, rdv, "bob")
    bob_api = http(rdv, "bob")
    assert await bob_api.mute(muted) == {"muted_until": None}  # no end
    listed = {e["id"]: e for e in (await bob_api.matches())["matches"]}
    assert listed[muted]["muted_until"] is None and "muted_until" not in listed[loud]
    ann, cat = await rdv.connect("ann"), await rdv.connect("cat")
    await ann.send(muted, "one")
    await ann.send(muted, "two")
    await cat.send(loud, "three")
    pushed = await wait_until(lambda: len(records(rdv, "bob", "message")) == 2
                              and records(rdv, "bob", "message"))
    assert {r["m"] for r in pushed} == {loud}
    assert {r["badge"] for r in pushed} == {3}  # the muted match's two unread count
    assert await stays(lambda: len(records(rdv, "bob", "message")) == 2)
    assert await metric(rdv, http, 'rendezvous_push_skipped_total{reason="muted"}') == 2

    bob = await rdv.connect("bob")  # live frames are unchanged by a mute
    await ann.send(muted, "live")
    assert (await bob.next_event("msg"))["body"] == "live"
    await bob.close()
    await wait_until(lambda: not rdv.node.hub.has_user("bob"))

    await bob_api.unmute(muted)
    await bob_api.unmute(muted)  # idempotent
    await ann.send(muted, "after unmute")
    after = await wait_until(lambda: len(records(rdv, "bob", "message")) == 4
                             and records(rdv, "bob", "message")[2:])
    assert {r["m"] for r in after} == {muted}


async def test_a_mute_until_a_time_ends_by_itself(
        make_node: MakeNode, http: Apis) -> None:  # noqa: F811
    rdv = await make_node(push_coalesce_s=0)
    m = await http.pair(rdv, "ann", "bob")
    await register_both(http, rdv, "bob")
    until = int(time.time() * 1000) + 700
    assert await http(rdv, "bob").mute(m, until) == {"muted_until": until}
    assert (await http(rdv, "bob").matches())["matches"][0]["muted_until"] == until
    ann = await rdv.connect("ann")
    await ann.send(m, "while muted")
    assert await stays(lambda: records(rdv, "bob", "message") == [], within=0.3)
    await asyncio.sleep(max(0.0, until / 1000 - time.time()) + 0.1)
    await ann.send(m, "after the mute")
    await wait_until(lambda: len(records(rdv, "bob", "message")) == 2)
    assert "muted_until" not in (await http(rdv, "bob").matches())["matches"][0]


async def test_mute_refuses_strangers_and_bad_times(rdv: Harness, http: Apis) -> None:
    m = await http.pair(rdv, "ann", "bob")
    for call in (http(rdv, "cat").mute(m), http(rdv, "cat").unmute(m),
                 http(rdv, "ann").mute("m" + "0" * 24)):
        with pytest.raises(HttpError) as error:
            await call
        assert (error.value.status, error.value.code) == (403, "forbidden")
    for until in (int(time.time() * 1000) - 1000, 0, -5, "soon", 1.5, 1 << 63):
        response = await http(rdv, "ann").raw("PUT", f"/v1/matches/{m}/mute",
                                              json={"until": until})
        assert response.status_code in (400, 422), (until, response.text)
        assert response.json()["error"]["code"] == "bad_request"
    response = await http(rdv, "ann").raw("PUT", f"/v1/matches/{m}/mute", json={"x": 1})
    assert response.status_code == 422
    assert await rdv.node.backends.store.mute_until("ann", m) == 0  # nothing was stored
    # an empty body, or none at all, mutes with no end
    response = await http(rdv, "ann").raw("PUT", f"/v1/matches/{m}/mute")
    assert response.status_code == 200 and response.json() == {"muted_until": None}


async def test_push_kinds_merge_and_a_kind_off_gets_no_push(
        make_node: MakeNode, http: Apis) -> None:  # noqa: F811
    rdv = await make_node(push_coalesce_s=0)
    bob_api = http(rdv, "bob")
    assert (await bob_api.get_settings())["push_kinds"] == {
        "message": True, "match": True, "like": True}
    changed = await bob_api.put_settings(push_kinds={"message": False})
    assert changed["push_kinds"] == {"message": False, "match": True, "like": True}
    changed = await bob_api.put_settings(push_kinds={"like": False}, push_previews=True)
    assert changed == {"show_online": True, "read_receipts": True, "push_previews": True,
                       "push_kinds": {"message": False, "match": True, "like": False}}
    await register_both(http, rdv, "bob")
    m = await http.pair(rdv, "ann", "bob")  # match pushes are on
    await wait_until(lambda: len(records(rdv, "bob", "match")) == 2)
    ann = await rdv.connect("ann")
    await ann.send(m, "no push for this")
    assert await stays(lambda: records(rdv, "bob", "message") == [], within=0.4)
    assert await metric(rdv, http, 'rendezvous_push_skipped_total{reason="kind_off"}') == 1

    await bob_api.put_settings(push_kinds={"message": True, "match": False})
    await ann.send(m, "now pushed")
    await wait_until(lambda: len(records(rdv, "bob", "message")) == 2)
    await http.pair(rdv, "cat", "bob")
    assert await stays(lambda: len(records(rdv, "bob", "match")) == 2, within=0.4)


async def test_bad_push_kinds_are_refused_whole(rdv: Harness, http: Apis) -> None:
    api = http(rdv, "ann")
    for body in ({"push_kinds": {"sms": False}}, {"push_kinds": {"message": "no"}},
                 {"push_kinds": ["message"]}, {"push_kinds": {"message": 0}}):
        response = await api.raw("PUT", "/v1/me/settings", json=body)
        assert response.status_code == 422, body
    assert (await api.get_settings())["push_kinds"]["message"] is True


def test_every_job_kind_has_its_switch() -> None:
    off = Settings(push_message=False, push_match=False, push_like=False)
    for kind in ("message", "match", "superlike", "like"):
        assert not off.wants_push(PUSH_KIND_OF.get(kind, kind)), kind
        assert Settings().wants_push(PUSH_KIND_OF.get(kind, kind)), kind


async def test_a_queued_push_of_an_unsent_message_is_dropped(
        make_node: MakeNode, http: Apis) -> None:  # noqa: F811
    """cat's iPhone push holds the only worker (a provider the test holds); bob's Android
    pushes go to the recorder and wait in the queue meanwhile."""
    fake = FakePusher(sent)
    fake.gate = asyncio.Event()  # holds every message push until opened
    recorder = RecorderPusher(None)
    rdv = await make_node(pushers={"apns": fake, "fcm": recorder}, push_workers=1,
                          push_coalesce_s=0)
    first = await http.pair(rdv, "ann", "cat")
    m = await http.pair(rdv, "ann", "bob")
    await http(rdv, "cat").put_device(APNS_TOKEN + "cat", "apns")
    await http(rdv, "bob").put_device(FCM_TOKEN + "bob", "fcm")
    ann = await rdv.connect("ann")
    await ann.send(first, "holds the only worker")
    await wait_until(lambda: fake.messages())
    kept = await ann.send(m, "this one stays")
    gone = await ann.send(m, "this one is unsent")  # both wait behind the held push
    await ann.unsend(m, gone["id"])
    fake.gate.set()
    to_bob = await wait_until(lambda: [r for r in recorder.sent if r["kind"] == "message"])
    assert await stays(lambda: len([r for r in recorder.sent if r["kind"] == "message"]) == 1,
                       within=0.4)
    assert str(kept["id"]) in to_bob[0]["push_id"] and to_bob[0]["user"] == "bob"
    assert to_bob[0]["device"] == token_id(FCM_TOKEN + "bob")
    assert await metric(rdv, http, 'rendezvous_push_skipped_total{reason="unsent"}') == 1
