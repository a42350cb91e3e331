"""Who asks a service for something, and where the answer goes.

Services take a `Caller` and plain arguments, whichever door the request came through: the
gateway makes one per WebSocket session (its answers go to the session's queue), the HTTP
API one per request (its answer is kept for the response). A service answers every request
through `reply`, at the moment the answer is due: a send's `ack` goes out as soon as the
message is durable, before its fan-out (docs/architecture.md, "The hot path").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocol.codec import Frame
from protocol.errors import ErrorCode, ProtocolError

Reply = Callable[[Frame], object]
RETRY_UNAVAILABLE_MS = 1000


@dataclass(frozen=True, slots=True)
class Caller:
    user: str
    # the calling session, which fan-out to the user's own devices skips (it has the
    # answer); None when the caller holds no session (HTTP)
    session: str | None
    reply: Reply


class Answer:
    """The one answer of a request, for a door that returns it (HTTP) instead of sending."""

    def __init__(self) -> None:
        self.frame: Frame | None = None

    def __call__(self, frame: Frame) -> None:
        self.frame = frame

    def get(self) -> Frame:
        if self.frame is None:
            raise RuntimeError("the service did not answer")
        return self.frame


def http_caller(user: str) -> tuple[Caller, Answer]:
    """A caller without a session, and where its answer will be."""
    answer = Answer()
    return Caller(user, None, answer), answer


def unavailable(r: int | None) -> ProtocolError:
    """The answer of any request while the store is down: nothing happened, retry soon."""
    return ProtocolError(ErrorCode.UNAVAILABLE, "storage is unavailable; nothing was stored",
                         r=r, retry_ms=RETRY_UNAVAILABLE_MS)
