"""The HTTP API of docs/protocol.md ("HTTP API") against a real node, over real HTTP and
WebSockets.

Every test starts its own node (SQLite in tmp_path), calls the API with `RendezvousHttp` and
watches the effects on live sockets: match, unmatch and the silence after a block.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from client import HttpError, RendezvousClient, ServerError
from tests.conftest import Harness, NodeFactory
from tests.helpers import Apis, wait_until

CONTRACT_PATHS = {  # docs/protocol.md, "HTTP API"; path parameters normalised to {}
    ("post", "/v1/swipes"), ("get", "/v1/matches"), ("delete", "/v1/matches/{}"),
    ("get", "/v1/matches/{}/messages"), ("post", "/v1/blocks"), ("put", "/v1/devices/{}"),
    ("delete", "/v1/devices/{}"), ("put", "/v1/me/settings"),
    ("post", "/v1/reports"), ("get", "/v1/admin/reports"), ("get", "/v1/admin/reports/{}"),
}


async def expect_error(call: Any, status: int, code: str) -> HttpError:
    with pytest.raises(HttpError) as info:
        await call
    assert (info.value.status, info.value.code) == (status, code), info.value
    return info.value


def metric_value(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


async def both_connected(rdv: Harness, a: str, b: str
                         ) -> tuple[RendezvousClient, RendezvousClient]:
    return await rdv.connect(a), await rdv.connect(b)


# -- swipes -----------------------------------------------------------------------------------
async def test_a_one_way_like_makes_no_match(rdv: Harness, http: Apis) -> None:
    ann = await rdv.connect("ann")
    assert await http(rdv, "ann").swipe("bob", "like") == {"match": None}
    assert await ann.no_event("match", within=0.2)
    assert (await http(rdv, "ann").matches())["matches"] == []


async def test_a_mutual_like_matches_and_tells_both_sockets(rdv: Harness, http: Apis) -> None:
    ann, bob = await both_connected(rdv, "ann", "bob")
    assert await http(rdv, "ann").swipe("bob", "like") == {"match": None}
    result = (await http(rdv, "bob").swipe("ann", "like"))["match"]
    assert set(result) == {"id", "peer", "ts"}
    assert result["peer"] == "ann" and isinstance(result["id"], str)
    assert abs(result["ts"] - time.time() * 1000) < 10_000
    for client, peer in ((ann, "bob"), (bob, "ann")):
        frame = await client.next_event("match", timeout=3)
        assert frame == {"t": "match", "m": result["id"], "peer": peer, "ts": result["ts"]}
    listed = (await http(rdv, "ann").matches())["matches"]
    assert [(m["id"], m["peer"], m["ts"]) for m in listed] == [(result["id"], "bob",
                                                                result["ts"])]


@pytest.mark.parametrize("first,second", [("superlike", "like"), ("like", "superlike")])
async def test_a_superlike_marks_the_match_frames_super(rdv: Harness, first: str,
                                                         second: str, http: Apis) -> None:
    ann, bob = await both_connected(rdv, "ann", "bob")
    await http(rdv, "ann").swipe("bob", first)
    match = (await http(rdv, "bob").swipe("ann", second))["match"]
    assert match is not None
    for client in (ann, bob):
        frame = await client.next_event("match", timeout=3)
        assert frame["m"] == match["id"] and frame["super"] is True


async def test_a_pass_then_a_like_matches(rdv: Harness, http: Apis) -> None:
    assert await http(rdv, "ann").swipe("bob", "pass") == {"match": None}
    assert await http(rdv, "bob").swipe("ann", "like") == {"match": None}
    match = (await http(rdv, "ann").swipe("bob", "like"))["match"]
    assert match is not None and match["peer"] == "bob"


async def test_a_pass_withdraws_an_earlier_like(rdv: Harness, http: Apis) -> None:
    await http(rdv, "ann").swipe("bob", "like")
    await http(rdv, "ann").swipe("bob", "pass")
    assert await http(rdv, "bob").swipe("ann", "like") == {"match": None}
    assert (await http(rdv, "bob").matches())["matches"] == []


async def test_swiping_on_yourself_is_a_bad_request(rdv: Harness, http: Apis) -> None:
    for action in ("like", "pass", "superlike"):
        await expect_error(http(rdv, "ann").swipe("ann", action), 400, "bad_request")


async def test_a_bad_swipe_body_is_refused_with_422(rdv: Harness, http: Apis) -> None:
    api = http(rdv, "ann")
    for body in ({"target": "bob", "action": "love"}, {"action": "like"},
                 {"target": "", "action": "like"}, {"target": "x" * 65, "action": "like"}):
        response = await api.raw("POST", "/v1/swipes", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "bad_request"


async def test_swiping_again_is_idempotent(rdv: Harness, http: Apis) -> None:
    ann, bob = await both_connected(rdv, "ann", "bob")
    match_id = await http.pair(rdv, "ann", "bob")
    await ann.next_event("match", timeout=3)
    await bob.next_event("match", timeout=3)
    for user, target in (("ann", "bob"), ("bob", "ann"), ("ann", "bob")):
        again = (await http(rdv, user).swipe(target, "like"))["match"]
        assert again is not None and again["id"] == match_id and again["peer"] == target
    assert await http(rdv, "ann").swipe("bob", "superlike") != {"match": None}
    await asyncio.gather(ann.no_event("match", within=0.3), bob.no_event("match", within=0.3))
    assert len((await http(rdv, "ann").matches())["matches"]) == 1


async def test_a_mutual_like_after_unmatch_does_not_reopen_the_match(rdv: Harness,
                                                                     http: Apis) -> None:
    ann, bob = await both_connected(rdv, "ann", "bob")
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "ann").unmatch(match_id)
    for client in (ann, bob):
        await client.next_event("unmatch", timeout=3)
        client.drain_events()
    for user, target in (("ann", "bob"), ("bob", "ann")):
        assert await http(rdv, user).swipe(target, "pass") == {"match": None}
        assert await http(rdv, user).swipe(target, "like") == {"match": None}
    await asyncio.gather(ann.no_event("match", within=0.3), bob.no_event("match", within=0.3))
    assert (await http(rdv, "bob").matches())["matches"] == []
    with pytest.raises(ServerError) as info:
        await ann.send(match_id, "still there?")
    assert info.value.code == "forbidden"


@pytest.mark.parametrize("blocker,blocked", [("ann", "bob"), ("bob", "ann")])
async def test_a_blocked_pair_never_matches(rdv: Harness, blocker: str, blocked: str,
                                            http: Apis) -> None:
    ann, bob = await both_connected(rdv, "ann", "bob")
    await http(rdv, "ann").swipe("bob", "like")  # a like from before the block
    await http(rdv, blocker).block(blocked)
    assert await http(rdv, "bob").swipe("ann", "like") == {"match": None}
    assert await http(rdv, "ann").swipe("bob", "superlike") == {"match": None}
    await asyncio.gather(ann.no_event("match", within=0.3), bob.no_event("match", within=0.3))
    for user in ("ann", "bob"):
        assert (await http(rdv, user).matches())["matches"] == []


async def test_racing_mutual_likes_create_exactly_one_match_per_pair(rdv: Harness,
                                                                     http: Apis) -> None:
    pairs = [(f"race-a{i}", f"race-b{i}") for i in range(15)]
    sockets = {u: await rdv.connect(u) for pair in pairs for u in pair}
    apis = {u: http(rdv, u) for u in sockets}

    async def race(a: str, b: str) -> list[dict[str, Any]]:
        results = await asyncio.gather(*(apis[x].swipe(y, "like")
                                         for _ in range(3) for x, y in ((a, b), (b, a))))
        return list(results)

    outcomes = await asyncio.gather(*(race(a, b) for a, b in pairs))
    for (a, b), results in zip(pairs, outcomes, strict=True):
        ids = {r["match"]["id"] for r in results if r["match"] is not None}
        assert len(ids) == 1, (a, b, results)
        for user, peer in ((a, b), (b, a)):
            listed = (await apis[user].matches())["matches"]
            assert [m["peer"] for m in listed] == [peer]
            assert listed[0]["id"] in ids
            frame = await sockets[user].next_event("match", timeout=3)
            assert frame["peer"] == peer and frame["m"] in ids
    await asyncio.gather(*(s.no_event("match", within=0.3) for s in sockets.values()))
    text = (await apis["race-a0"].raw("GET", "/metrics")).text
    assert metric_value(text, "rendezvous_matches_created_total") == 15


# -- GET /v1/matches ----------------------------------------------------------------------
async def test_matches_page_newest_first_and_each_exactly_once(rdv: Harness, http: Apis) -> None:
    peers = [f"peer{i}" for i in range(5)]
    made: dict[str, str] = {}
    for peer in peers:
        made[peer] = await http.pair(rdv, "ann", peer)
        await asyncio.sleep(0.002)  # distinct creation milliseconds
    api = http(rdv, "ann")
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        page = await api.matches(limit=2, cursor=cursor)
        pages += 1
        assert len(page["matches"]) <= 2
        seen += page["matches"]
        cursor = page.get("next")
        if cursor is None:
            break
        assert isinstance(cursor, str) and pages < 5
    assert pages == 3
    assert [m["peer"] for m in seen] == peers[::-1]
    assert [m["id"] for m in seen] == [made[p] for p in peers[::-1]]
    stamps = [m["ts"] for m in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert all(m["unread"] == 0 and "last" not in m for m in seen)


async def test_matches_show_the_last_message_and_unread_count(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    bob = await rdv.connect("bob")
    acks = [await bob.send(match_id, f"hello {i}") for i in range(3)]
    ann_api, bob_api = http(rdv, "ann"), http(rdv, "bob")

    entry = (await ann_api.matches())["matches"][0]
    assert entry["last"] == {"id": acks[-1]["id"], "from": "bob", "ts": acks[-1]["ts"]}
    assert entry["unread"] == 3
    assert (await bob_api.matches())["matches"][0]["unread"] == 0  # your own messages

    ann = await rdv.connect("ann")
    await ann.read(match_id, acks[1]["id"], ack=True)
    assert (await ann_api.matches())["matches"][0]["unread"] == 1
    await ann.read(match_id, acks[2]["id"], ack=True)
    assert (await ann_api.matches())["matches"][0]["unread"] == 0

    reply = await ann.send(match_id, "hi bob")
    bob_entry = (await bob_api.matches())["matches"][0]
    assert bob_entry["last"] == {"id": reply["id"], "from": "ann", "ts": reply["ts"]}
    assert bob_entry["unread"] == 1

    raw = (await ann_api.raw("GET", "/v1/matches")).json()["matches"][0]
    assert isinstance(raw["id"], str) and raw["id"] == match_id
    assert raw["last"]["id"] == str(reply["id"])


async def test_matches_refuse_a_malformed_cursor_and_limit(rdv: Harness, http: Apis) -> None:
    api = http(rdv, "ann")
    for params in ({"cursor": "not-a-cursor!"}, {"cursor": "bm9wZQ=="}):
        response = await api.raw("GET", "/v1/matches", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["code"] == "bad_request"
    for limit in (0, 101, "x"):
        response = await api.raw("GET", "/v1/matches", params={"limit": limit})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "bad_request"


# -- DELETE /v1/matches/{id} ----------------------------------------------------------------
async def test_unmatch_closes_the_chat_for_both(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    ann, bob = await both_connected(rdv, "ann", "bob")
    await ann.send(match_id, "before")
    response = await http(rdv, "bob").raw("DELETE", f"/v1/matches/{match_id}")
    assert response.status_code == 204 and response.content == b""
    for client in (ann, bob):
        assert await client.next_event("unmatch", timeout=3) == {"t": "unmatch", "m": match_id}
    for client in (ann, bob):
        for call in (client.send(match_id, "after"), client.history(match_id)):
            with pytest.raises(ServerError) as info:
                await call
            assert info.value.code == "forbidden"
        await expect_error(http(rdv, client.user).messages(match_id), 403, "forbidden")
        assert (await http(rdv, client.user).matches())["matches"] == []
    await http(rdv, "ann").unmatch(match_id)  # again: still 204, nobody told twice
    await asyncio.gather(ann.no_event("unmatch", within=0.2), bob.no_event("unmatch",
                                                                             within=0.2))


async def test_unmatch_by_a_stranger_or_of_an_unknown_id_is_forbidden(rdv: Harness,
                                                                      http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    ann = await rdv.connect("ann")
    await expect_error(http(rdv, "eve").unmatch(match_id), 403, "forbidden")
    await expect_error(http(rdv, "ann").unmatch("m0000000000000000deadbeef"), 403, "forbidden")
    assert await ann.no_event("unmatch", within=0.2)
    assert len((await http(rdv, "ann").matches())["matches"]) == 1


# -- GET /v1/matches/{id}/messages ------------------------------------------------------------
async def test_messages_newest_first_with_before_and_limit(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    ann = await rdv.connect("ann")
    ids = [(await ann.send(match_id, f"m{i}"))["id"] for i in range(5)]
    api = http(rdv, "bob")

    everything = await api.messages(match_id)
    assert [m["id"] for m in everything["msgs"]] == ids[::-1]
    assert everything["more"] is False
    first = everything["msgs"][0]
    assert first["m"] == match_id and first["from"] == "ann" and first["body"] == "m4"
    assert isinstance(first["ts"], int) and isinstance(first["c"], str)

    collected: list[int] = []
    before = None
    while True:
        page = await api.messages(match_id, before=before, limit=2)
        collected += [m["id"] for m in page["msgs"]]
        if not page["more"]:
            break
        before = page["msgs"][-1]["id"]
    assert collected == ids[::-1]
    assert (await api.messages(match_id, before=ids[0]))["msgs"] == []

    raw = (await api.raw("GET", f"/v1/matches/{match_id}/messages")).json()
    assert all(isinstance(m["id"], str) for m in raw["msgs"])


async def test_messages_are_forbidden_to_a_non_member(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    await expect_error(http(rdv, "eve").messages(match_id), 403, "forbidden")
    await expect_error(http(rdv, "eve").messages("m-unknown"), 403, "forbidden")
    response = await http(rdv, "ann").raw("GET", f"/v1/matches/{match_id}/messages",
                                         params={"before": "abc"})
    assert response.status_code == 422


# -- POST /v1/blocks ------------------------------------------------------------------------
async def test_a_block_unmatches_and_silences_the_pair(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    ann, bob = await both_connected(rdv, "ann", "bob")
    await bob.typing(match_id, True)
    await ann.next_event("typing", timeout=3)
    response = await http(rdv, "ann").raw("POST", "/v1/blocks", json={"user": "bob"})
    assert response.status_code == 204
    for client in (ann, bob):
        assert await client.next_event("unmatch", timeout=3) == {"t": "unmatch", "m": match_id}
    ann.drain_events()

    # everything bob can do towards ann
    await bob.typing(match_id, False)
    await bob.typing(match_id, True)
    for call in (bob.send(match_id, "why?"), bob.read(match_id, 1, ack=True),
                 bob.delivered(match_id, 1, ack=True), bob.history(match_id)):
        with pytest.raises(ServerError) as info:
            await call
        assert info.value.code == "forbidden"
    assert (await bob.presence())["users"] == []
    await http(rdv, "bob").put_settings(show_online=False)
    await http(rdv, "bob").put_settings(show_online=True)
    await bob.close()
    bob = await rdv.connect("bob")
    assert await http(rdv, "bob").swipe("ann", "superlike") == {"match": None}
    assert await ann.no_event(within=0.5)

    # and everything ann can do towards bob
    await ann.typing(match_id, True)
    with pytest.raises(ServerError):
        await ann.send(match_id, "bye")
    assert (await ann.presence())["users"] == []
    await ann.close()
    await rdv.connect("ann")
    assert await bob.no_event(within=0.5, predicate=lambda f: f.get("t") != "error")
    await expect_error(http(rdv, "bob").messages(match_id), 403, "forbidden")


async def test_a_block_without_a_match_and_blocking_yourself(rdv: Harness, http: Apis) -> None:
    assert await http(rdv, "ann").block("stranger") is None
    await http(rdv, "ann").block("stranger")  # again: idempotent
    await expect_error(http(rdv, "ann").block("ann"), 400, "bad_request")
    response = await http(rdv, "ann").raw("POST", "/v1/blocks", json={})
    assert response.status_code == 422


async def test_presence_still_flows_between_unblocked_matches(rdv: Harness, http: Apis) -> None:
    """The block test's silence is not just presence being broken."""
    await http.pair(rdv, "ann", "bob")
    ann = await rdv.connect("ann")
    bob = await rdv.connect("bob")
    frame = await ann.next_event("presence", timeout=3)
    assert frame["u"] == "bob" and frame["on"] is True
    await bob.close()
    frame = await ann.next_event("presence", timeout=3)
    assert frame["u"] == "bob" and frame["on"] is False


# -- devices and settings -------------------------------------------------------------------
async def test_devices_register_and_forget(rdv: Harness, http: Apis) -> None:
    api = http(rdv, "ann")
    apns = "a1" * 32
    fcm = "dXk0Q2:APA91bH-example_token"
    for token, body in ((apns, {"platform": "apns", "app": "com.example.rdv",
                                 "locale": "de-DE"}), (fcm, {"platform": "fcm"})):
        response = await api.raw("PUT", f"/v1/devices/{token}", json=body)
        assert response.status_code == 204, response.text
    devices = await rdv.node.store.devices("ann")
    assert {(d.token, d.platform) for d in devices} == {(apns, "apns"), (fcm, "fcm")}
    assert next(d for d in devices if d.token == apns).locale == "de-DE"
    response = await api.raw("DELETE", f"/v1/devices/{apns}")
    assert response.status_code == 204
    await api.delete_device(apns)  # forgetting twice is fine
    assert [d.token for d in await rdv.node.store.devices("ann")] == [fcm]


async def test_a_device_with_a_bad_platform_is_refused(rdv: Harness, http: Apis) -> None:
    api = http(rdv, "ann")
    await expect_error(api.put_device("tok", "windows"), 422, "bad_request")
    for body in ({}, {"platform": "APNS"}, {"platform": "apns", "locale": "x" * 36}):
        response = await api.raw("PUT", "/v1/devices/tok", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "bad_request"
    assert await rdv.node.store.devices("ann") == []


async def test_settings_put_returns_all_and_get_reads_them(rdv: Harness, http: Apis) -> None:
    api = http(rdv, "ann")
    kinds = {"message": True, "match": True, "like": True}
    defaults = {"show_online": True, "read_receipts": True, "push_previews": False,
                "push_kinds": kinds}
    assert (await api.raw("GET", "/v1/me/settings")).json() == defaults
    assert await api.put_settings(push_previews=True) == {**defaults, "push_previews": True}
    assert await api.put_settings(show_online=False) == {"show_online": False,
                                                         "read_receipts": True,
                                                         "push_previews": True,
                                                         "push_kinds": kinds}
    assert await api.put_settings() == {"show_online": False, "read_receipts": True,
                                        "push_previews": True, "push_kinds": kinds}
    assert (await api.raw("GET", "/v1/me/settings")).json()["show_online"] is False
    assert (await http(rdv, "bob").raw("GET", "/v1/me/settings")).json() == defaults


@pytest.mark.parametrize("body", [{"dark_mode": True}, {"show_online": "yes"},
                                  {"read_receipts": 1}, {"push_previews": None, "x": 1}])
async def test_bad_settings_are_refused_with_422(rdv: Harness, body: dict[str, Any],
                                                 http: Apis) -> None:
    api = http(rdv, "ann")
    await expect_error(api.put_settings(**body), 422, "bad_request")
    assert (await api.raw("GET", "/v1/me/settings")).json()["show_online"] is True


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/swipes"), ("GET", "/v1/matches"), ("DELETE", "/v1/matches/m1"),
    ("GET", "/v1/matches/m1/messages"), ("POST", "/v1/blocks"), ("PUT", "/v1/devices/t"),
    ("DELETE", "/v1/devices/t"), ("GET", "/v1/me/settings"), ("PUT", "/v1/me/settings")])
async def test_every_v1_route_needs_a_valid_token(rdv: Harness, method: str,
                                                  path: str, http: Apis) -> None:
    expired = rdv.token("ann", ttl_s=-60)
    for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": rdv.token("ann")},
                    {"Authorization": f"Bearer {expired}"}):
        response = await http(rdv, None).raw(method, path, json={}, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["code"] == "unauthorized"


async def test_the_sdk_reports_401(rdv: Harness, http: Apis) -> None:
    await expect_error(http(rdv, None).swipe("bob"), 401, "unauthorized")


async def test_a_body_over_the_limit_is_413_with_content_length(rdv: Harness, http: Apis) -> None:
    api = http(rdv, "ann")
    body = b'{"target": "bob", "action": "like", "pad": "' + b"x" * 70_000 + b'"}'
    response = await api.raw("POST", "/v1/swipes", content=body,
                             headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert await http(rdv, "bob").swipe("ann") == {"match": None}  # the like was not stored


async def test_a_body_over_the_limit_is_413_when_chunked(rdv: Harness, http: Apis) -> None:
    api = http(rdv, "ann")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"target": "bob", "action": "like", "pad": "'
        for _ in range(20):
            yield b"x" * 4_000
        yield b'"}'

    response = await api.raw("POST", "/v1/swipes", content=chunks(),
                             headers={"content-type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_large"
    assert await http(rdv, "bob").swipe("ann") == {"match": None}
    assert (await http(rdv, "ann").raw("GET", "/healthz")).status_code == 200


async def test_a_body_just_under_the_limit_is_read(node_factory: NodeFactory,
                                                  harness_for: Callable[..., Harness],
                                                  http: Apis) -> None:
    rdv = harness_for(await node_factory(max_http_body_bytes=256))
    try:
        api = http(rdv, "ann")
        ok = b'{"target": "bob", "action": "like"}'.ljust(256)
        assert (await api.raw("POST", "/v1/swipes", content=ok,
                              headers={"content-type": "application/json"})).status_code == 200
        response = await api.raw("POST", "/v1/swipes", content=ok + b" ",
                                 headers={"content-type": "application/json"})
        assert response.status_code == 413
    finally:
        await rdv.close()


async def test_malformed_json_is_a_bad_request(rdv: Harness, http: Apis) -> None:
    response = await http(rdv, "ann").raw("POST", "/v1/swipes", content=b'{"target": "bob",',
                                         headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_swipes_are_rate_limited_with_retry_after(
        node_factory: NodeFactory, harness_for: Callable[..., Harness], http: Apis) -> None:
    rdv = harness_for(await node_factory(swipe_burst=3, swipes_per_s=1))
    try:
        api = http(rdv, "ann")
        for i in range(3):
            await api.swipe(f"user{i}", "pass")
        response = await api.raw("POST", "/v1/swipes", json={"target": "x", "action": "like"})
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 2
        error = await expect_error(api.swipe("y"), 429, "rate_limited")
        assert error.retry_after is not None and error.retry_after >= 1
        await http(rdv, "bob").swipe("ann")  # the limit is per user
        text = (await api.raw("GET", "/metrics")).text
        assert metric_value(text, 'rendezvous_rate_limited_total{kind="swipe"}') == 2
    finally:
        await rdv.close()


async def test_unknown_routes_and_methods_answer_in_the_error_shape(rdv: Harness,
                                                                    http: Apis) -> None:
    api = http(rdv, "ann")
    response = await api.raw("GET", "/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert isinstance(response.json()["error"]["msg"], str)
    response = await api.raw("PATCH", "/v1/swipes", json={})
    assert response.status_code == 405
    assert set(response.json()["error"]) == {"code", "msg"}


# -- operations -----------------------------------------------------------------------------
async def test_health_and_readiness(rdv: Harness, http: Apis) -> None:
    api = http(rdv, None)
    response = await api.raw("GET", "/healthz")
    assert response.status_code == 200
    response = await api.raw("GET", "/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["checks"] and all(body["checks"].values())
    assert "store" in body["checks"]


async def test_metrics_count_connections_and_frames(rdv: Harness, http: Apis) -> None:
    client = await rdv.connect("ann")
    await client.ping()
    response = await http(rdv, None).raw("GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert metric_value(response.text, "rendezvous_connections") == 1
    assert metric_value(response.text, 'rendezvous_frames_in_total{type="ping"}') >= 1
    await client.close()

    async def no_connections() -> bool:
        text = (await http(rdv, None).raw("GET", "/metrics")).text
        return metric_value(text, "rendezvous_connections") == 0

    await wait_until(no_connections)


async def test_openapi_lists_the_contract_and_docs_are_served(rdv: Harness, http: Apis) -> None:
    api = http(rdv, None)
    spec = (await api.raw("GET", "/openapi.json")).json()
    listed = {(method, re.sub(r"\{[^}]+\}", "{}", path))
              for path, item in spec["paths"].items() for method in item}
    assert listed >= CONTRACT_PATHS, CONTRACT_PATHS - listed
    for path in ("/healthz", "/readyz", "/metrics"):
        assert path in spec["paths"]
    docs = await api.raw("GET", "/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
