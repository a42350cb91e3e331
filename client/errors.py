"""Exceptions of the client SDK; each one carries what the caller needs to decide.

`ConnectionRejected` means "this connection never opened" (look at the close code: 4001 means
get a new token), `ServerError` is one request refused with a protocol error code (retry after
`retry_ms` when it is `rate_limited` or `unavailable`), `ClientClosed` means the socket ended
while the caller was waiting, and `HttpError` is a non-2xx answer of the HTTP API.
"""

from __future__ import annotations

from protocol.codec import Frame


class ConnectionRejected(Exception):
    """The server refused the connection before `welcome`.

    `code` is the WebSocket close code (None when the server did not close, or refused the
    HTTP upgrade itself, in which case `status` is the HTTP status). `error_frame` is the
    `error` frame the server sent first, if any.
    """

    def __init__(
        self,
        code: int | None,
        reason: str,
        error_frame: Frame | None = None,
        *,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.error_frame = error_frame
        self.status = status
        error = error_frame.get("code") if error_frame else None
        super().__init__(f"connection rejected: close={code} status={status} "
                         f"error={error!r} reason={reason!r}")

    @property
    def error_code(self) -> str | None:
        """The `code` of the error frame, e.g. `"unauthorized"`."""
        return self.error_frame.get("code") if self.error_frame else None


class ServerError(Exception):
    """The server answered a request with an `error` frame."""

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.code: str | None = frame.get("code")
        self.msg: str | None = frame.get("msg")
        self.retry_ms: int | None = frame.get("retry_ms")
        super().__init__(f"{self.code}: {self.msg}"
                         + (f" (retry in {self.retry_ms} ms)" if self.retry_ms is not None else ""))


class ClientClosed(ConnectionError):
    """The connection closed while a request or `next_event` was waiting."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed: code={code} reason={reason!r}")


class HttpError(Exception):
    """A non-2xx answer of the HTTP API, parsed from `{"error": {"code", "msg"}}`.

    `retry_after` is the `Retry-After` header in seconds (429, 503), when present;
    `reset_at` the unix ms a `quota_exceeded` quota refills at.
    """

    def __init__(
        self, status: int, code: str | None, msg: str | None, retry_after: float | None = None,
        reset_at: int | None = None,
    ) -> None:
        self.status = status
        self.reset_at = reset_at
        self.code = code
        self.msg = msg
        self.retry_after = retry_after
        super().__init__(f"HTTP {status} {code}: {msg}"
                         + (f" (retry after {retry_after} s)" if retry_after is not None else ""))
