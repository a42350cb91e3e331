"""ApnsPusher: the real aioapns against the APNS look-alike, one test per answer row, and
the classification table on its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from push.apns import ApnsPusher, apns_id, classify_apns, render_apns
from push.base import Notification, Outcome, PushResult, retry_after_seconds
from storage import Device
from tests.push_servers.apns import ApnsLookalike
from tests.push_servers.tls import ec_private_key_pem

TOKEN = "a0b1c2d3" * 8
DEVICE = Device(user="ana", token=TOKEN, platform="apns")


def note(push_id: str = "msg:m1:1:dev", **fields: object) -> Notification:
    base: dict[str, object] = {"push_id": push_id, "kind": "message", "match_id": "m1",
                               "loc_key": "rdv.message.new", "collapse_id": "m:m1",
                               "badge": 4, "data": {"t": "msg", "m": "m1", "id": "1"}}
    base.update(fields)
    return Notification(**base)  # type: ignore[arg-type]


@pytest.fixture
async def apns() -> AsyncIterator[ApnsLookalike]:
    server = ApnsLookalike()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def pusher(apns: ApnsLookalike) -> AsyncIterator[ApnsPusher]:
    pusher = ApnsPusher(**apns.pusher_kwargs(), timeout_s=5.0)
    await pusher.start()
    yield pusher
    await pusher.close()


# -- the classification table, pure ---------------------------------------------------------

@pytest.mark.parametrize(("status", "reason", "retry_after", "expected"), [
    (200, "", None, PushResult(Outcome.SENT)),
    ("200", None, None, PushResult(Outcome.SENT)),
    (410, "Unregistered", None, PushResult(Outcome.DEAD_TOKEN, "Unregistered")),
    (410, "ExpiredToken", None, PushResult(Outcome.DEAD_TOKEN, "ExpiredToken")),
    (400, "BadDeviceToken", None, PushResult(Outcome.DEAD_TOKEN, "BadDeviceToken")),
    (400, "DeviceTokenNotForTopic", None,
     PushResult(Outcome.CONFIG_ERROR, "DeviceTokenNotForTopic")),
    (400, "TopicDisallowed", None, PushResult(Outcome.CONFIG_ERROR, "TopicDisallowed")),
    (400, "MissingTopic", None, PushResult(Outcome.CONFIG_ERROR, "MissingTopic")),
    (403, "InvalidProviderToken", None,
     PushResult(Outcome.CONFIG_ERROR, "InvalidProviderToken")),
    (403, "ExpiredProviderToken", None,
     PushResult(Outcome.CONFIG_ERROR, "ExpiredProviderToken")),
    (403, "BadCertificate", None, PushResult(Outcome.CONFIG_ERROR, "BadCertificate")),
    (429, "TooManyRequests", "30", PushResult(Outcome.RETRY, "TooManyRequests", 30.0)),
    (429, "TooManyRequests", None, PushResult(Outcome.RETRY, "TooManyRequests")),
    (429, "TooManyRequests", "soon", PushResult(Outcome.RETRY, "TooManyRequests")),
    (500, "InternalServerError", None, PushResult(Outcome.RETRY, "InternalServerError")),
    (503, "ServiceUnavailable", "2", PushResult(Outcome.RETRY, "ServiceUnavailable", 2.0)),
    (413, "PayloadTooLarge", None, PushResult(Outcome.REJECTED, "PayloadTooLarge")),
    (400, "BadCollapseId", None, PushResult(Outcome.REJECTED, "BadCollapseId")),
    (400, "BadExpirationDate", None, PushResult(Outcome.REJECTED, "BadExpirationDate")),
    (405, "", None, PushResult(Outcome.REJECTED, "405")),
    ("", None, None, PushResult(Outcome.RETRY, "no status ('')")),
])
def test_classify_apns_table(status: int | str, reason: str | None, retry_after: str | None,
                             expected: PushResult) -> None:
    assert classify_apns(status, reason, retry_after) == expected


def test_retry_after_seconds() -> None:
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("-3") is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds(None) is None


def test_render_is_discreet_by_default() -> None:
    payload = render_apns(note())
    assert payload["aps"] == {"alert": {"loc-key": "rdv.message.new"}, "sound": "default",
                              "badge": 4, "thread-id": "m1"}
    assert payload["t"] == "msg" and payload["m"] == "m1"
    with_preview = render_apns(note(body="hi there", badge=None, data={"aps": "x"}))
    assert with_preview["aps"]["alert"] == {"loc-key": "rdv.message.new", "body": "hi there"}
    assert "badge" not in with_preview["aps"]  # unknown count: leave the app's badge alone
    assert with_preview["aps"] != "x"  # custom data never overwrites aps


def test_apns_id_is_a_stable_uuid_per_push() -> None:
    first = apns_id("msg:m1:1:dev")
    assert first == apns_id("msg:m1:1:dev")
    assert first != apns_id("msg:m1:2:dev")
    assert uuid.UUID(first).version == 5


def test_constructor_names_the_missing_credentials() -> None:
    with pytest.raises(ValueError, match="key_pem, key_id and team_id"):
        ApnsPusher(topic="t", key_pem="k")
    with pytest.raises(ValueError, match="not host:port"):
        ApnsPusher(topic="t", cert_pem="c", server="nohost")


# -- the real aioapns against the look-alike ---------------------------------------------

async def test_success_sends_the_rendered_alert(apns: ApnsLookalike,
                                                pusher: ApnsPusher) -> None:
    result = await pusher.send(DEVICE, note())
    assert result == PushResult(Outcome.SENT)
    [request] = apns.requests
    assert request.token == TOKEN
    assert request.headers["apns-collapse-id"] == "m:m1"
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-topic"] == apns.topic
    assert request.headers["apns-id"] == apns_id("msg:m1:1:dev")
    assert int(request.headers["apns-expiration"]) > 0
    aps = request.payload["aps"]
    assert aps["alert"] == {"loc-key": "rdv.message.new"}  # no body, no name by default
    assert aps["badge"] == 4
    assert aps["thread-id"] == "m1"
    assert request.payload["m"] == "m1"


async def test_preview_body_only_when_set(apns: ApnsLookalike, pusher: ApnsPusher) -> None:
    assert (await pusher.send(DEVICE, note(body="see you at 8"))).outcome is Outcome.SENT
    assert apns.requests[0].payload["aps"]["alert"]["body"] == "see you at 8"


async def test_redelivered_push_keeps_its_apns_id(apns: ApnsLookalike,
                                                  pusher: ApnsPusher) -> None:
    await pusher.send(DEVICE, note())
    await pusher.send(DEVICE, note())
    await pusher.send(DEVICE, note(push_id="msg:m1:2:dev"))
    ids = [r.headers["apns-id"] for r in apns.requests]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize(("status", "reason", "outcome"), [
    (400, "BadDeviceToken", Outcome.DEAD_TOKEN),
    (400, "DeviceTokenNotForTopic", Outcome.CONFIG_ERROR),
    (410, "Unregistered", Outcome.DEAD_TOKEN),
    (500, "InternalServerError", Outcome.RETRY),
    (503, "ServiceUnavailable", Outcome.RETRY),
    (413, "PayloadTooLarge", Outcome.REJECTED),
])
async def test_error_answers(apns: ApnsLookalike, pusher: ApnsPusher, status: int, reason: str,
                             outcome: Outcome) -> None:
    apns.script(TOKEN, status, reason)
    assert await pusher.send(DEVICE, note()) == PushResult(outcome, reason)
    # the script is used up: the next push for the token goes through
    assert (await pusher.send(DEVICE, note())).outcome is Outcome.SENT
    assert len(apns.requests) == 2


async def test_too_many_requests_carries_retry_after(apns: ApnsLookalike,
                                                     pusher: ApnsPusher) -> None:
    apns.script(TOKEN, 429, "TooManyRequests", retry_after=17, times=2)
    first = await pusher.send(DEVICE, note())
    second = await pusher.send(DEVICE, note())
    assert first == second == PushResult(Outcome.RETRY, "TooManyRequests", 17.0)
    apns.script(TOKEN, 429, "TooManyRequests")  # no header: the dispatcher's own backoff
    assert await pusher.send(DEVICE, note()) == PushResult(Outcome.RETRY, "TooManyRequests")
    assert (await pusher.send(DEVICE, note())).outcome is Outcome.SENT


async def test_wrong_signing_key_is_a_config_error(apns: ApnsLookalike) -> None:
    kwargs = apns.pusher_kwargs() | {"key_pem": ec_private_key_pem()}
    pusher = ApnsPusher(**kwargs)
    await pusher.start()
    try:
        result = await pusher.send(DEVICE, note())
    finally:
        await pusher.close()
    assert result == PushResult(Outcome.CONFIG_ERROR, "InvalidProviderToken")
    assert apns.auth_failures == 1 and apns.requests == []


async def test_wrong_topic_is_a_config_error(apns: ApnsLookalike) -> None:
    pusher = ApnsPusher(**apns.pusher_kwargs() | {"topic": "com.example.other"})
    await pusher.start()
    try:
        result = await pusher.send(DEVICE, note())
    finally:
        await pusher.close()
    assert result == PushResult(Outcome.CONFIG_ERROR, "TopicDisallowed")


async def test_certificate_auth(apns: ApnsLookalike) -> None:
    pusher = ApnsPusher(topic=apns.topic, cert_pem=apns.client_cert_pem, server=apns.server,
                        ca_file=apns.ca_file)
    await pusher.start()
    try:
        assert (await pusher.send(DEVICE, note())).outcome is Outcome.SENT
    finally:
        await pusher.close()
    assert "authorization" not in apns.requests[0].headers


async def test_untrusted_server_certificate_is_a_retry(apns: ApnsLookalike) -> None:
    kwargs = apns.pusher_kwargs() | {"ca_file": None}  # the test CA is not trusted
    pusher = ApnsPusher(**kwargs, timeout_s=5.0)
    await pusher.start()
    try:
        result = await pusher.send(DEVICE, note())
    finally:
        await pusher.close()
    assert result.outcome is Outcome.RETRY and result.reason.startswith("transport")
    assert apns.requests == []


async def test_stopped_server_is_a_retry_within_the_timeout(apns: ApnsLookalike) -> None:
    pusher = ApnsPusher(**apns.pusher_kwargs(), timeout_s=0.5)
    await pusher.start()
    await apns.stop()
    try:
        result = await pusher.send(DEVICE, note())
    finally:
        await pusher.close()
    assert result.outcome is Outcome.RETRY
    assert result.reason in {"timeout", "transport: MaxAttemptsExceeded"}


async def test_concurrent_sends_share_connections(apns: ApnsLookalike,
                                                  pusher: ApnsPusher) -> None:
    devices = [Device("u", f"{i:064x}", "apns") for i in range(50)]
    results = await asyncio.gather(*(pusher.send(d, note(push_id=f"p{i}"))
                                     for i, d in enumerate(devices)))
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert sorted(r.token for r in apns.requests) == sorted(d.token for d in devices)


async def test_send_before_start_is_a_retry() -> None:
    pusher = ApnsPusher(topic="t", cert_pem="unused")
    assert (await pusher.send(DEVICE, note())).outcome is Outcome.RETRY
