"""Client-visible error codes, close codes and the exception that carries them."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """The `code` of an `error` frame (docs/protocol.md, "Errors")."""

    BAD_FRAME = "bad_frame"
    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    OPENER_LIMIT = "opener_limit"  # past openers_per_day, with retry_ms
    DUPLICATE_OPENER = "duplicate_opener"  # the same first message in another match lately
    QUOTA_EXCEEDED = "quota_exceeded"  # with `reset_ms` (WS) / `reset_at` (HTTP)


class CloseCode(IntEnum):
    """WebSocket close codes the server uses, and what the client should do."""

    GOING_AWAY = 1001  # reconnect with jitter
    TOO_BIG = 1009  # a frame over the size limit
    RESTART = 1012  # node restarting: reconnect with jitter
    TRY_AGAIN_LATER = 1013  # a token could not be checked (storage down): reconnect later
    UNAUTHORIZED = 4001  # get a new token first
    TOKEN_EXPIRED = 4002
    FORBIDDEN = 4003
    POLICY = 4008  # policy or rate limit
    TOO_SLOW = 4009  # too slow to read: reconnect and sync


# HTTP status for each error code of the HTTP API.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
    ErrorCode.OPENER_LIMIT: 429,
    ErrorCode.DUPLICATE_OPENER: 409,
    ErrorCode.QUOTA_EXCEEDED: 429,
}


class ProtocolError(Exception):
    """A request the server refuses, with the code the client sees.

    `r` is the request id to echo (when the frame had a readable one); `retry_ms` is set for
    `rate_limited` and `unavailable`; `reset_ms` (unix ms when the quota refills) for
    `quota_exceeded`.
    """

    def __init__(
        self,
        code: ErrorCode,
        msg: str,
        *,
        r: int | None = None,
        retry_ms: int | None = None,
        reset_ms: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.r = r
        self.retry_ms = retry_ms
        self.reset_ms = reset_ms
