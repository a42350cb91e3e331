"""Validly signed tokens with odd claims are refused like any bad token (docs/protocol.md,
"Tokens"): `unauthorized` and close 4001 on the WebSocket, 401 on the HTTP API, an answer to
`refresh`, each with a message that names the claim, and never an internal error or a
traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from client.errors import ServerError
from tests.conftest import SECRET, Harness, NodeFactory
from tests.server.test_auth import assert_refused, hand_made


def odd(**claims: Any) -> str:
    """A token signed with the node's own secret whose claims are `claims` over good ones."""
    now = int(time.time())
    payload = {"sub": "mallory", "iat": now, "exp": now + 3600, **claims}
    return hand_made({"alg": "HS256", "typ": "JWT"}, payload, SECRET.encode())


# kind -> (the claims, the claim the refusal must name)
ODD_CLAIMS: dict[str, tuple[dict[str, Any], str]] = {
    "exp-numeric-string": ({"exp": "9999999999"}, "exp"),
    "exp-10^30": ({"exp": 10**30}, "exp"),
    "exp-2^64+1": ({"exp": 2**64 + 1}, "exp"),
    "exp-1e300": ({"exp": 1e300}, "exp"),
    "exp-infinity": ({"exp": float("inf")}, "exp"),
    "exp-nan": ({"exp": float("nan")}, "exp"),
    "exp-true": ({"exp": True}, "exp"),
    "exp-list": ({"exp": [9999999999]}, "exp"),
    "exp-negative": ({"exp": -1}, "exp"),
    "nbf-numeric-string": ({"nbf": "0"}, "nbf"),
    "nbf-10^30": ({"nbf": 10**30}, "nbf"),
    "iat-numeric-string": ({"iat": "0"}, "iat"),
    "iat-1e300": ({"iat": 1e300}, "iat"),
    "sub-lone-surrogate": ({"sub": "\ud800"}, "sub"),
    "sub-surrogate-inside": ({"sub": "ann\udfffe"}, "sub"),
    "sub-nul": ({"sub": "ann\x00"}, "sub"),
    "sub-newline": ({"sub": "ann\nbob"}, "sub"),
    "sub-carriage-return": ({"sub": "ann\r"}, "sub"),
    "sub-del": ({"sub": "ann\x7f"}, "sub"),
    "sub-line-separator": ({"sub": "ann\u2028"}, "sub"),
    "sub-only-spaces": ({"sub": "   "}, "sub"),
    "sub-only-tab-like-space": ({"sub": "\u3000"}, "sub"),
    "sub-object": ({"sub": {"id": "ann"}}, "sub"),
    "scope-number": ({"scope": 5}, "scope"),
    "scope-object": ({"scope": {"admin": True}}, "scope"),
    "scope-list-of-numbers": ({"scope": ["admin", 1]}, "scope"),
}
KINDS = sorted(ODD_CLAIMS)


def token_for(kind: str) -> tuple[str, str]:
    claims, named = ODD_CLAIMS[kind]
    return odd(**claims), named


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Callable[[], None]:
    """After the test body: the node logged no error (a traceback is an ERROR record)."""
    caplog.set_level(logging.INFO)

    def check() -> None:
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]
    return check


@pytest.mark.parametrize("auth", ["header", "frame"])
@pytest.mark.parametrize("kind", KINDS)
async def test_odd_claims_are_refused_on_the_websocket(
        rdv: Harness, subprotocol: str, auth: str, kind: str,
        no_tracebacks: Callable[[], None]) -> None:
    token, named = token_for(kind)
    refused = await assert_refused(rdv, token, subprotocol, auth)
    assert refused.error_frame is not None
    assert refused.error_frame["msg"].startswith(f"{named} "), refused.error_frame
    assert (await rdv.connect("fine", subprotocol=subprotocol)).user == "fine"
    no_tracebacks()


async def test_odd_claims_in_refresh_are_answered_unauthorized(
        node_factory: NodeFactory, harness_for: Callable[..., Harness], subprotocol: str,
        no_tracebacks: Callable[[], None]) -> None:
    rdv = harness_for(await node_factory(refresh_burst=len(KINDS) + 1))
    client = await rdv.connect("mallory", subprotocol=subprotocol)
    for kind in KINDS:
        token, named = token_for(kind)
        with pytest.raises(ServerError) as info:
            await client.refresh(token)
        assert info.value.code == "unauthorized", (kind, info.value.frame)
        assert info.value.frame["msg"].startswith(f"{named} "), (kind, info.value.frame)
    assert (await client.ping())["t"] == "pong"
    assert (await client.refresh(rdv.token("mallory")))["t"] == "ok"  # a good one still works
    no_tracebacks()


@pytest.mark.parametrize("kind", KINDS)
async def test_odd_claims_are_refused_on_http_with_401(
        rdv: Harness, kind: str, no_tracebacks: Callable[[], None]) -> None:
    token, named = token_for(kind)
    api = rdv.http(None, token=token)
    for method, path, body in (("GET", "/v1/matches", None),
                               ("POST", "/v1/swipes", {"target": "bob", "action": "like"}),
                               ("PUT", "/v1/me/settings", {"show_online": False})):
        response = await api.raw(method, path, json=body)
        assert response.status_code == 401, (kind, method, path, response.text)
        error = response.json()["error"]
        assert error["code"] == "unauthorized", error
        assert error["msg"].startswith(f"{named} "), error
    no_tracebacks()


@pytest.mark.parametrize("sub", ["a b", "ann-\u00e9-\U0001f600", " ann", "u" * 64])
async def test_ordinary_subs_are_still_accepted(rdv: Harness, sub: str) -> None:
    """Spaces inside, non-ASCII letters and emoji are fine: only controls, lone surrogates
    and whitespace-only subs are refused."""
    client = await rdv.connect("x", token=odd(sub=sub))
    assert client.welcome["user"] == sub
    assert (await rdv.http(None, token=odd(sub=sub)).raw("GET", "/v1/matches")).status_code \
        == 200


async def test_a_float_exp_is_accepted_and_welcome_carries_an_integer(
        rdv: Harness, subprotocol: str) -> None:
    exp = time.time() + 600.75
    client = await rdv.connect("x", token=odd(exp=exp), subprotocol=subprotocol)
    assert client.welcome["exp"] == int(exp) and type(client.welcome["exp"]) is int
