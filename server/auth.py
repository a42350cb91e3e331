"""JWT verification: the key and algorithm come from configuration, never from the token.

The token header names an algorithm; we only try keys configured for that algorithm, so an
`alg: none` token or an HS256 token signed with a public key finds no key and is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from server.config import JwtKey


class AuthError(Exception):
    """The token is refused. `reason` is a short metric label, never the token."""

    def __init__(self, reason: str, msg: str) -> None:
        super().__init__(msg)
        self.reason = reason
        self.msg = msg


@dataclass(frozen=True, slots=True)
class Claims:
    user: str
    exp: int


class Authenticator:
    def __init__(self, keys: tuple[JwtKey, ...], *, issuer: str | None = None,
                 audience: str | None = None, leeway_s: int = 0,
                 max_user_chars: int = 64) -> None:
        self._keys: dict[str, list[Any]] = {}
        for key in keys:
            material: Any = key.key
            if key.algorithm != "HS256":
                material = jwt.algorithms.get_default_algorithms()[key.algorithm].prepare_key(
                    key.key)
            self._keys.setdefault(key.algorithm, []).append(material)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._max_user = max_user_chars

    def verify(self, token: str, now: float | None = None) -> Claims:
        """The claims of a valid token, or `AuthError`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed", "the token is not a JWT") from exc
        alg = header.get("alg")
        candidates = self._keys.get(alg) if isinstance(alg, str) else None
        if not candidates or not isinstance(alg, str):
            raise AuthError("algorithm", "the token's algorithm is not accepted")
        options: Any = {"require": ["exp", "sub"],
                                   "verify_aud": self._audience is not None}
        last: jwt.PyJWTError | None = None
        for key in candidates:
            try:
                claims = jwt.decode(token, key, algorithms=[alg], options=options,
                                    audience=self._audience, issuer=self._issuer,
                                    leeway=self._leeway)
                break
            except jwt.InvalidSignatureError as exc:
                last = exc  # try the next key of this algorithm
            except jwt.ExpiredSignatureError as exc:
                raise AuthError("expired", "the token has expired") from exc
            except jwt.PyJWTError as exc:
                raise AuthError("invalid", f"the token is invalid: {_describe(exc)}") from exc
        else:
            raise AuthError("signature", "the token's signature does not verify") from last
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= self._max_user:
            raise AuthError("invalid", f"sub must be a string of 1..{self._max_user} chars")
        exp = claims["exp"]
        if now is not None and exp + self._leeway <= now:
            raise AuthError("expired", "the token has expired")
        return Claims(user=sub, exp=int(exp))


def _describe(exc: Exception) -> str:
    """PyJWT's message, which names the claim but never echoes the token."""
    return str(exc)[:120]


def mint(secret: str, user: str, ttl_s: int = 3600, now: float | None = None,
         **claims: Any) -> str:
    """An HS256 token for `user` (the `rendezvous token` command and tests)."""
    issued = int(now if now is not None else time.time())
    payload = {"sub": user, "iat": issued, "exp": issued + ttl_s, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")
