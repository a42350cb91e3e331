"""JWT verification: the key and algorithm come from configuration, never from the token.

The token header names an algorithm; we only try keys configured for that algorithm, so an
`alg: none` token or an HS256 token signed with a public key finds no key and is refused.

A validly signed token can still carry odd claims (`exp` as a string or 10^30, `sub` with a
NUL or a lone surrogate). PyJWT checks only the signature and `iss`/`aud` here; the time
claims and `sub` are checked below, strictly, so that every odd value is an `AuthError`
naming the claim and never an exception further on (docs/protocol.md, "Tokens").
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt

from server.config import JwtKey
from server.services.accounts import NotBefore


class AuthError(Exception):
    """The token is refused. `reason` is a short metric label, never the token."""

    def __init__(self, reason: str, msg: str) -> None:
        super().__init__(msg)
        self.reason = reason
        self.msg = msg


# The last second of 9999 (UTC): a time claim past it is no date. It keeps `welcome.exp` a
# plain integer for msgpack and exact for JSON (2^53), and expiry timers finite.
MAX_NUMERIC_DATE = 253_402_300_799
# NUL and the other C0/C1 controls, line and paragraph separators, and lone surrogates
# (JSON can carry "\ud800"; UTF-8, so msgpack and storage, cannot).
_BAD_SUB_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# PyJWT checks the signature, iss and aud; the time claims and sub are checked by `_checked`
_DECODE_OPTIONS = {"require": ["exp", "sub"], "verify_exp": False, "verify_nbf": False,
                   "verify_iat": False, "verify_sub": False}


@dataclass(frozen=True, slots=True)
class Claims:
    user: str
    exp: int
    # the string values of the configured `quota_exempt_claim` (a string or a list of them)
    tier: tuple[str, ...] = ()
    iat: float | None = None  # unix s; None when absent (see `unrevoked`)
    scopes: frozenset[str] = frozenset()  # the `scope` claim (space-separated, RFC 8693)


class Authenticator:
    def __init__(self, keys: tuple[JwtKey, ...], *, issuer: str | None = None,
                 audience: str | None = None, leeway_s: int = 0,
                 max_user_chars: int = 64, tier_claim: str | None = None) -> None:
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
        self._tier_claim = tier_claim

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
        options: Any = {**_DECODE_OPTIONS, "verify_aud": self._audience is not None}
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
            except Exception as exc:  # a claim PyJWT did not expect: refused, never a crash
                raise AuthError("invalid", "the token's claims are malformed") from exc
        else:
            raise AuthError("signature", "the token's signature does not verify") from last
        return self._checked(claims, time.time() if now is None else now)

    def _checked(self, claims: dict[str, Any], now: float) -> Claims:
        """The claims of a token whose signature verified, each checked for type and range."""
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= self._max_user:
            raise AuthError("invalid", f"sub must be a string of 1..{self._max_user} chars")
        if _BAD_SUB_CHARS.search(sub):
            raise AuthError("invalid", "sub must not hold control characters (NUL, newline) "
                            "or lone surrogates")
        if sub.isspace():
            raise AuthError("invalid", "sub must not be only whitespace")
        exp = _numeric_date(claims, "exp")
        if exp is None:  # PyJWT's `require` already refuses this
            raise AuthError("invalid", "exp is required")
        if exp + self._leeway <= now:
            raise AuthError("expired", "the token has expired")
        nbf = _numeric_date(claims, "nbf")
        if nbf is not None and nbf - self._leeway > now:
            raise AuthError("not_yet_valid", "the token is not valid yet (nbf)")
        iat = _numeric_date(claims, "iat")
        if iat is not None and iat - self._leeway > now:
            raise AuthError("not_yet_valid", "the token is not valid yet (iat)")
        return Claims(user=sub, exp=int(exp), iat=iat,
                      tier=_strings(claims.get(self._tier_claim)) if self._tier_claim else (),
                      scopes=_scopes(claims))


def _strings(value: Any) -> tuple[str, ...]:
    """A claim's string values: a string, or the strings of a list; nothing else counts."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value[:32] if isinstance(v, str))
    return ()


REVOKED_MSG = "the token was revoked (log out everywhere): get a new token"


async def unrevoked(claims: Claims, not_before: NotBefore) -> Claims:
    """`claims`, unless the user's tokens were revoked since this one was issued (its `iat`
    at or before their not-before; a token without `iat` once they have one): then
    `AuthError("revoked")`. `StoreUnavailable` when that cannot be known (docs/protocol.md,
    "Log out everywhere")."""
    if await not_before.is_revoked(claims.user, claims.iat):
        raise AuthError("revoked", REVOKED_MSG)
    return claims


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """A time claim as a number of unix seconds, None when absent; else `AuthError`. Only
    JSON numbers count: not a numeric string (which PyJWT would take), not a boolean."""
    value = claims.get(name)
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) \
            or not 0 <= value <= MAX_NUMERIC_DATE:
        raise AuthError("invalid", f"{name} must be a number of unix seconds from 0 to "
                        f"{MAX_NUMERIC_DATE}")
    return float(value)


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """The `scope` claim: a space-separated string (RFC 8693), or a list of strings as some
    identity providers write it; absent is none. Any other value is refused."""
    value = claims.get("scope")
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise AuthError("invalid", "scope must be a string of space-separated scopes")


def _describe(exc: Exception) -> str:
    """PyJWT's message, which names the claim but never echoes the token."""
    return str(exc)[:120]


def mint(secret: str, user: str, ttl_s: int = 3600, now: float | None = None,
         **claims: Any) -> str:
    """An HS256 token for `user` (the `rendezvous token` command and tests)."""
    issued = int(now if now is not None else time.time())
    payload = {"sub": user, "iat": issued, "exp": issued + ttl_s, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")
