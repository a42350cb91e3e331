"""FcmPusher: the real firebase-admin against the FCM v1 and OAuth look-alike, one test per
answer row, and the classification on its own."""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from firebase_admin import exceptions, messaging
from google.auth.exceptions import RefreshError, TransportError

from push.base import Notification, Outcome, PushResult, retry_after_seconds
from push.fcm import FcmPusher, classify_fcm, render_fcm
from storage import Device
from tests.push_servers.fcm import INVALID_TOKEN_MESSAGE, FcmLookalike

TOKEN = "fcm-dXk0Q2xyz:APA91bHexample_token-0123456789"
DEVICE = Device(user="ben", token=TOKEN, platform="fcm")


def note(**fields: object) -> Notification:
    base: dict[str, object] = {"push_id": "msg:m1:1:dev", "kind": "message", "match_id": "m1",
                               "loc_key": "rdv.message.new", "collapse_id": "m:m1",
                               "badge": 2, "data": {"t": "msg", "m": "m1", "id": "1"}}
    base.update(fields)
    return Notification(**base)  # type: ignore[arg-type]


@pytest.fixture
async def pusher(fcm: FcmLookalike) -> AsyncIterator[FcmPusher]:
    pusher = FcmPusher(**fcm.pusher_kwargs(), timeout_s=10.0)
    await pusher.start()
    yield pusher
    await pusher.close()


# -- classification, pure ---------------------------------------------------------------

def _http_error(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "http://fcm.test/send")
    return httpx.Response(status, headers=headers, request=request)


@pytest.mark.parametrize(("error", "outcome"), [
    (None, Outcome.SENT),
    (messaging.UnregisteredError("gone"), Outcome.DEAD_TOKEN),
    (messaging.SenderIdMismatchError("other project"), Outcome.CONFIG_ERROR),
    (messaging.ThirdPartyAuthError("apns key"), Outcome.CONFIG_ERROR),
    (messaging.QuotaExceededError("slow down"), Outcome.RETRY),
    (exceptions.UnavailableError("down"), Outcome.RETRY),
    (exceptions.InternalError("oops"), Outcome.RETRY),
    (exceptions.DeadlineExceededError("slow"), Outcome.RETRY),
    (exceptions.UnknownError("socket"), Outcome.RETRY),
    (exceptions.UnauthenticatedError("bearer"), Outcome.CONFIG_ERROR),
    (exceptions.PermissionDeniedError("api off"), Outcome.CONFIG_ERROR),
    (exceptions.NotFoundError("project"), Outcome.CONFIG_ERROR),
    (exceptions.InvalidArgumentError("Request contains an invalid argument."),
     Outcome.REJECTED),
    (exceptions.InvalidArgumentError(INVALID_TOKEN_MESSAGE), Outcome.DEAD_TOKEN),
    (exceptions.AbortedError("aborted"), Outcome.REJECTED),
    (RefreshError("internal_failure", retryable=True), Outcome.RETRY),
    (RefreshError("invalid_grant", retryable=False), Outcome.CONFIG_ERROR),
    (exceptions.UnknownError("batch", cause=RefreshError("invalid_grant")),
     Outcome.CONFIG_ERROR),
    (TransportError("dns"), Outcome.RETRY),
    (ValueError("data values must be strings"), Outcome.REJECTED),
    (OSError("reset"), Outcome.RETRY),
])
def test_classify_fcm_table(error: BaseException | None, outcome: Outcome) -> None:
    assert classify_fcm(error).outcome is outcome


def test_quota_retry_after_from_the_http_response() -> None:
    error = messaging.QuotaExceededError("slow", http_response=_http_error(
        429, {"Retry-After": "42"}))
    assert classify_fcm(error).retry_after_s == 42.0
    no_header = messaging.QuotaExceededError("slow", http_response=_http_error(429))
    assert classify_fcm(no_header).retry_after_s is None
    # a Retry-After on a configuration error does not make it a retry
    config = messaging.SenderIdMismatchError("x", http_response=_http_error(
        403, {"Retry-After": "5"}))
    assert classify_fcm(config) == PushResult(Outcome.CONFIG_ERROR, config_reason(config))


def config_reason(error: exceptions.FirebaseError) -> str:
    return f"{type(error).__name__} ({error.code})"


def test_retry_after_both_forms() -> None:
    now = time.time()
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("later") is None
    date = email.utils.formatdate(now + 30, usegmt=True)
    seconds = retry_after_seconds(date, now=now)
    assert seconds is not None and 29 <= seconds <= 31
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_render_is_discreet_and_collapses() -> None:
    encoded = messaging._MessagingService.encode_message(render_fcm(TOKEN, note(), 600))
    assert encoded["token"] == TOKEN
    android = encoded["android"]
    assert android["collapse_key"] == "m:m1"
    assert android["priority"] == "high"
    assert android["ttl"] == "600s"
    shown = android["notification"]
    assert shown["body_loc_key"] == "rdv.message.new"
    assert shown["title_loc_key"] == "rdv.message.new.title"
    assert "body" not in shown and "title" not in shown
    assert shown["notification_count"] == 2
    assert shown["tag"] == "m:m1"
    assert encoded["data"] == {"t": "msg", "m": "m1", "id": "1"}
    preview = messaging._MessagingService.encode_message(
        render_fcm(TOKEN, note(body="hello", badge=None, data={"n": 3}), 600))
    assert preview["android"]["notification"]["body"] == "hello"
    assert "notification_count" not in preview["android"]["notification"]
    assert preview["data"] == {"n": "3"}  # FCM data values are strings


# -- the real firebase-admin against the look-alike ---------------------------------------

async def test_success_sends_the_rendered_message(fcm: FcmLookalike,
                                                  pusher: FcmPusher) -> None:
    assert await pusher.send(DEVICE, note()) == PushResult(Outcome.SENT)
    [request] = fcm.requests
    assert request.token == TOKEN
    assert request.headers["authorization"].startswith("Bearer ya29.")
    android = request.message["android"]
    assert android["collapse_key"] == "m:m1"
    assert android["priority"] == "high"
    shown = android["notification"]
    assert shown["body_loc_key"] == "rdv.message.new"
    assert shown["title_loc_key"] == "rdv.message.new.title"
    assert "body" not in shown and "title" not in shown
    assert "notification" not in request.message  # no cross-platform text block either
    assert shown["notification_count"] == 2
    assert request.message["data"] == {"t": "msg", "m": "m1", "id": "1"}
    assert fcm.token_requests == 1


async def test_preview_body_only_when_set(fcm: FcmLookalike, pusher: FcmPusher) -> None:
    assert (await pusher.send(DEVICE, note(body="see you at 8"))).outcome is Outcome.SENT
    assert fcm.requests[0].message["android"]["notification"]["body"] == "see you at 8"


async def test_access_token_is_reused(fcm: FcmLookalike, pusher: FcmPusher) -> None:
    for _ in range(3):
        assert (await pusher.send(DEVICE, note())).outcome is Outcome.SENT
    assert fcm.token_requests == 1
    assert len({r.headers["authorization"] for r in fcm.requests}) == 1


@pytest.mark.parametrize(("status", "code", "outcome"), [
    (404, "UNREGISTERED", Outcome.DEAD_TOKEN),
    (403, "SENDER_ID_MISMATCH", Outcome.CONFIG_ERROR),
    (400, "INVALID_ARGUMENT", Outcome.REJECTED),
])
async def test_error_answers(fcm: FcmLookalike, pusher: FcmPusher, status: int, code: str,
                             outcome: Outcome) -> None:
    fcm.script(TOKEN, status, code)
    result = await pusher.send(DEVICE, note())
    assert result.outcome is outcome
    assert result.retry_after_s is None
    assert len(fcm.requests) == 1  # the library retries 500 and 503 only
    assert (await pusher.send(DEVICE, note())).outcome is Outcome.SENT


async def test_sends_go_over_http2(fcm: FcmLookalike, pusher: FcmPusher) -> None:
    """firebase-admin's httpx client negotiates h2 with the look-alike, as with Google."""
    devices = [Device("u", f"token-{i}", "fcm") for i in range(20)]
    results = await pusher.send_many(devices, note())
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert fcm.protocols == {"h2"}
    assert len(fcm.requests) == 20 and fcm.token_requests == 1


async def test_a_batch_with_dead_tokens(fcm: FcmLookalike, pusher: FcmPusher) -> None:
    """Per message outcomes of one send_each_async call: an UNREGISTERED and a malformed
    token are dead, their neighbours in the batch are sent."""
    devices = [Device("u", f"token-{i}", "fcm") for i in range(5)]
    fcm.script("token-1", 404, "UNREGISTERED")
    fcm.script("token-3", 400, "INVALID_ARGUMENT", message=INVALID_TOKEN_MESSAGE)
    results = await pusher.send_many(devices, note())
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.DEAD_TOKEN, Outcome.SENT,
                                            Outcome.DEAD_TOKEN, Outcome.SENT]
    assert results[1].reason == "UnregisteredError (NOT_FOUND)"
    assert sorted(r.token for r in fcm.requests) == [f"token-{i}" for i in range(5)]


async def test_quota_exceeded_in_a_batch_carries_retry_after(fcm: FcmLookalike,
                                                             pusher: FcmPusher) -> None:
    """A 429 is not retried by the library (it ignores Retry-After): the message is a RETRY
    after the header's seconds, for the dispatcher to queue; the others are sent."""
    devices = [Device("u", f"token-{i}", "fcm") for i in range(3)]
    fcm.script("token-1", 429, "QUOTA_EXCEEDED", retry_after=33)
    results = await pusher.send_many(devices, note())
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.RETRY, Outcome.SENT]
    assert results[1].retry_after_s == 33.0
    assert results[1].reason.startswith("QuotaExceededError")
    assert len(fcm.requests) == 3


async def test_a_500_mid_batch_is_retried_by_the_library(fcm: FcmLookalike,
                                                         pusher: FcmPusher) -> None:
    """firebase-admin retries a 500 or 503 itself (at once, then after 1, 2 and 4 s): one
    failure in the middle of a batch costs that message a second request, nothing else."""
    devices = [Device("u", f"token-{i}", "fcm") for i in range(5)]
    fcm.script("token-2", 500, "INTERNAL")
    results = await pusher.send_many(devices, note())
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert Counter(r.token for r in fcm.requests) == Counter(
        {"token-0": 1, "token-1": 1, "token-2": 2, "token-3": 1, "token-4": 1})


@pytest.mark.slow
async def test_a_5xx_that_persists_is_a_retry_with_its_retry_after(
        fcm: FcmLookalike, pusher: FcmPusher) -> None:
    """Past the library's four retries (7 s) the answer is the dispatcher's: RETRY, with the
    last answer's Retry-After; the other messages of the batch were sent meanwhile."""
    devices = [Device("u", f"token-{i}", "fcm") for i in range(3)]
    fcm.script("token-0", 503, "UNAVAILABLE", retry_after=4, times=5)
    fcm.script("token-2", 500, "INTERNAL", times=5)
    results = await pusher.send_many(devices, note())
    assert results == [PushResult(Outcome.RETRY, "UnavailableError (UNAVAILABLE)", 4.0),
                       PushResult(Outcome.SENT),
                       PushResult(Outcome.RETRY, "InternalError (INTERNAL)", None)]
    assert Counter(r.token for r in fcm.requests) == Counter(
        {"token-0": 5, "token-1": 1, "token-2": 5})


async def test_401_third_party_auth_error_is_a_config_error(fcm: FcmLookalike,
                                                            pusher: FcmPusher) -> None:
    """THIRD_PARTY_AUTH_ERROR (the app's APNs credentials in Firebase) is a 401 too: the
    library asks for a new token twice, which the credential notes without blocking the
    loop; the answer is a configuration error."""
    fcm.script(TOKEN, 401, "THIRD_PARTY_AUTH_ERROR", times=3)
    result = await pusher.send(DEVICE, note())
    assert result.outcome is Outcome.CONFIG_ERROR
    assert result.reason.startswith("ThirdPartyAuthError")
    assert len(fcm.requests) == 3 and fcm.token_requests == 1


async def test_a_revoked_access_token_is_replaced(fcm: FcmLookalike,
                                                  pusher: FcmPusher) -> None:
    """A 401 for the bearer: a new token, fetched in a worker thread, and the refused
    message sent once more with it."""
    assert (await pusher.send(DEVICE, note())).outcome is Outcome.SENT
    fcm.revoke_tokens()
    devices = [DEVICE, Device("cy", "other-token", "fcm")]
    assert [r.outcome for r in await pusher.send_many(devices, note())] == [Outcome.SENT] * 2
    # each refused message: the first try and the library's two with the same bearer
    assert fcm.unauthorised == 6 and fcm.token_requests == 2
    assert pusher.refreshes == 2
    assert len({r.headers["authorization"] for r in fcm.requests}) == 2


async def test_a_refused_fresh_token_is_a_config_error(fcm: FcmLookalike,
                                                       pusher: FcmPusher) -> None:
    """The token endpoint issues tokens the send endpoint refuses (a project mix-up): one
    new token, then UNAUTHENTICATED is final, a configuration error."""
    original = fcm.issue_token

    def useless(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        status, answer = original(form)
        fcm.revoke_tokens()
        return status, answer

    fcm.issue_token = useless  # type: ignore[method-assign]
    result = await pusher.send(DEVICE, note())
    assert result.outcome is Outcome.CONFIG_ERROR
    assert result.reason.startswith("UnauthenticatedError")
    assert fcm.token_requests == 2


async def test_malformed_token_is_dead(fcm: FcmLookalike, pusher: FcmPusher) -> None:
    fcm.script(TOKEN, 400, "INVALID_ARGUMENT", message=INVALID_TOKEN_MESSAGE)
    assert (await pusher.send(DEVICE, note())).outcome is Outcome.DEAD_TOKEN


@pytest.mark.parametrize(("status", "outcome"), [(500, Outcome.RETRY),
                                                 (400, Outcome.CONFIG_ERROR)])
async def test_failing_token_endpoint(fcm: FcmLookalike, status: int,
                                      outcome: Outcome) -> None:
    fcm.token_endpoint_status = status
    pusher = FcmPusher(**fcm.pusher_kwargs())
    await pusher.start()
    try:
        results = await pusher.send_many([DEVICE, Device("cy", "other-token", "fcm")],
                                         note())
        assert [r.outcome for r in results] == [outcome, outcome]
        assert fcm.requests == []  # nothing went out without a token
        fcm.token_endpoint_status = 200  # the endpoint recovers: the next send works
        assert (await pusher.send(DEVICE, note())).outcome is Outcome.SENT
    finally:
        await pusher.close()


async def test_event_loop_runs_while_the_token_is_fetched(fcm: FcmLookalike) -> None:
    """The 5xx token endpoint makes google-auth retry for seconds; that happens in a
    thread, so other tasks keep running meanwhile."""
    fcm.token_endpoint_status = 500
    pusher = FcmPusher(**fcm.pusher_kwargs())
    await pusher.start()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        result = await pusher.send(DEVICE, note())
    finally:
        ticker.cancel()
        await pusher.close()
    assert result.outcome is Outcome.RETRY
    assert fcm.token_requests >= 2  # google-auth retried a 5xx
    assert ticks >= 5


async def test_send_many_is_one_batch(fcm: FcmLookalike, pusher: FcmPusher) -> None:
    devices = [Device("u", f"token-{i}", "fcm") for i in range(3)]
    fcm.script("token-1", 404, "UNREGISTERED")
    results = await pusher.send_many(devices, note())
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.DEAD_TOKEN, Outcome.SENT]
    assert sorted(r.token for r in fcm.requests) == ["token-0", "token-1", "token-2"]
    assert fcm.token_requests == 1
    assert await pusher.send_many([], note()) == []


async def test_service_account_from_a_file(fcm: FcmLookalike, tmp_path: Path) -> None:
    path = tmp_path / "account.json"
    path.write_text(json.dumps(fcm.service_account()))
    pusher = FcmPusher(service_account=str(path), fcm_url=fcm.fcm_url)
    await pusher.start()  # the project id comes from the file
    try:
        assert (await pusher.send(DEVICE, note())).outcome is Outcome.SENT
    finally:
        await pusher.close()


async def test_unknown_bearer_is_refused(fcm: FcmLookalike) -> None:
    """The look-alike only takes tokens it issued: a request with a made-up bearer is 401,
    which the pusher reports as a configuration error."""
    response = await asyncio.to_thread(_post_with_bearer, fcm, "ya29.made-up")
    assert response.status_code == 401
    assert fcm.unauthorised == 1 and fcm.requests == []
    assert classify_fcm(exceptions.UnauthenticatedError("401")).outcome is Outcome.CONFIG_ERROR


def _post_with_bearer(fcm: FcmLookalike, bearer: str) -> httpx.Response:
    body: dict[str, Any] = {"message": {"token": TOKEN}}
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=fcm.ca_file)) as client:
        return client.post(fcm.fcm_url.format(fcm.project_id), json=body,
                           headers={"Authorization": f"Bearer {bearer}"})


async def test_two_pushers_in_one_process(fcm: FcmLookalike) -> None:
    first = FcmPusher(**fcm.pusher_kwargs())
    second = FcmPusher(**fcm.pusher_kwargs())
    await first.start()
    await second.start()
    try:
        assert first.app_name != second.app_name
        assert (await first.send(DEVICE, note())).outcome is Outcome.SENT
        assert (await second.send(DEVICE, note())).outcome is Outcome.SENT
    finally:
        await first.close()
        await second.close()
    assert fcm.token_requests == 2
