"""The HTTP client against `httpx.MockTransport`: paths, bodies, id types and errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from client import HttpError, RendezvousHttp

BIG_ID = (1 << 60) + 1

Handler = Callable[[httpx.Request], httpx.Response]


def _api(handler: Handler, token: str | None = "tok") -> RendezvousHttp:
    return RendezvousHttp("http://rdv.test", token, transport=httpx.MockTransport(handler))


async def test_swipe_posts_json_with_bearer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"match": {"id": "m1", "peer": "bob", "ts": 5}})

    async with _api(handler) as api:
        result = await api.swipe("bob")
    assert result["match"]["id"] == "m1"
    assert seen[0].method == "POST" and seen[0].url.path == "/v1/swipes"
    assert seen[0].headers["Authorization"] == "Bearer tok"
    assert json.loads(seen[0].content) == {"target": "bob", "action": "like"}


async def test_no_token_sends_no_authorization() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, json={"error": {"code": "unauthorized", "msg": "no token"}})

    async with _api(handler, token=None) as api:
        with pytest.raises(HttpError) as info:
            await api.swipe("bob", "pass")
    assert "Authorization" not in seen[0].headers
    assert (info.value.status, info.value.code, info.value.msg) == (401, "unauthorized",
                                                                   "no token")
    assert info.value.retry_after is None


async def test_matches_converts_message_ids_only() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params == httpx.QueryParams({"limit": "2", "cursor": "c"})
        body = {"matches": [{"id": "123", "peer": "bob", "ts": 1, "unread": 0,
                             "last": {"id": str(BIG_ID), "from": "bob", "ts": 1}},
                            {"id": "456", "peer": "carol", "ts": 2, "unread": 0}],
                "next": "c2"}
        return httpx.Response(200, json=body)

    async with _api(handler) as api:
        result = await api.matches(limit=2, cursor="c")
    assert result["matches"][0]["id"] == "123"  # a match id stays a string
    assert result["matches"][0]["last"]["id"] == BIG_ID
    assert result["next"] == "c2"


async def test_messages_passes_before_and_converts_ids() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.raw_path.startswith(b"/v1/matches/m%2F1/messages?")
        assert request.url.params["before"] == str(BIG_ID)
        assert "limit" not in request.url.params
        return httpx.Response(200, json={"msgs": [{"id": str(BIG_ID - 1), "m": "m/1"}],
                                         "more": True})

    async with _api(handler) as api:
        result = await api.messages("m/1", before=BIG_ID)
    assert result["msgs"][0]["id"] == BIG_ID - 1 and result["more"] is True


async def test_no_content_routes_return_none() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(), request.content))
        return httpx.Response(204)

    async with _api(handler) as api:
        await api.unmatch("m1")
        await api.block("bob")
        await api.put_device("ab:cd", "apns", app="com.x", locale="fr")
        await api.put_device("t2", "fcm")
        await api.delete_device("ab:cd")
    assert seen == [
        ("DELETE", "/v1/matches/m1", b""),
        ("POST", "/v1/blocks", b'{"user":"bob"}'),
        ("PUT", "/v1/devices/ab%3Acd", b'{"platform":"apns","app":"com.x","locale":"fr"}'),
        ("PUT", "/v1/devices/t2", b'{"platform":"fcm"}'),
        ("DELETE", "/v1/devices/ab%3Acd", b""),
    ]


async def test_put_settings_returns_settings() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "PUT" and request.url.path == "/v1/me/settings"
        changes = json.loads(request.content)
        return httpx.Response(200, json={"show_online": True, "read_receipts": True,
                                         "push_previews": True, **changes})

    async with _api(handler) as api:
        settings = await api.put_settings(show_online=False)
    assert settings["show_online"] is False and settings["read_receipts"] is True


async def test_rate_limited_carries_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3"},
                              json={"error": {"code": "rate_limited", "msg": "slow"}})

    async with _api(handler) as api:
        with pytest.raises(HttpError) as info:
            await api.swipe("bob")
    assert info.value.status == 429 and info.value.code == "rate_limited"
    assert info.value.retry_after == 3.0


async def test_error_without_json_body_still_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    async with _api(handler) as api:
        with pytest.raises(HttpError) as info:
            await api.matches()
        response = await api.raw("GET", "/healthz")
    assert info.value.status == 502 and info.value.code is None
    assert info.value.msg == "bad gateway"
    assert response.status_code == 502
