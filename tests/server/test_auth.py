"""Authentication over real sockets: header and first-frame auth, every way a token can be
wrong, the asymmetric algorithms, key confusion, iss/aud, refresh and expiry, and the HTTP API.

A refused WebSocket always gets an `error` with code `unauthorized`, then close 4001.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from client import RendezvousClient, mint_token
from client.errors import ConnectionRejected, ServerError
from protocol.codec import codec_for
from protocol.limits import Limits
from server.config import JwtKey
from tests.conftest import SECRET, Harness, NodeFactory

OTHER_SECRET = "a-different-secret-of-enough-length-0123456789"
ISSUER = "https://id.rendezvous.example"
AUDIENCE = "rendezvous-chat"


# -- token building ---------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def claims(user: str = "mallory", ttl_s: int = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "iat": now, "exp": now + ttl_s, **extra}


def hand_made(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A JWT built without PyJWT (which refuses to make the malicious ones)."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    signature = b""
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def pem_private(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_public(key: Any) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


KEY_MAKERS: dict[str, Callable[[], Any]] = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@pytest.fixture(scope="module")
def keypairs() -> dict[str, tuple[bytes, str]]:
    """algorithm -> (private PEM, public PEM), made once for the module."""
    out = {}
    for alg, make in KEY_MAKERS.items():
        key = make()
        out[alg] = (pem_private(key), pem_public(key))
    return out


def signed(alg: str, private_pem: bytes, user: str = "asym-user", **extra: Any) -> str:
    return jwt.encode(claims(user, **extra), private_pem, algorithm=alg)


# -- assertions -------------------------------------------------------------------------------

async def assert_refused(rdv: Harness, token: str, subprotocol: str = "rdv.v1.msgpack",
                         auth: str = "header") -> ConnectionRejected:
    with pytest.raises(ConnectionRejected) as info:
        await rdv.connect("ignored", token=token, subprotocol=subprotocol, auth=auth)
    assert info.value.code == 4001, info.value
    assert info.value.error_code == "unauthorized", info.value
    return info.value


def check_welcome(welcome: dict[str, Any], rdv: Harness, user: str, token: str) -> None:
    assert welcome["t"] == "welcome"
    assert welcome["user"] == user
    assert isinstance(welcome["session"], str) and welcome["session"]
    assert welcome["node"] == rdv.node.config.node
    assert welcome["hb"] == rdv.node.config.heartbeat_s
    assert welcome["exp"] == jwt.decode(token, options={"verify_signature": False})["exp"]
    assert welcome["limits"] == rdv.node.config.limits.for_client()


# -- success ----------------------------------------------------------------------------------

@pytest.mark.parametrize("auth", ["header", "frame"])
async def test_welcome_after_auth(rdv: Harness, subprotocol: str, auth: str) -> None:
    token = rdv.token("alice", ttl_s=600)
    client = await rdv.connect("alice", token=token, subprotocol=subprotocol, auth=auth)
    assert client.subprotocol == subprotocol
    check_welcome(client.welcome, rdv, "alice", token)
    other = await rdv.connect("alice", subprotocol=subprotocol, auth=auth)
    assert other.welcome["session"] != client.welcome["session"]
    assert (await client.ping())["t"] == "pong"


async def test_sub_of_64_chars_is_accepted(rdv: Harness) -> None:
    user = "u" * 64
    client = await rdv.connect(user)
    assert client.welcome["user"] == user


async def test_auth_frame_echoes_r_on_refusal(rdv: Harness, subprotocol: str) -> None:
    codec = codec_for(subprotocol)
    async with connect(rdv.ws_url, subprotocols=[Subprotocol(subprotocol)]) as ws:
        await ws.send(codec.encode({"t": "auth", "r": 7, "token": "not.a.jwt"}))
        error = codec.decode(await ws.recv())
        assert error["t"] == "error" and error["code"] == "unauthorized" and error["r"] == 7
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4001


async def test_second_auth_frame_is_a_bad_request(rdv: Harness, subprotocol: str) -> None:
    client = await rdv.connect("alice", subprotocol=subprotocol, auth="frame")
    with pytest.raises(ServerError) as info:
        await client.request({"t": "auth", "token": rdv.token("bob")})
    assert info.value.code == "bad_request"
    assert client.user == "alice" and (await client.ping())["t"] == "pong"


# -- no auth, wrong first frame --------------------------------------------------------------

async def test_no_auth_frame_within_timeout(node_factory: NodeFactory,
                                            harness_for: Callable[..., Harness],
                                            subprotocol: str) -> None:
    rdv = harness_for(await node_factory(limits=Limits(auth_timeout_s=0.5)))
    started = time.monotonic()
    with pytest.raises(ConnectionRejected) as info:  # token=None: no header, no auth frame
        await RendezvousClient.connect(rdv.ws_url, None, subprotocol=subprotocol)
    assert info.value.code == 4001
    assert info.value.error_code == "unauthorized"
    assert 0.4 <= time.monotonic() - started < 3


async def test_silent_client_is_refused_after_auth_timeout(
        node_factory: NodeFactory, harness_for: Callable[..., Harness],
        subprotocol: str) -> None:
    rdv = harness_for(await node_factory(limits=Limits(auth_timeout_s=0.5)))
    codec = codec_for(subprotocol)
    started = time.monotonic()
    async with connect(rdv.ws_url, subprotocols=[Subprotocol(subprotocol)]) as ws:
        error = codec.decode(await asyncio.wait_for(ws.recv(), 3))
        assert error["t"] == "error" and error["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)
        assert ws.close_code == 4001
    assert 0.4 <= time.monotonic() - started < 3


@pytest.mark.parametrize("first", [
    {"t": "ping", "r": 1},
    {"t": "send", "r": 1, "m": "x", "c": "c", "body": "hi"},
    {"t": "auth"},
    {"t": "auth", "token": 12},
    {"r": 3},
    "garbage",
], ids=["ping", "send", "auth-without-token", "auth-token-not-string", "no-t", "garbage"])
async def test_first_frame_not_auth(rdv: Harness, subprotocol: str,
                                    first: dict[str, Any] | str) -> None:
    codec = codec_for(subprotocol)
    async with connect(rdv.ws_url, subprotocols=[Subprotocol(subprotocol)]) as ws:
        if isinstance(first, dict):
            await ws.send(codec.encode(first))
        else:  # undecodable in the connection's own framing
            await ws.send(b"\xc1\xc1" if codec.binary else "{nope")
        error = codec.decode(await asyncio.wait_for(ws.recv(), 3))
        assert error["t"] == "error" and error["code"] == "unauthorized", error
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)
        assert ws.close_code == 4001


# -- bad tokens -------------------------------------------------------------------------------

def _forged_payload() -> str:
    """A valid token for mallory with the payload swapped to say alice."""
    header, _, signature = mint_token(SECRET, "mallory").split(".")
    return f"{header}.{b64json(claims('alice'))}.{signature}"


def _flipped_signature() -> str:
    header, payload, signature = mint_token(SECRET, "mallory").split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[5] ^= 0x01
    return f"{header}.{payload}.{b64url(bytes(raw))}"


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "forged-payload": _forged_payload,
    "flipped-signature": _flipped_signature,
    "expired": lambda: mint_token(SECRET, "mallory", ttl_s=-30),
    "alg-none": lambda: hand_made({"alg": "none", "typ": "JWT"}, claims(), None),
    "alg-None": lambda: hand_made({"alg": "None", "typ": "JWT"}, claims(), None),
    "other-secret": lambda: mint_token(OTHER_SECRET, "mallory"),
    "no-exp": lambda: mint_token(SECRET, "mallory", exp=None),
    "no-sub": lambda: mint_token(SECRET, "mallory", sub=None),
    "empty-sub": lambda: mint_token(SECRET, ""),
    "sub-not-string": lambda: mint_token(SECRET, "mallory", sub=12345),
    "sub-65-chars": lambda: mint_token(SECRET, "u" * 65),
    "exp-not-number": lambda: mint_token(SECRET, "mallory", exp="tomorrow"),
    "not-yet-valid": lambda: mint_token(SECRET, "mallory", nbf=int(time.time()) + 600),
    "not-a-jwt": lambda: "definitely-not-a-jwt",
    "two-parts": lambda: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0",
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_token_is_refused_by_header(rdv: Harness, subprotocol: str,
                                              kind: str) -> None:
    await assert_refused(rdv, BAD_TOKENS[kind](), subprotocol, "header")


@pytest.mark.parametrize("kind", ["forged-payload", "expired", "alg-none", "other-secret",
                                  "no-exp", "no-sub", "sub-65-chars"])
async def test_bad_token_is_refused_by_auth_frame(rdv: Harness, subprotocol: str,
                                                  kind: str) -> None:
    await assert_refused(rdv, BAD_TOKENS[kind](), subprotocol, "frame")


# -- asymmetric algorithms and key confusion --------------------------------------------------

@pytest.mark.parametrize("alg", sorted(KEY_MAKERS))
async def test_asymmetric_token_accepted_with_configured_public_key(
        node_factory: NodeFactory, harness_for: Callable[..., Harness],
        keypairs: dict[str, tuple[bytes, str]], subprotocol: str, alg: str) -> None:
    private, public = keypairs[alg]
    rdv = harness_for(await node_factory(jwt_keys=(JwtKey("HS256", SECRET),
                                                   JwtKey(alg, public))))
    token = signed(alg, private)
    client = await rdv.connect("x", token=token, subprotocol=subprotocol)
    check_welcome(client.welcome, rdv, "asym-user", token)
    # HS256 keeps working next to it
    assert (await rdv.connect("hs-user", subprotocol=subprotocol)).user == "hs-user"
    # the same algorithm signed by someone else's key is refused
    stranger = pem_private(KEY_MAKERS[alg]())
    await assert_refused(rdv, signed(alg, stranger), subprotocol)


@pytest.mark.parametrize("alg", sorted(KEY_MAKERS))
async def test_algorithm_not_configured_is_refused(rdv: Harness,
                                                   keypairs: dict[str, tuple[bytes, str]],
                                                   alg: str) -> None:
    """A validly signed RS256/ES256/EdDSA token means nothing to a node without that key."""
    private, _ = keypairs[alg]
    await assert_refused(rdv, signed(alg, private))


@pytest.mark.parametrize("header_alg", ["RS256", "HS256"])
async def test_key_confusion_hmac_with_public_key_is_refused(
        node_factory: NodeFactory, harness_for: Callable[..., Harness],
        keypairs: dict[str, tuple[bytes, str]], subprotocol: str, header_alg: str) -> None:
    """The classic attack: HMAC-SHA256 over the token with the (public) RSA PEM as secret."""
    private, public = keypairs["RS256"]
    rdv = harness_for(await node_factory(jwt_keys=(JwtKey("HS256", SECRET),
                                                   JwtKey("RS256", public))))
    assert (await rdv.connect("x", token=signed("RS256", private),
                              subprotocol=subprotocol)).user == "asym-user"
    token = hand_made({"alg": header_alg, "typ": "JWT"}, claims(), public.encode())
    await assert_refused(rdv, token, subprotocol)
    await assert_refused(rdv, token, subprotocol, auth="frame")


async def test_key_confusion_refused_on_rs256_only_node(
        node_factory: NodeFactory, harness_for: Callable[..., Harness],
        keypairs: dict[str, tuple[bytes, str]]) -> None:
    _, public = keypairs["RS256"]
    rdv = harness_for(await node_factory(jwt_keys=(JwtKey("RS256", public),)))
    for alg in ("HS256", "RS256"):
        await assert_refused(rdv, hand_made({"alg": alg}, claims(), public.encode()))


# -- issuer and audience ----------------------------------------------------------------------

async def test_issuer_and_audience_checked_when_configured(
        node_factory: NodeFactory, harness_for: Callable[..., Harness],
        subprotocol: str) -> None:
    rdv = harness_for(await node_factory(jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    good = rdv.token("alice", iss=ISSUER, aud=AUDIENCE)
    client = await rdv.connect("alice", token=good, subprotocol=subprotocol)
    assert client.user == "alice"
    listed = rdv.token("alice", iss=ISSUER, aud=["other-app", AUDIENCE])
    assert (await rdv.connect("alice", token=listed, subprotocol=subprotocol)).user == "alice"
    for bad in (rdv.token("alice", iss="https://evil.example", aud=AUDIENCE),
                rdv.token("alice", iss=ISSUER, aud="other-app"),
                rdv.token("alice", iss=ISSUER),
                rdv.token("alice", aud=AUDIENCE),
                rdv.token("alice")):
        await assert_refused(rdv, bad, subprotocol)
    await assert_refused(rdv, rdv.token("alice", iss=ISSUER, aud="other-app"), subprotocol,
                         auth="frame")


# -- refresh and expiry -----------------------------------------------------------------------

async def wait_past(exp: int, margin: float = 0.4) -> None:
    await asyncio.sleep(max(0.0, exp - time.time()) + margin)


async def test_refresh_keeps_the_session_past_the_old_expiry(rdv: Harness,
                                                             subprotocol: str) -> None:
    client = await rdv.connect("alice", token=rdv.token("alice", ttl_s=2),
                               subprotocol=subprotocol)
    old_exp = client.welcome["exp"]
    fresh = rdv.token("alice", ttl_s=600)
    reply = await client.refresh(fresh)
    assert reply["t"] == "ok"
    assert reply["exp"] == jwt.decode(fresh, options={"verify_signature": False})["exp"]
    assert reply["exp"] > old_exp
    await wait_past(old_exp)
    assert not client.closed
    assert (await client.ping())["t"] == "pong"


async def test_token_expiring_while_connected_closes_4002(rdv: Harness) -> None:
    client = await rdv.connect("alice", token=rdv.token("alice", ttl_s=2))
    exp = client.welcome["exp"]
    assert (await client.ping())["t"] == "pong"
    assert await client.wait_closed(timeout=exp - time.time() + 2) == 4002
    assert time.time() >= exp - 0.05


async def test_refresh_with_another_users_token_is_refused(rdv: Harness,
                                                          subprotocol: str) -> None:
    """Refused, the session stays alice's, and the old expiry still applies."""
    client = await rdv.connect("alice", token=rdv.token("alice", ttl_s=2),
                               subprotocol=subprotocol)
    with pytest.raises(ServerError) as info:
        await client.refresh(rdv.token("bob", ttl_s=600))
    assert info.value.code == "unauthorized"
    assert info.value.frame["r"] is not None
    assert (await client.ping())["t"] == "pong"
    m = await rdv.pair("alice", "carol")
    ack = await client.send(m, "still alice")
    history = await client.history(m)
    assert [(x["id"], x["from"]) for x in history["msgs"]] == [(ack["id"], "alice")]
    assert await client.wait_closed(timeout=client.welcome["exp"] - time.time() + 2) == 4002


@pytest.mark.parametrize("kind", ["forged-payload", "flipped-signature", "expired", "alg-none",
                                  "other-secret", "no-exp"])
async def test_refresh_with_bad_token_is_refused(rdv: Harness, subprotocol: str,
                                                 kind: str) -> None:
    client = await rdv.connect("mallory", subprotocol=subprotocol)
    with pytest.raises(ServerError) as info:
        await client.refresh(BAD_TOKENS[kind]())
    assert info.value.code == "unauthorized"
    assert (await client.ping())["t"] == "pong"


async def test_refresh_frame_rules(rdv: Harness) -> None:
    client = await rdv.connect("alice")
    for frame in ({"t": "refresh"}, {"t": "refresh", "token": 5}, {"t": "refresh", "token": ""}):
        with pytest.raises(ServerError) as info:
            await client.request(frame)
        assert info.value.code == "bad_request", frame
    assert (await client.ping())["t"] == "pong"


# -- HTTP -------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "forged-payload", "expired", "alg-none", "no-exp",
                                   "other-secret", "not-a-jwt"])
async def test_http_refuses_missing_or_bad_token(rdv: Harness, token: str | None) -> None:
    api = rdv.http(None, token=BAD_TOKENS[token]() if token else None)
    for method, path, body in (("GET", "/v1/matches", None),
                               ("POST", "/v1/swipes", {"target": "bob", "action": "like"}),
                               ("PUT", "/v1/me/settings", {"show_online": False})):
        response = await api.raw(method, path, json=body)
        assert response.status_code == 401, (method, path, response.text)
        error = response.json()["error"]
        assert error["code"] == "unauthorized" and isinstance(error["msg"], str)


async def test_http_refuses_non_bearer_scheme(rdv: Harness) -> None:
    api = rdv.http(None)
    response = await api.raw("GET", "/v1/matches",
                             headers={"Authorization": f"Basic {rdv.token('alice')}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    ok = await rdv.http("alice").raw("GET", "/v1/matches")
    assert ok.status_code == 200


async def test_a_request_running_when_the_token_expires_is_answered_first(
        rdv: Harness) -> None:
    """The 4002 close waits for the requests already read: a send whose durable write is
    still in the writer's queue at the expiry gets its ack, then the close."""
    m = await rdv.pair("alice", "bob")
    client = await rdv.connect("alice", token=rdv.token("alice", ttl_s=2))
    exp = client.welcome["exp"]
    held, release = threading.Event(), threading.Event()

    def hold(conn: object) -> None:  # occupies the SQLite writer until released
        held.set()
        release.wait(10)
    blocker = rdv.node.store.engine.write(hold)  # type: ignore[attr-defined]
    await asyncio.to_thread(held.wait, 5)
    sending = asyncio.ensure_future(client.send(m, "in flight at the expiry", timeout=15))
    await wait_past(exp, margin=0.7)  # the expiry fired while the save waits for the writer
    assert not sending.done() and not client.closed
    release.set()
    await blocker
    ack = await sending
    assert ack["t"] == "ack"
    assert await client.wait_closed(timeout=5) == 4002
    history, _ = await rdv.node.store.history(m, None, 10)
    assert [x.id for x in history] == [ack["id"]]
