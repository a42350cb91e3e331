"""Who gets a push and what happens to the provider's answer, on a real node.

The embedded node records pushes (`RecorderPusher`, also written to `pushes.jsonl`); tests
that need a provider's failure answers build a node with a small fake pusher instead.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from push.base import Notification, Outcome, PushResult
from push.recorder import RecorderPusher, token_id
from server.node import Node
from storage import Device
from tests.conftest import Harness
from tests.conftest import make_config as config_for
from tests.helpers import Apis, stays, wait_until

APNS_TOKEN = "a0b1c2d3" * 8
FCM_TOKEN = "fcm-dXk0Q2xyz:APA91bHexample_token-0123456789"

MakeNode = Callable[..., Awaitable[Harness]]


def recorder(rdv: Harness) -> RecorderPusher:
    pusher = rdv.node.pushes.pushers["apns"]
    assert isinstance(pusher, RecorderPusher)
    return pusher


def records(rdv: Harness, user: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [r for r in recorder(rdv).sent
            if r["user"] == user and (kind is None or r["kind"] == kind)]


async def register_both(http: Apis, rdv: Harness, user: str) -> None:
    api = http(rdv, user)
    await api.put_device(APNS_TOKEN + user, "apns")
    await api.put_device(FCM_TOKEN + user, "fcm")


async def offline(rdv: Harness, user: str) -> None:
    """Wait until the node no longer counts `user` online (a socket close is async)."""
    async def gone() -> bool:
        return not (await rdv.node.presence.status([user]))[user].online
    await wait_until(gone)


class FakePusher:
    """A provider whose answers to message pushes the test scripts (`answer(device,
    attempt)`); match pushes, which may race a test's device set-up, are simply sent."""

    provider = "fake"

    def __init__(self, answer: Callable[[Device, int], PushResult]) -> None:
        self.answer = answer
        self.calls: list[tuple[float, Device, Notification]] = []
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def send(self, device: Device, notification: Notification) -> PushResult:
        attempt = sum(1 for _, d, n in self.calls
                      if d.token == device.token and n.push_id == notification.push_id)
        self.calls.append((time.monotonic(), device, notification))
        if notification.kind != "message":
            return PushResult(Outcome.SENT)
        return self.answer(device, attempt)

    def messages(self) -> list[tuple[float, Device, Notification]]:
        """The calls for message pushes (a match push may race a test's device set-up)."""
        return [call for call in self.calls if call[2].kind == "message"]

    def times(self, token: str) -> list[float]:
        return [t for t, d, _ in self.messages() if d.token == token]


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[MakeNode]:
    """Start a node with the given pushers (a Harness around it); stopped at teardown."""
    made: list[Harness] = []

    async def make(pushers: dict[str, Any], **overrides: Any) -> Harness:
        node = Node(config_for(tmp_path / f"custom{len(made)}", **overrides), pushers=pushers)
        await node.start()
        made.append(Harness(node))
        return made[-1]

    yield make
    for harness in made:
        await harness.close()
        if harness.node.started:
            await harness.node.stop()


# -- who gets a push ------------------------------------------------------------------------
async def test_an_offline_user_gets_one_discreet_push_per_device(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    await register_both(http, rdv, "bob")
    ann = await rdv.connect("ann")
    ack = await ann.send(match_id, "hello bob, secret text")
    pushed = await wait_until(lambda: len(records(rdv, "bob", "message")) == 2
                              and records(rdv, "bob", "message"))
    assert {r["platform"] for r in pushed} == {"apns", "fcm"}
    assert {r["device"] for r in pushed} == {token_id(APNS_TOKEN + "bob"),
                                             token_id(FCM_TOKEN + "bob")}
    for record in pushed:
        assert record["collapse_id"] == f"m:{match_id}"
        assert record["m"] == match_id
        assert record["body"] is None
        assert record["loc_key"] == "rdv.message.new"
        assert str(ack["id"]) in record["push_id"]
    assert len({r["push_id"] for r in pushed}) == 2
    assert await stays(lambda: len(records(rdv, "bob", "message")) == 2)
    assert records(rdv, "ann") == []  # the sender is online and has no devices anyway


async def test_previews_put_the_body_in_the_push(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    await register_both(http, rdv, "bob")
    await http(rdv, "bob").put_settings(push_previews=True)
    ann = await rdv.connect("ann")
    await ann.send(match_id, "dinner at eight?")
    pushed = await wait_until(lambda: len(records(rdv, "bob", "message")) == 2
                              and records(rdv, "bob", "message"))
    assert [r["body"] for r in pushed] == ["dinner at eight?"] * 2
    long = "x" * 500
    await ann.send(match_id, long)
    await wait_until(lambda: len(records(rdv, "bob", "message")) == 4)
    assert all(len(r["body"]) < len(long) for r in records(rdv, "bob", "message")[2:])


async def test_a_user_with_an_open_socket_gets_no_push(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    await register_both(http, rdv, "bob")
    ann = await rdv.connect("ann")
    bob = await rdv.connect("bob")
    await ann.send(match_id, "you are online")
    await bob.next_event("msg", timeout=3)
    assert await stays(lambda: records(rdv, "bob", "message") == [])
    await bob.close()  # and once the socket is gone, pushes resume
    await offline(rdv, "bob")
    await ann.send(match_id, "now you are not")
    await wait_until(lambda: len(records(rdv, "bob", "message")) == 2)


async def test_a_match_pushes_both_offline_users(rdv: Harness, http: Apis) -> None:
    await register_both(http, rdv, "ann")
    await register_both(http, rdv, "bob")
    match_id = await http.pair(rdv, "ann", "bob")
    for user in ("ann", "bob"):
        pushed = await wait_until(lambda u=user: len(records(rdv, u)) == 2 and records(rdv, u))
        assert {r["kind"] for r in pushed} == {"match"}
        assert {r["m"] for r in pushed} == {match_id}
        assert {r["platform"] for r in pushed} == {"apns", "fcm"}
    assert await stays(lambda: len(recorder(rdv).sent) == 4)


async def test_a_match_pushes_only_the_offline_side(rdv: Harness, http: Apis) -> None:
    await register_both(http, rdv, "ann")
    await register_both(http, rdv, "bob")
    ann = await rdv.connect("ann")
    match_id = await http.pair(rdv, "ann", "bob")
    assert (await ann.next_event("match", timeout=3))["m"] == match_id
    await wait_until(lambda: len(records(rdv, "bob", "match")) == 2)
    assert await stays(lambda: records(rdv, "ann") == [])


async def test_a_delivered_receipt_suppresses_pushes_for_a_while(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    await register_both(http, rdv, "bob")
    ann = await rdv.connect("ann")
    first = await ann.send(match_id, "one")
    await wait_until(lambda: len(records(rdv, "bob", "message")) == 2)

    bob = await rdv.connect("bob")  # the app woke up, fetched and confirmed, went away
    await bob.delivered(match_id, first["id"], ack=True)
    await bob.close()
    await offline(rdv, "bob")
    await ann.send(match_id, "two")
    assert await stays(lambda: len(records(rdv, "bob", "message")) == 2)

    rdv.node.pushes.delivered_window_s = 0  # the window is over
    third = await ann.send(match_id, "three")
    pushed = await wait_until(lambda: len(records(rdv, "bob", "message")) == 4
                              and records(rdv, "bob", "message"))
    assert all(str(third["id"]) in r["push_id"] for r in pushed[2:])


async def test_a_delivered_receipt_only_suppresses_its_own_match(rdv: Harness, http: Apis) -> None:
    with_ann = await http.pair(rdv, "ann", "bob")
    with_cat = await http.pair(rdv, "cat", "bob")
    await register_both(http, rdv, "bob")
    ann, cat = await rdv.connect("ann"), await rdv.connect("cat")
    bob = await rdv.connect("bob")
    first = await ann.send(with_ann, "one")
    await bob.next_event("msg", timeout=3)
    await bob.delivered(with_ann, first["id"], ack=True)
    await bob.close()
    await offline(rdv, "bob")
    await cat.send(with_cat, "hi from cat")
    await ann.send(with_ann, "two")
    pushed = await wait_until(lambda: len(records(rdv, "bob", "message")) == 2
                              and records(rdv, "bob", "message"))
    assert {r["m"] for r in pushed} == {with_cat}
    assert await stays(lambda: len(records(rdv, "bob", "message")) == 2)


async def test_pushes_jsonl_never_holds_a_full_device_token(rdv: Harness, http: Apis) -> None:
    await register_both(http, rdv, "ann")
    await register_both(http, rdv, "bob")
    match_id = await http.pair(rdv, "ann", "bob")
    ann = await rdv.connect("ann")
    await ann.send(match_id, "hi")
    path = rdv.node.config.data_dir / "pushes.jsonl"

    def lines() -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    await wait_until(lambda: len(lines()) == 6)  # 2 + 2 match pushes, 2 message pushes
    text = path.read_text()
    for user in ("ann", "bob"):
        for token in (APNS_TOKEN + user, FCM_TOKEN + user):
            assert token not in text
            assert token[:24] not in text  # not even a long prefix
    written = [json.loads(line) for line in lines()]
    assert {r["kind"] for r in written} == {"match", "message"}
    assert all(len(r["device"]) == 12 for r in written)
    assert written[-2:] == recorder(rdv).sent[-2:]


# -- what the provider's answer does --------------------------------------------------------
async def test_a_dead_token_is_removed_from_the_store(make_node: MakeNode, http: Apis) -> None:
    def answer(device: Device, attempt: int) -> PushResult:
        if device.token.startswith("dead"):
            return PushResult(Outcome.DEAD_TOKEN, "Unregistered")
        return PushResult(Outcome.SENT)

    fake = FakePusher(answer)
    rdv = await make_node({"apns": fake, "fcm": fake})
    assert fake.started
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device("dead-apns-token", "apns")
    await http(rdv, "bob").put_device("live-fcm-token", "fcm")
    ann = await rdv.connect("ann")
    await ann.send(match_id, "are you there?")

    async def pruned() -> bool:
        return [d.token for d in await rdv.node.store.devices("bob")] == ["live-fcm-token"]

    await wait_until(pruned)
    assert sorted(d.token for _, d, _ in fake.messages()) == ["dead-apns-token",
                                                               "live-fcm-token"]
    await ann.send(match_id, "hello?")  # the dead token is not tried again
    await wait_until(lambda: len(fake.messages()) == 3)
    assert fake.messages()[-1][1].token == "live-fcm-token"
    text = (await http(rdv, None).raw("GET", "/metrics")).text
    assert 'rendezvous_pushes_total{outcome="dead_token",provider="fake"} 1.0' in text


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_retry_after_is_honoured_up_to_max_attempts(make_node: MakeNode,
                                                          max_attempts: int, http: Apis) -> None:
    delay = 0.25
    fake = FakePusher(lambda d, a: PushResult(Outcome.RETRY, "429", retry_after_s=delay))
    rdv = await make_node({"apns": fake, "fcm": fake})
    rdv.node.pushes.max_attempts = max_attempts
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device("slow-token", "apns")
    ann = await rdv.connect("ann")
    await ann.send(match_id, "hi")
    await wait_until(lambda: len(fake.times("slow-token")) == max_attempts)
    times = fake.times("slow-token")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(delay - 0.02 <= gap < delay + 0.5 for gap in gaps), gaps
    assert await stays(lambda: len(fake.times("slow-token")) == max_attempts, within=delay * 2)
    assert len({n.push_id for _, _, n in fake.messages()}) == 1  # the same notification again
    assert [d.token for d in await rdv.node.store.devices("bob")] == ["slow-token"]


async def test_a_retry_that_then_succeeds_stops_retrying(make_node: MakeNode, http: Apis) -> None:
    def answer(device: Device, attempt: int) -> PushResult:
        if attempt == 0:
            return PushResult(Outcome.RETRY, "503", retry_after_s=0.1)
        return PushResult(Outcome.SENT)

    fake = FakePusher(answer)
    rdv = await make_node({"apns": fake, "fcm": fake})
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device("flaky-token", "fcm")
    ann = await rdv.connect("ann")
    await ann.send(match_id, "hi")
    await wait_until(lambda: len(fake.messages()) == 2)
    assert await stays(lambda: len(fake.messages()) == 2)


async def test_without_retry_after_the_delay_backs_off(make_node: MakeNode, http: Apis) -> None:
    fake = FakePusher(lambda d, a: PushResult(Outcome.RETRY, "transport"))
    rdv = await make_node({"apns": fake, "fcm": fake})
    rdv.node.pushes.base_delay_s = 0.1
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device("tok", "apns")
    ann = await rdv.connect("ann")
    await ann.send(match_id, "hi")
    await wait_until(lambda: len(fake.messages()) == 3)
    first, second, third = fake.times("tok")
    assert 0.08 <= second - first < 0.5
    assert 0.18 <= third - second < 0.7  # doubled


async def test_giving_up_does_not_hold_back_the_next_device(make_node: MakeNode,
                                                            http: Apis) -> None:
    """After the last attempt there is nothing to wait for: no sleep before the next one."""
    delay = 0.3

    def answer(device: Device, attempt: int) -> PushResult:
        if device.token == "a-retrying":
            return PushResult(Outcome.RETRY, "429", retry_after_s=delay)
        return PushResult(Outcome.SENT)

    fake = FakePusher(answer)
    rdv = await make_node({"apns": fake, "fcm": fake})
    rdv.node.pushes.max_attempts = 2
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device("a-retrying", "apns")  # devices go in token order
    await http(rdv, "bob").put_device("b-fine", "fcm")
    ann = await rdv.connect("ann")
    await ann.send(match_id, "hi")
    await wait_until(lambda: fake.times("b-fine"), timeout=5)
    first = fake.times("a-retrying")[0]
    assert len(fake.times("a-retrying")) == 2
    assert fake.times("b-fine")[0] - first < delay * 2 - 0.05
