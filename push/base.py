"""What a push provider adapter does, and how it tells the dispatcher what happened.

A provider's answer is a value, not an exception: the dispatcher decides from `Outcome`
whether to retry, prune the token or alert (docs/push.md, "What an answer means").
"""

from __future__ import annotations

import datetime
import email.utils
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from storage import Device


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header in either form (delay-seconds or an HTTP date; a
    date in the past is 0); None when absent or not a valid value (a negative delay)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class Outcome(StrEnum):
    SENT = "sent"
    DEAD_TOKEN = "dead_token"  # the device is gone: delete the token
    RETRY = "retry"  # temporary: try again later (after `retry_after_s` if given)
    CONFIG_ERROR = "config_error"  # our credentials or topic are wrong: alert, keep token
    REJECTED = "rejected"  # this notification is wrong (too large, bad field): drop it


@dataclass(frozen=True, slots=True)
class Notification:
    """A provider-neutral push: built by `push.payload`, rendered by each provider."""

    push_id: str  # unique per notification and device, for deduplication
    kind: str  # message, match, superlike or like
    match_id: str | None
    loc_key: str  # the app localises the text: no names in the payload by default
    body: str | None = None  # only when the user turned previews on
    collapse_id: str | None = None  # one visible notification per match per burst
    badge: int | None = None  # the user's total unread count, when known
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: Outcome
    reason: str = ""
    retry_after_s: float | None = None


class Pusher(Protocol):
    provider: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, device: Device, notification: Notification) -> PushResult:
        """Hand one notification to the provider for one device. Never raises for a
        provider's answer; a transport failure is `Outcome.RETRY`."""


@runtime_checkable
class BatchPusher(Pusher, Protocol):
    async def send_many(self, devices: list[Device],
                        notification: Notification) -> list[PushResult]:
        """`send` for several devices of one user at once, a result each, in order."""
