"""Who gets a push and what happens to the provider's answer, on a real node.

The embedded node records pushes (`RecorderPusher`, also written to `pushes.jsonl`); tests
that need a provider's failure answers build a node with a small fake pusher instead. The
real APNS and FCM libraries against look-alike servers are in test_push_e2e.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from push.base import Notification, Outcome, PushResult
from push.dispatcher import ProviderSlots, reason_label
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
    pusher = rdv.node.services.pushes.pushers["apns"]
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
        return not (await rdv.node.backends.presence.status([user]))[user].online
    await wait_until(gone)


async def metric(rdv: Harness, http: Apis, line: str) -> float:
    """The value of one sample line of /metrics (0 when absent)."""
    text = (await http(rdv, None).raw("GET", "/metrics")).text
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


class FakePusher:
    """A provider whose answers to message pushes the test scripts (`answer(device,
    attempt)`); match pushes, which may race a test's device set-up, are simply sent.
    `gate`, when set, holds every message push until the test opens it."""

    provider = "fake"

    def __init__(self, answer: Callable[[Device, int], PushResult]) -> None:
        self.answer = answer
        self.calls: list[tuple[float, Device, Notification]] = []
        self.started = self.closed = False
        self.gate: asyncio.Event | None = None

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def send(self, device: Device, notification: Notification) -> PushResult:
        attempt = sum(1 for _, d, n in self.calls
                      if d.token == device.token and n.push_id == notification.push_id)
        self.calls.append((time.monotonic(), device, notification))
        if self.gate is not None and notification.kind == "message":
            await self.gate.wait()
        if notification.kind != "message":
            return PushResult(Outcome.SENT)
        return self.answer(device, attempt)

    def messages(self) -> list[tuple[float, Device, Notification]]:
        """The calls for message pushes (a match push may race a test's device set-up)."""
        return [call for call in self.calls if call[2].kind == "message"]

    def times(self, token: str) -> list[float]:
        return [t for t, d, _ in self.messages() if d.token == token]


def sent(device: Device, attempt: int) -> PushResult:
    return PushResult(Outcome.SENT)


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[MakeNode]:
    """Start a node with the given pushers (None: from config) and config overrides."""
    made: list[Harness] = []

    async def make(pushers: dict[str, Any] | None = None, **overrides: Any) -> Harness:
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
        assert record["badge"] == 1
        assert str(ack["id"]) in record["push_id"]
    assert len({r["push_id"] for r in pushed}) == 2
    assert await stays(lambda: len(records(rdv, "bob", "message")) == 2)
    assert records(rdv, "ann") == []  # the sender is online and has no devices anyway


async def test_a_burst_is_one_push_per_device_and_the_badge_counts_unread(
        make_node: MakeNode, http: Apis) -> None:
    rdv = await make_node(push_coalesce_s=1.0)
    match_id = await http.pair(rdv, "ann", "bob")
    other = await http.pair(rdv, "cat", "bob")
    await register_both(http, rdv, "bob")
    ann, cat = await rdv.connect("ann"), await rdv.connect("cat")
    await cat.send(other, "an older unread message elsewhere")
    await wait_until(lambda: len(records(rdv, "bob", "message")) == 2)
    burst = [await ann.send(match_id, f"burst {i}") for i in range(5)]
    pushed = await wait_until(lambda: len(records(rdv, "bob", "message")) == 4
                              and records(rdv, "bob", "message")[2:])
    assert await stays(lambda: len(records(rdv, "bob", "message")) == 4, within=0.5)
    assert {r["platform"] for r in pushed} == {"apns", "fcm"}
    assert {r["collapse_id"] for r in pushed} == {f"m:{match_id}"}
    assert str(burst[0]["id"]) in pushed[0]["push_id"]  # the first of the burst notifies
    badge = pushed[0]["badge"]  # counted when sent: cat's message plus the burst so far
    assert {r["badge"] for r in pushed} == {badge} and 2 <= badge <= 6

    await asyncio.sleep(1.0)  # the coalescing window is over: the next message notifies
    await ann.send(match_id, "after the burst")
    later = await wait_until(lambda: len(records(rdv, "bob", "message")) == 6
                             and records(rdv, "bob", "message")[4:])
    assert {r["badge"] for r in later} == {1 + 5 + 1}


async def test_reading_lowers_the_badge(make_node: MakeNode, http: Apis) -> None:
    rdv = await make_node(push_coalesce_s=0)
    match_id = await http.pair(rdv, "ann", "bob")
    await register_both(http, rdv, "bob")
    ann = await rdv.connect("ann")
    acks = [await ann.send(match_id, f"m{i}") for i in range(3)]
    await wait_until(lambda: len(records(rdv, "bob", "message")) == 6)
    bob = await rdv.connect("bob")
    await bob.read(match_id, acks[1]["id"], ack=True)
    await bob.close()
    await offline(rdv, "bob")
    await ann.send(match_id, "one more")
    pushed = await wait_until(lambda: len(records(rdv, "bob", "message")) == 8
                              and records(rdv, "bob", "message")[6:])
    assert {r["badge"] for r in pushed} == {2}  # m2 and "one more"


async def test_previews_put_the_body_in_the_push(make_node: MakeNode, http: Apis) -> None:
    rdv = await make_node(push_coalesce_s=0)
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
    assert all(0 < len(r["body"]) < len(long) for r in records(rdv, "bob", "message")[2:])


async def test_a_user_with_an_open_socket_gets_no_push(rdv: Harness, http: Apis) -> None:
    match_id = await http.pair(rdv, "ann", "bob")
    await register_both(http, rdv, "bob")
    ann = await rdv.connect("ann")
    bob = await rdv.connect("bob")
    await ann.send(match_id, "you are online")
    await bob.next_event("msg", timeout=3)
    assert await stays(lambda: records(rdv, "bob", "message") == [])
    assert await metric(rdv, http, 'rendezvous_push_skipped_total{reason="online"}') >= 1
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
        assert {r["loc_key"] for r in pushed} == {"rdv.match.new"}
        assert {r["m"] for r in pushed} == {match_id}
        assert {r["platform"] for r in pushed} == {"apns", "fcm"}
    assert await stays(lambda: len(recorder(rdv).sent) == 4)


async def test_a_super_like_match_tells_the_liked_user_superlike(rdv: Harness,
                                                                 http: Apis) -> None:
    await register_both(http, rdv, "ann")
    await register_both(http, rdv, "bob")
    await http(rdv, "ann").swipe("bob", "superlike")  # ann super likes bob: a like push
    liked = await wait_until(lambda: len(records(rdv, "bob")) == 2 and records(rdv, "bob"))
    assert {(r["kind"], r["loc_key"], r["m"]) for r in liked} == {("like", "rdv.like.new", None)}
    result = await http(rdv, "bob").swipe("ann", "like")
    match_id = result["match"]["id"]
    to_bob = await wait_until(lambda: len(records(rdv, "bob", "superlike")) == 2
                              and records(rdv, "bob", "superlike"))
    assert {(r["kind"], r["loc_key"], r["m"]) for r in to_bob} == {
        ("superlike", "rdv.superlike.new", match_id)}
    to_ann = await wait_until(lambda: len(records(rdv, "ann")) == 2 and records(rdv, "ann"))
    assert {r["kind"] for r in to_ann} == {"match"}  # she liked; nobody super liked her


async def test_a_match_pushes_only_the_offline_side(rdv: Harness, http: Apis) -> None:
    await register_both(http, rdv, "ann")
    await register_both(http, rdv, "bob")
    ann = await rdv.connect("ann")
    match_id = await http.pair(rdv, "ann", "bob")
    assert (await ann.next_event("match", timeout=3))["m"] == match_id
    await wait_until(lambda: len(records(rdv, "bob", "match")) == 2)
    assert await stays(lambda: records(rdv, "ann") == [])


async def test_a_delivered_receipt_suppresses_pushes_for_a_while(make_node: MakeNode,
                                                                 http: Apis) -> None:
    window = 1.0
    rdv = await make_node(push_coalesce_s=0, push_delivered_window_s=window)
    match_id = await http.pair(rdv, "ann", "bob")
    await register_both(http, rdv, "bob")
    ann = await rdv.connect("ann")
    first = await ann.send(match_id, "one")
    await wait_until(lambda: len(records(rdv, "bob", "message")) == 2)

    bob = await rdv.connect("bob")  # the app woke up, fetched and confirmed, went away
    await bob.delivered(match_id, first["id"], ack=True)
    confirmed = time.monotonic()
    await bob.close()
    await offline(rdv, "bob")
    await ann.send(match_id, "two")
    assert await stays(lambda: len(records(rdv, "bob", "message")) == 2)
    assert time.monotonic() - confirmed < window  # still inside the window when sent

    await asyncio.sleep(max(0.0, window - (time.monotonic() - confirmed)) + 0.05)
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
    # a user's devices are sent at once: the file's order of those two may differ
    assert sorted(written, key=str) == sorted(recorder(rdv).sent[-6:], key=str)


# -- what the provider's answer does --------------------------------------------------------
async def test_a_dead_token_is_removed_from_the_store(make_node: MakeNode, http: Apis) -> None:
    def answer(device: Device, attempt: int) -> PushResult:
        if device.token.startswith("dead"):
            return PushResult(Outcome.DEAD_TOKEN, "Unregistered")
        return PushResult(Outcome.SENT)

    fake = FakePusher(answer)
    rdv = await make_node({"apns": fake, "fcm": fake}, push_coalesce_s=0)
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
    line = 'rendezvous_pushes_total{outcome="dead_token",provider="fake"}'
    assert await metric(rdv, http, line) == 1.0
    line = 'rendezvous_push_failures_total{provider="fake",reason="Unregistered"}'
    assert await metric(rdv, http, line) == 1.0


@pytest.mark.parametrize(("reason", "label"), [
    ("Unregistered", "Unregistered"),
    ("invalid message: token 'abc' is not valid", "invalid message"),
    ("no status (None)", "no status"),
    ("transport: ConnectionResetError", "transport"),
    ("", "unknown"),
    ("x" * 100, "x" * 40),
])
def test_a_failure_reason_becomes_a_bounded_label(reason: str, label: str) -> None:
    assert reason_label(reason) == label


async def test_a_configuration_error_keeps_the_token_counts_and_logs_once(
        make_node: MakeNode, http: Apis, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakePusher(lambda d, a: PushResult(Outcome.CONFIG_ERROR, "InvalidProviderToken"))
    rdv = await make_node({"apns": fake, "fcm": fake}, push_coalesce_s=0)
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device("secret-device-token-123456", "apns")
    ann = await rdv.connect("ann")
    with caplog.at_level(logging.ERROR, logger="rendezvous.push"):
        await ann.send(match_id, "one")
        await ann.send(match_id, "two")
        line = ('rendezvous_push_config_errors_total{provider="fake",'
                'reason="InvalidProviderToken"}')

        async def counted() -> bool:
            return await metric(rdv, http, line) == 2.0

        await wait_until(counted)
    assert [d.token for d in await rdv.node.store.devices("bob")] == [
        "secret-device-token-123456"]
    errors = [r for r in caplog.records if "configuration error" in r.getMessage()]
    assert len(errors) == 1  # not one per push
    assert errors[0].__dict__["reason"] == "InvalidProviderToken"
    assert errors[0].__dict__["device"] == token_id("secret-device-token-123456")
    assert "secret-device-token" not in caplog.text
    assert len(fake.messages()) == 2  # not retried


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_retry_after_is_honoured_up_to_max_attempts(make_node: MakeNode,
                                                          max_attempts: int, http: Apis) -> None:
    delay = 0.25
    fake = FakePusher(lambda d, a: PushResult(Outcome.RETRY, "429", retry_after_s=delay))
    rdv = await make_node({"apns": fake, "fcm": fake}, push_max_attempts=max_attempts)
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
    line = 'rendezvous_pushes_total{outcome="gave_up",provider="fake"}'
    assert await metric(rdv, http, line) == 1.0


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
    rdv = await make_node({"apns": fake, "fcm": fake}, push_retry_base_s=0.1,
                          push_max_attempts=3)
    rdv.node.services.pushes._rng = lambda: 0.999  # the top of the jitter range: the plain doubling
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device("tok", "apns")
    ann = await rdv.connect("ann")
    await ann.send(match_id, "hi")
    await wait_until(lambda: len(fake.messages()) == 3)
    first, second, third = fake.times("tok")
    assert 0.08 <= second - first < 0.5
    assert 0.18 <= third - second < 0.7  # doubled


async def test_the_backoff_has_full_jitter(make_node: MakeNode, http: Apis) -> None:
    """Pushes that failed together are retried spread over [0, base * 2**attempt), not
    all at the same instant (docs/operations.md, "Start-up")."""
    fake = FakePusher(lambda d, a: PushResult(Outcome.RETRY, "transport"))
    rdv = await make_node({"apns": fake, "fcm": fake}, push_retry_base_s=0.2,
                          push_max_attempts=2, push_coalesce_s=0)
    users = [f"u{i}" for i in range(12)]
    match_ids = [await http.pair(rdv, "ann", user) for user in users]
    for user in users:
        await http(rdv, user).put_device(f"tok-{user}", "apns")
    ann = await rdv.connect("ann")
    await asyncio.gather(*(ann.send(m, "hi") for m in match_ids))
    await wait_until(lambda: len(fake.messages()) == 2 * len(users), timeout=5)
    gaps = [second - first for first, second in
            (fake.times(f"tok-{user}") for user in users)]
    assert all(0 <= gap < 0.2 + 0.15 for gap in gaps), gaps
    assert max(gaps) - min(gaps) > 0.05, gaps  # spread out, not one fixed delay
    dispatcher = rdv.node.services.pushes
    delays = [dispatcher._backoff(3, None) for _ in range(200)]
    assert all(0 <= d < 0.2 * 2 ** 3 for d in delays)
    assert len({round(d, 3) for d in delays}) > 150
    assert dispatcher._backoff(3, 7.0) == 7.0  # a provider's Retry-After is kept as it is


async def test_a_waiting_retry_holds_neither_a_worker_nor_the_other_devices(
        make_node: MakeNode, http: Apis) -> None:
    """One worker: a retry due in 2 s must not delay another device or another user."""
    delay = 2.0

    def answer(device: Device, attempt: int) -> PushResult:
        if device.token == "a-retrying":
            return PushResult(Outcome.RETRY, "429", retry_after_s=delay)
        return PushResult(Outcome.SENT)

    fake = FakePusher(answer)
    rdv = await make_node({"apns": fake, "fcm": fake}, push_workers=1, push_max_attempts=2,
                          push_coalesce_s=0)
    with_bob = await http.pair(rdv, "ann", "bob")
    with_cat = await http.pair(rdv, "ann", "cat")
    await http(rdv, "bob").put_device("a-retrying", "apns")
    await http(rdv, "bob").put_device("b-fine", "fcm")
    await http(rdv, "cat").put_device("c-fine", "fcm")
    ann = await rdv.connect("ann")
    await ann.send(with_bob, "hi bob")
    await wait_until(lambda: fake.times("b-fine") and fake.times("a-retrying"))
    await ann.send(with_cat, "hi cat")
    await wait_until(lambda: fake.times("c-fine"))
    first_try = fake.times("a-retrying")[0]
    assert fake.times("c-fine")[0] - first_try < delay / 2  # not after the retry
    assert len(fake.times("a-retrying")) == 1  # the retry still waits
    await wait_until(lambda: len(fake.times("a-retrying")) == 2, timeout=delay + 2)


async def test_over_the_provider_cap_pushes_are_shed_with_a_metric(make_node: MakeNode,
                                                                   http: Apis) -> None:
    fake = FakePusher(sent)
    fake.gate = asyncio.Event()  # the provider hangs until the test lets it answer
    rdv = await make_node({"apns": fake, "fcm": fake}, push_max_in_flight=1,
                          push_max_waiting=0, push_coalesce_s=0)
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device("tok-1", "apns")
    await wait_until(lambda: not rdv.node.services.pushes.queue.depth())
    ann = await rdv.connect("ann")
    await ann.send(match_id, "takes the only slot")
    await wait_until(lambda: len(fake.messages()) == 1)
    await ann.send(match_id, "finds the provider full")
    line = 'rendezvous_push_shed_total{provider="fake"}'

    async def shed() -> bool:
        return await metric(rdv, http, line) == 1.0

    await wait_until(shed)
    fake.gate.set()
    assert await stays(lambda: len(fake.messages()) == 1)


async def test_a_full_queue_sheds_with_a_metric(make_node: MakeNode, http: Apis) -> None:
    fake = FakePusher(sent)
    fake.gate = asyncio.Event()
    rdv = await make_node({"apns": fake, "fcm": fake}, push_queue_max=1, push_workers=1,
                          push_coalesce_s=0)
    match_id = await http.pair(rdv, "ann", "bob")
    await http(rdv, "bob").put_device("tok-1", "apns")
    await wait_until(rdv.node.services.pushes.queue.idle)
    line = 'rendezvous_push_shed_total{provider="queue"}'
    before = await metric(rdv, http, line)  # the pair's second match job may have been shed
    ann = await rdv.connect("ann")
    await ann.send(match_id, "taken by the one worker")
    await wait_until(lambda: len(fake.messages()) == 1)
    await ann.send(match_id, "finds the queue full")  # the worker's job still counts

    async def shed() -> bool:
        return await metric(rdv, http, line) == before + 1

    await wait_until(shed)
    fake.gate.set()
    assert await stays(lambda: len(fake.messages()) == 1)


# -- configuration --------------------------------------------------------------------------
@pytest.mark.parametrize(("settings", "named"), [
    ({"apns_key_file": Path("k.p8"), "apns_topic": "app"}, "apns_key_id, apns_team_id"),
    ({"apns_key_file": Path("k.p8"), "apns_key_id": "K", "apns_team_id": "T"}, "apns_topic"),
    ({"apns_cert_file": Path("c.pem"), "apns_key_file": Path("k.p8"), "apns_key_id": "K",
      "apns_team_id": "T", "apns_topic": "app"}, "apns_key_file and apns_cert_file"),
    ({"apns_server": "127.0.0.1:9"}, "apns_server"),
    ({"apns_cert_file": Path("c.pem"), "apns_topic": "app", "apns_server": "nohost"},
     "apns_server"),
    ({"fcm_url": "http://127.0.0.1:9/"}, "fcm_url"),
    ({"push_workers": 0}, "push_workers"),
    ({"apns_max_connections": 0}, "apns_max_connections"),
    ({"push_coalesce_s": -1.0}, "push_coalesce_s"),
    ({"push_claim_idle_s": 0.0}, "push_claim_idle_s"),
])
def test_bad_push_settings_are_named(tmp_path: Path, settings: dict[str, Any],
                                     named: str) -> None:
    from server.config import ConfigError

    with pytest.raises(ConfigError, match=named):
        config_for(tmp_path, **settings).validate()


@pytest.mark.parametrize("setting", ["apns_key_file", "apns_cert_file",
                                     "fcm_service_account_file"])
def test_a_missing_key_file_stops_the_node_naming_the_setting(tmp_path: Path,
                                                              setting: str) -> None:
    from server.config import ConfigError

    settings: dict[str, Any] = {setting: tmp_path / "nowhere.pem"}
    if setting == "apns_key_file":
        settings.update(apns_key_id="KEYID12345", apns_team_id="TEAM123456")
    if setting.startswith("apns"):
        settings["apns_topic"] = "com.example.app"
    with pytest.raises(ConfigError, match=f"{setting}: cannot read"):
        Node(config_for(tmp_path / "data", **settings))


async def test_provider_slots_take_a_batch_whole_and_serve_in_order() -> None:
    """A batch takes a slot per message at once (two batches can never each hold half of
    what they need); a later small send does not overtake a waiting batch."""
    slots = ProviderSlots(max_in_flight=3, max_waiting=10)
    release = {name: asyncio.Event() for name in "abc"}
    entered: list[str] = []
    peak = 0

    async def use(name: str, n: int) -> None:
        nonlocal peak
        async with slots.slot(n):
            entered.append(name)
            peak = max(peak, slots.in_flight)
            await release[name].wait()

    a = asyncio.create_task(use("a", 2))
    await asyncio.sleep(0)
    b = asyncio.create_task(use("b", 2))
    c = asyncio.create_task(use("c", 1))
    await asyncio.sleep(0.01)
    assert entered == ["a"] and slots.waiting == 3  # c waits behind b, though one is free
    release["a"].set()
    await asyncio.sleep(0.01)
    assert entered == ["a", "b", "c"] and slots.in_flight == 3 and peak == 3
    release["b"].set()
    release["c"].set()
    await asyncio.gather(a, b, c)
    assert slots.in_flight == 0 and slots.waiting == 0


async def test_provider_slots_clip_a_batch_to_the_cap_and_forget_a_cancelled_waiter() -> None:
    slots = ProviderSlots(max_in_flight=2, max_waiting=10)
    async with slots.slot(500):  # more than the cap: the whole cap, not a deadlock
        assert slots.in_flight == 2 and slots.full() is False
        waiter = asyncio.create_task(slots.slot(1).__aenter__())
        await asyncio.sleep(0.01)
        assert slots.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.waiting == 0
    assert slots.in_flight == 0
    async with slots.slot():
        assert slots.in_flight == 1


async def test_a_job_to_or_about_an_erased_user_is_dropped(rdv: Harness, http: Apis) -> None:
    """A job queued before (or racing) an erasure: the worker drops it, nothing is sent."""
    from push.queue import PushJob
    from storage import Message

    match_id = await http.pair(rdv, "ann", "bob")
    await register_both(http, rdv, "bob")
    await register_both(http, rdv, "cat")
    rdv.node.services.erasure.on_control({"k": "erased", "u": "ann"})  # heard from a node
    about_ann = Message(match_id, 1, "ann", "c", 1, "x")
    await rdv.node.backends.push_queue.put(PushJob.for_message("bob", about_ann))
    await rdv.node.backends.push_queue.put(PushJob.for_message("ann", about_ann))
    line = 'rendezvous_push_skipped_total{reason="erased"}'
    assert await wait_until(lambda: rdv.node.services.pushes.queue.depth() == 0)
    await wait_until(lambda: metric(rdv, http, line))
    assert await metric(rdv, http, line) == 2
    assert records(rdv, "bob") == [] and records(rdv, "ann") == []
    # and a job to someone else still goes
    other = Message("m-other", 2, "dan", "c2", 2, "y")
    await rdv.node.backends.push_queue.put(PushJob.for_message("cat", other))
    assert await wait_until(lambda: len(records(rdv, "cat", "message")) == 2)
