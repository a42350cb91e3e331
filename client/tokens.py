"""`mint_token`: JWTs for tests and load tests, signed like the identity provider would.

The server keeps no users: a user is whoever holds a valid token, so tests make users by
minting tokens. `now` is injectable so expiry tests need no sleeping or clock patching.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import jwt


def mint_token(
    secret: str,
    user: str,
    ttl_s: int = 3600,
    *,
    now: int | None = None,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    """A token with `sub=user`, `iat=now`, `exp=now+ttl_s` and `claims` (e.g. `iss`, `aud`).

    `claims` override the defaults; a claim given as None is left out (`exp=None` makes the
    token the server must refuse). `algorithm` other than HS256 takes a private key as
    `secret`. Short HMAC secrets are accepted without PyJWT's key-length warning: test keys
    are often short, and the server, not the client, decides what it accepts.
    """
    issued = int(time.time()) if now is None else now
    payload: dict[str, Any] = {"sub": user, "iat": issued, "exp": issued + ttl_s}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(payload, secret, algorithm=algorithm)
