"""A real node, configured by its push settings and key files, sends through the real aioapns
and firebase-admin to look-alike APNS and FCM servers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from push.apns import ApnsPusher, apns_id
from push.fcm import FcmPusher
from push.recorder import token_id
from storage import Device
from tests.conftest import Harness, NodeFactory
from tests.helpers import Apis, stays, wait_until
from tests.push_servers.apns import ApnsLookalike
from tests.push_servers.fcm import FcmLookalike

IOS = "b0c1d2e3" * 8  # 64 hex characters, as an APNS token is
ANDROID = "fcm-e2e:APA91bH-android-registration-token-0123456789"
Start = Callable[..., Awaitable[Harness]]


class TimedApns(ApnsLookalike):
    """The APNS look-alike, noting when each request arrived and what it was answered."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[float, str, int]] = []  # (monotonic s, token, status)

    def answer(self, stream: Any, client_cert: bool) -> tuple[int, str, int | None]:
        status, reason, retry_after = super().answer(stream, client_cert)
        token = stream.headers.get(":path", "").removeprefix("/3/device/")
        self.answers.append((time.monotonic(), token, status))
        return status, reason, retry_after


@pytest.fixture
async def apns() -> AsyncIterator[TimedApns]:
    server = TimedApns()
    await server.start()
    yield server
    await server.stop()


def push_settings(tmp_path: Path, apns: ApnsLookalike, fcm: FcmLookalike) -> dict[str, Any]:
    """Config keys pointing a node at the look-alikes, key files written as an operator
    would write them."""
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(apns.key_pem)
    account_file = tmp_path / "firebase-sa.json"
    account_file.write_text(json.dumps(fcm.service_account()))
    return {"apns_topic": apns.topic, "apns_key_file": key_file, "apns_key_id": apns.key_id,
            "apns_team_id": apns.team_id, "apns_server": apns.server,
            "apns_ca_file": Path(apns.ca_file), "fcm_service_account_file": account_file,
            "fcm_url": fcm.fcm_url}


@pytest.fixture
async def start(node_factory: NodeFactory, harness_for: Callable[..., Harness],
                tmp_path: Path, apns: TimedApns, fcm: FcmLookalike) -> Start:
    async def make(**overrides: Any) -> Harness:
        settings = {**push_settings(tmp_path, apns, fcm), "push_coalesce_s": 1.0,
                    **overrides}
        return harness_for(await node_factory(**settings))
    return make


async def devices_of(rdv: Harness, http: Apis, user: str) -> None:
    await http(rdv, user).put_device(IOS + user, "apns")
    await http(rdv, user).put_device(ANDROID + user, "fcm")


def to(server: ApnsLookalike | FcmLookalike, token: str) -> list[Any]:
    return [r for r in server.requests if r.token == token]


def alert(request: Any) -> dict[str, Any]:
    payload: dict[str, Any] = request.payload
    return dict(payload["aps"]["alert"])


async def test_a_burst_is_one_discreet_push_per_device_with_the_collapse_id(
        start: Start, http: Apis, apns: TimedApns, fcm: FcmLookalike) -> None:
    rdv = await start()
    match_id = await http.pair(rdv, "ann", "bob")
    await devices_of(rdv, http, "bob")
    ann = await rdv.connect("ann")
    burst = [await ann.send(match_id, f"secret words {i}") for i in range(5)]
    await wait_until(lambda: to(apns, IOS + "bob") and to(fcm, ANDROID + "bob"), timeout=10)
    assert await stays(lambda: len(to(apns, IOS + "bob")) == 1
                       and len(to(fcm, ANDROID + "bob")) == 1, within=0.8)

    (ios,) = to(apns, IOS + "bob")
    # the burst's one push is the job that took the burst's slot first: the workers check
    # settings and mutes before taking it, so which of the five that is may vary
    push_ids = [f"msg:{match_id}:{sent['id']}:{token_id(IOS + 'bob')}" for sent in burst]
    assert ios.headers["apns-collapse-id"] == f"m:{match_id}"
    assert ios.headers["apns-id"] in {apns_id(push_id) for push_id in push_ids}
    assert ios.headers["apns-topic"] == apns.topic
    assert alert(ios) == {"loc-key": "rdv.message.new"}  # no name, no text
    assert 1 <= ios.payload["aps"]["badge"] <= 5  # what was unread when it was sent
    (android,) = to(fcm, ANDROID + "bob")
    assert android.message["android"]["collapse_key"] == f"m:{match_id}"
    assert android.message["android"]["notification"]["body_loc_key"] == "rdv.message.new"
    for request in (ios, android):
        assert "secret words" not in json.dumps(getattr(request, "payload", None)
                                                or request.message)

    await asyncio.sleep(1.0)  # past the coalescing window: the next message notifies
    await ann.send(match_id, "secret words, later")
    await wait_until(lambda: len(to(apns, IOS + "bob")) == 2
                     and len(to(fcm, ANDROID + "bob")) == 2, timeout=10)
    assert to(apns, IOS + "bob")[1].payload["aps"]["badge"] == 6  # the unread count
    assert to(fcm, ANDROID + "bob")[1].message["android"]["notification"][
        "notification_count"] == 6


async def test_previews_put_the_text_in_both_pushes(start: Start, http: Apis,
                                                    apns: TimedApns, fcm: FcmLookalike) -> None:
    rdv = await start()
    match_id = await http.pair(rdv, "ann", "bob")
    await devices_of(rdv, http, "bob")
    settings = await http(rdv, "bob").put_settings(push_previews=True)
    assert settings["push_previews"] is True
    ann = await rdv.connect("ann")
    await ann.send(match_id, "dinner at eight?")
    await wait_until(lambda: to(apns, IOS + "bob") and to(fcm, ANDROID + "bob"), timeout=10)
    assert alert(to(apns, IOS + "bob")[0])["body"] == "dinner at eight?"
    assert to(fcm, ANDROID + "bob")[0].message["android"]["notification"]["body"] == \
        "dinner at eight?"


async def test_a_match_pushes_both_users_and_a_super_like_says_so(
        start: Start, http: Apis, apns: TimedApns, fcm: FcmLookalike) -> None:
    rdv = await start()
    for user in ("ann", "bob", "cat"):
        await devices_of(rdv, http, user)
    plain = await http.pair(rdv, "ann", "bob")
    for user in ("ann", "bob"):
        await wait_until(lambda u=user: to(apns, IOS + u) and to(fcm, ANDROID + u), timeout=10)
        assert alert(to(apns, IOS + user)[0]) == {"loc-key": "rdv.match.new"}
        assert to(apns, IOS + user)[0].payload["m"] == plain
        assert to(fcm, ANDROID + user)[0].message["data"]["t"] == "match"

    await http(rdv, "cat").swipe("ann", "superlike")  # a like push to ann, then the match
    super_match = (await http(rdv, "ann").swipe("cat", "like"))["match"]["id"]
    await wait_until(lambda: len(to(apns, IOS + "ann")) == 3
                     and len(to(fcm, ANDROID + "ann")) == 3, timeout=10)
    (ios,) = [r for r in to(apns, IOS + "ann")[1:] if r.payload.get("t") == "superlike"]
    assert alert(ios) == {"loc-key": "rdv.superlike.new"}
    assert ios.headers["apns-collapse-id"] == f"match:{super_match}"
    assert sorted(r.message["data"]["t"] for r in to(fcm, ANDROID + "ann")[1:]) == [
        "like", "superlike"]
    await wait_until(lambda: to(apns, IOS + "cat"), timeout=10)
    assert alert(to(apns, IOS + "cat")[0]) == {"loc-key": "rdv.match.new"}  # cat liked


async def test_unregistered_removes_the_token(start: Start, http: Apis, apns: TimedApns,
                                              fcm: FcmLookalike) -> None:
    rdv = await start()
    match_id = await http.pair(rdv, "ann", "bob")
    await devices_of(rdv, http, "bob")
    apns.script(IOS + "bob", 410, "Unregistered")
    ann = await rdv.connect("ann")
    await ann.send(match_id, "hi")

    async def pruned() -> bool:
        return [d.platform for d in await rdv.node.store.devices("bob")] == ["fcm"]

    await wait_until(pruned, timeout=10)
    assert len(to(apns, IOS + "bob")) == 1


async def test_429_delays_the_retry_by_retry_after(start: Start, http: Apis, apns: TimedApns,
                                                   fcm: FcmLookalike) -> None:
    rdv = await start(push_retry_base_s=0.05)  # so only Retry-After can explain the gap
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device(IOS + "bob", "apns")
    await http(rdv, "bob").put_device(ANDROID + "bob", "fcm")
    apns.script(IOS + "bob", 429, "TooManyRequests", retry_after=1)
    fcm.script(ANDROID + "bob", 429, "QUOTA_EXCEEDED", retry_after=1)
    ann = await rdv.connect("ann")
    await ann.send(match_id, "hi")
    await wait_until(lambda: len(to(apns, IOS + "bob")) == 2
                     and len(to(fcm, ANDROID + "bob")) == 2, timeout=10)
    (t1, _, s1), (t2, _, s2) = [a for a in apns.answers if a[1] == IOS + "bob"]
    assert (s1, s2) == (429, 200)
    assert 1.0 <= t2 - t1 < 2.0, t2 - t1
    ids = {r.headers["apns-id"] for r in to(apns, IOS + "bob")}
    assert len(ids) == 1  # the same notification, sent again
    assert await stays(lambda: len(to(apns, IOS + "bob")) == 2
                       and len(to(fcm, ANDROID + "bob")) == 2, within=0.5)


async def test_a_user_who_is_online_gets_no_push(start: Start, http: Apis, apns: TimedApns,
                                                 fcm: FcmLookalike) -> None:
    rdv = await start()
    match_id = await http.pair(rdv, "ann", "bob")
    await devices_of(rdv, http, "bob")
    ann, bob = await rdv.connect("ann"), await rdv.connect("bob")
    await ann.send(match_id, "you are here")
    assert (await bob.next_event("msg", timeout=3))["body"] == "you are here"
    assert await stays(lambda: not to(apns, IOS + "bob") and not to(fcm, ANDROID + "bob"),
                       within=0.8)


async def test_the_android_devices_of_a_user_go_in_one_fcm_batch(
        start: Start, http: Apis, apns: TimedApns, fcm: FcmLookalike) -> None:
    """All of a user's FCM devices are one send_each_async call; a dead token among them
    is pruned, the others are sent."""
    rdv = await start()
    pusher = rdv.node.services.pushes.pushers["fcm"]
    assert isinstance(pusher, FcmPusher)
    calls: list[int] = []
    send_many = pusher.send_many

    async def counted(devices: list[Device], notification: Any) -> list[Any]:
        calls.append(len(devices))
        return await send_many(devices, notification)

    pusher.send_many = counted  # type: ignore[method-assign]
    match_id = await http.pair(rdv, "ann", "bob")
    tokens = [f"{ANDROID}-{i}" for i in range(3)]
    for token in tokens:
        await http(rdv, "bob").put_device(token, "fcm")
    fcm.script(tokens[1], 404, "UNREGISTERED")
    ann = await rdv.connect("ann")
    await ann.send(match_id, "hi")
    await wait_until(lambda: all(to(fcm, t) for t in tokens), timeout=10)

    async def pruned() -> bool:
        return sorted(d.token for d in await rdv.node.store.devices("bob")) == \
            [tokens[0], tokens[2]]

    await wait_until(pruned, timeout=10)
    assert 3 in calls  # the message push: one call for the three devices
    assert {r.headers.get(":path", "") for r in fcm.requests} == {
        f"/v1/projects/{fcm.project_id}/messages:send"}


async def test_the_apns_pool_is_sized_by_config(start: Start, http: Apis,
                                                apns: TimedApns) -> None:
    rdv = await start(apns_max_connections=3)
    pusher = rdv.node.services.pushes.pushers["apns"]
    assert isinstance(pusher, ApnsPusher)
    assert pusher._client is not None and pusher._client.pool.max_connections == 3


async def test_a_superlike_is_a_discreet_like_push_collapsed_per_liker(
        start: Start, http: Apis, apns: TimedApns, fcm: FcmLookalike) -> None:
    rdv = await start()
    await devices_of(rdv, http, "zoe")
    zoe_online = await rdv.connect("zoe")  # no live frame for a like: the push goes anyway
    await http(rdv, "annabel").swipe("zoe", "superlike")
    await http(rdv, "bobby").swipe("zoe", "superlike")
    await wait_until(lambda: len(to(apns, IOS + "zoe")) == 2
                     and len(to(fcm, ANDROID + "zoe")) == 2, timeout=10)
    ios = to(apns, IOS + "zoe")
    android = to(fcm, ANDROID + "zoe")
    assert [alert(r) for r in ios] == [{"loc-key": "rdv.like.new"}] * 2
    assert all(r.payload.get("t") == "like" and "thread-id" not in r.payload["aps"]
               for r in ios)
    collapse = [r.headers["apns-collapse-id"] for r in ios]
    assert collapse[0] != collapse[1] and all(c.startswith("like:") for c in collapse)
    assert [r.message["android"]["collapse_key"] for r in android] == collapse
    for request in (*ios, *android):
        text = json.dumps(getattr(request, "payload", None) or request.message) + json.dumps(
            dict(getattr(request, "headers", {})))
        assert "annabel" not in text and "bobby" not in text  # never the liker
    await http(rdv, "annabel").swipe("zoe", "pass")
    await http(rdv, "annabel").swipe("zoe", "superlike")  # again: replaces the first one
    await wait_until(lambda: len(to(apns, IOS + "zoe")) == 3, timeout=10)
    assert to(apns, IOS + "zoe")[2].headers["apns-collapse-id"] == collapse[0]
    await zoe_online.close()
