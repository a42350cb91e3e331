"""Client frames as typed values, and the validation that turns a bad one into an error code.

`parse_client_frame` is the only way a decoded map becomes a request: every field is checked
for presence, type and bounds here, so the server below it handles only well-formed input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from protocol.errors import ErrorCode, ProtocolError
from protocol.ids import MAX_ID
from protocol.limits import Limits

MEDIA_KINDS: Final = frozenset({"image", "voice", "gif"})
MAX_R: Final = (1 << 63) - 1
MAX_MEDIA_DIM: Final = 20_000
MAX_MEDIA_DUR_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Media:
    kind: str
    url: str
    w: int | None = None
    h: int | None = None
    dur: float | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "url": self.url}
        for key in ("w", "h", "dur"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Auth:
    token: str
    r: int | None = None


@dataclass(frozen=True, slots=True)
class Send:
    r: int
    m: str
    c: str
    body: str | None
    media: Media | None


@dataclass(frozen=True, slots=True)
class Typing:
    m: str
    on: bool
    r: int | None = None


@dataclass(frozen=True, slots=True)
class Read:
    m: str
    id: int
    r: int | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    m: str
    id: int
    r: int | None = None


@dataclass(frozen=True, slots=True)
class Unsend:
    r: int
    m: str
    id: int


@dataclass(frozen=True, slots=True)
class History:
    r: int
    m: str
    before: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class Sync:
    r: int
    since: str | None


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    r: int


@dataclass(frozen=True, slots=True)
class Refresh:
    r: int
    token: str


@dataclass(frozen=True, slots=True)
class Ping:
    r: int | None = None


ClientFrame = (Auth | Send | Typing | Read | Delivered | History | Sync | PresenceQuery
               | Refresh | Ping | Unsend)


def request_id(frame: dict[str, Any]) -> int | None:
    """The frame's `r` if it is a valid one, else None (used to echo `r` on errors)."""
    r = frame.get("r")
    if type(r) is int and 0 <= r <= MAX_R:
        return r
    return None


def parse_client_frame(frame: dict[str, Any], limits: Limits) -> ClientFrame:
    """Validate a decoded client map; raise `ProtocolError` with the contract's code."""
    r = request_id(frame)
    t = frame.get("t")
    if not isinstance(t, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "field t (string) is required", r=r)
    parser = _PARSERS.get(t)
    if parser is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {t[:32]!r}", r=r)
    if frame.get("r") is not None and r is None:  # "r": null is the same as no r
        raise ProtocolError(ErrorCode.BAD_REQUEST, "r must be a non-negative integer")
    return parser(_Fields(frame, r, limits))


def _is_text(value: str) -> bool:
    """False for lone surrogates: JSON can carry them, UTF-8 (so msgpack, storage) cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Fields:
    """Typed accessors over one frame; each raises `bad_request` naming the field."""

    def __init__(self, frame: dict[str, Any], r: int | None, limits: Limits) -> None:
        self.frame = frame
        self.r = r
        self.limits = limits

    def fail(self, msg: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> ProtocolError:
        return ProtocolError(code, msg, r=self.r)

    def required_r(self) -> int:
        if self.r is None:
            raise self.fail("r (request id) is required for this frame")
        return self.r

    def string(self, key: str, max_chars: int, *, required: bool = True) -> str | None:
        value = self.frame.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key} must be a non-empty string")
        if not _is_text(value):
            raise self.fail(f"{key} must be valid Unicode text")
        if len(value) > max_chars:
            raise self.fail(f"{key} is longer than {max_chars} characters")
        return value

    def match_id(self) -> str:
        value = self.string("m", self.limits.max_match_id_chars)
        assert value is not None
        return value

    def message_id(self, key: str, *, required: bool = True) -> int | None:
        value = self.frame.get(key)
        if value is None and not required:
            return None
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
            value = int(value)  # JSON clients send ids as strings
        if type(value) is not int or not 0 <= value <= MAX_ID:
            raise self.fail(f"{key} must be a message id")
        return value

    def boolean(self, key: str) -> bool:
        value = self.frame.get(key)
        if type(value) is not bool:
            raise self.fail(f"{key} must be true or false")
        return value


def _auth(f: _Fields) -> Auth:
    token = f.string("token", f.limits.max_token_chars)
    assert token is not None
    return Auth(token=token, r=f.r)


def _send(f: _Fields) -> Send:
    r = f.required_r()
    m = f.match_id()
    c = f.string("c", f.limits.max_client_id_chars)
    assert c is not None
    has_body = f.frame.get("body") is not None
    has_media = f.frame.get("media") is not None
    if has_body == has_media:
        raise f.fail("send needs exactly one of body or media")
    if has_body:
        body = f.frame["body"]
        if not isinstance(body, str) or not body.strip():
            raise f.fail("body must be a non-empty string")
        if not _is_text(body):
            raise f.fail("body must be valid Unicode text")
        if len(body) > f.limits.max_body_chars:
            raise f.fail(f"body is longer than {f.limits.max_body_chars} characters",
                         ErrorCode.TOO_LARGE)
        return Send(r=r, m=m, c=c, body=body, media=None)
    return Send(r=r, m=m, c=c, body=None, media=_media(f, f.frame["media"]))


def _media(f: _Fields, raw: object) -> Media:
    if not isinstance(raw, dict):
        raise f.fail("media must be a map")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in MEDIA_KINDS:
        raise f.fail("media.kind must be one of image, voice, gif")
    url = raw.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise f.fail("media.url must be an http(s) URL")
    if not _is_text(url):
        raise f.fail("media.url must be valid Unicode text")
    if len(url) > f.limits.max_url_chars:
        raise f.fail(f"media.url is longer than {f.limits.max_url_chars} characters",
                     ErrorCode.TOO_LARGE)
    dims: dict[str, int | None] = {}
    for key in ("w", "h"):
        value = raw.get(key)
        if value is not None and (type(value) is not int or not 0 < value <= MAX_MEDIA_DIM):
            raise f.fail(f"media.{key} must be an integer 1..{MAX_MEDIA_DIM}")
        dims[key] = value
    dur = raw.get("dur")
    if dur is not None:
        if type(dur) not in (int, float) or not 0 <= dur <= MAX_MEDIA_DUR_S:
            raise f.fail(f"media.dur must be a number of seconds 0..{MAX_MEDIA_DUR_S:g}")
        dur = float(dur)
    return Media(kind=kind, url=url, w=dims["w"], h=dims["h"], dur=dur)


def _typing(f: _Fields) -> Typing:
    return Typing(m=f.match_id(), on=f.boolean("on"), r=f.r)


_Receipt = TypeVar("_Receipt", Read, Delivered)


def _receipt(kind: type[_Receipt]) -> Callable[[_Fields], _Receipt]:
    """The parser of `read` or `delivered`: one frame shape, one set of rules for both."""
    def parse(f: _Fields) -> _Receipt:
        message_id = f.message_id("id")
        assert message_id is not None
        return kind(m=f.match_id(), id=message_id, r=f.r)
    return parse


def _unsend(f: _Fields) -> Unsend:
    r = f.required_r()
    message_id = f.message_id("id")
    assert message_id is not None
    return Unsend(r=r, m=f.match_id(), id=message_id)


def _history(f: _Fields) -> History:
    r = f.required_r()
    limit = f.frame.get("limit")
    if limit is None:  # absent or null: the default
        limit = f.limits.history_default
    if type(limit) is not int or not 1 <= limit <= f.limits.history_max:
        raise f.fail(f"limit must be an integer 1..{f.limits.history_max}")
    return History(r=r, m=f.match_id(), before=f.message_id("before", required=False),
                   limit=limit)


def _sync(f: _Fields) -> Sync:
    r = f.required_r()
    return Sync(r=r, since=f.string("since", 512, required=False))


def _presence(f: _Fields) -> PresenceQuery:
    return PresenceQuery(r=f.required_r())


def _refresh(f: _Fields) -> Refresh:
    r = f.required_r()
    token = f.string("token", f.limits.max_token_chars)
    assert token is not None
    return Refresh(r=r, token=token)


def _ping(f: _Fields) -> Ping:
    return Ping(r=f.r)


_PARSERS: Final[dict[str, Callable[[_Fields], ClientFrame]]] = {
    "auth": _auth,
    "send": _send,
    "typing": _typing,
    "read": _receipt(Read),
    "delivered": _receipt(Delivered),
    "history": _history,
    "sync": _sync,
    "presence": _presence,
    "refresh": _refresh,
    "ping": _ping,
    "unsend": _unsend,
}
CLIENT_TYPES: Final = frozenset(_PARSERS)
