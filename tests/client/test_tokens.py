"""`mint_token`: claims, injected time, dropped claims, short test secrets."""

from __future__ import annotations

import time

import jwt

from client import mint_token

SECRET = "a-test-secret-that-is-at-least-32-bytes"


def _claims(token: str) -> dict[str, object]:
    return jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False,
                                                                     "verify_aud": False})


def test_token_has_sub_iat_exp() -> None:
    token = mint_token(SECRET, "alice", 60, now=1_000)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert _claims(token) == {"sub": "alice", "iat": 1_000, "exp": 1_060}


def test_default_now_is_the_clock() -> None:
    before = int(time.time())
    claims = _claims(mint_token(SECRET, "alice"))
    assert before <= claims["iat"] <= int(time.time())  # type: ignore[operator]
    assert claims["exp"] == claims["iat"] + 3600  # type: ignore[operator]


def test_extra_claims_override_and_none_drops() -> None:
    token = mint_token(SECRET, "alice", now=10, iss="idp", aud="rdv", exp=None, nbf=20)
    assert _claims(token) == {"sub": "alice", "iat": 10, "iss": "idp", "aud": "rdv", "nbf": 20}


def test_short_secret_gives_no_warning() -> None:
    # pytest turns warnings into errors: PyJWT's key-length warning would fail this
    token = mint_token("short", "bob", now=1)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "bob"
