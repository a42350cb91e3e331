"""Short-lived marks that decide whether a push goes out: bursts, deliveries, sends.

- burst: the first job of (user, match) within the coalescing window takes the mark; later
  jobs of that window are coalesced into it (one notification per device per burst);
- delivered: a device of the user confirmed delivery in the match a moment ago;
- send claims: a push id is claimed before it is handed to the provider and marked sent
  after, so a job handed out twice (a crashed node's job taken over) sends once.

In memory on one machine; in Redis in a cluster (`push.redis_queue.RedisPushGates`), where
the job may run on another node than the one that saw the message or the receipt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Protocol

SENT_MARK_S = 3600.0  # how long a sent push id is remembered (well past a takeover)


class Claim(StrEnum):
    NEW = "new"  # ours: send it, then `finish`
    SENT = "sent"  # already sent (or finally answered): do not send again
    BUSY = "busy"  # another worker holds it: look again once its claim may have lapsed


class PushGates(Protocol):
    async def first_in_burst(self, user: str, match_id: str, window_s: float) -> bool:
        """True for the first push of (user, match) in `window_s` (always when 0)."""

    async def mark_delivered(self, user: str, match_id: str, window_s: float) -> None:
        """A device of `user` confirmed delivery in `match_id`: remember it for `window_s`."""

    async def recently_delivered(self, user: str, match_id: str) -> bool: ...

    async def claim(self, push_id: str, ttl_s: float) -> tuple[Claim, float]:
        """Claim `push_id` for `ttl_s`; with BUSY, the seconds the other claim has left."""

    async def finish(self, push_id: str, final: bool) -> None:
        """Final (sent, dead token, rejected): remember the id as sent. Not final (a retry
        follows): release the claim so the retry can take it."""

    async def refresh(self, push_ids: Iterable[str], ttl_s: float) -> None:
        """Extend our claims: the sends are still in flight on a living node."""


class MemoryPushGates:
    """Marks in dicts of expiry times (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_marks: int = 100_000) -> None:
        self.clock = clock
        self.max_marks = max_marks
        self._bursts: dict[tuple[str, str], float] = {}
        self._delivered: dict[tuple[str, str], float] = {}
        self._claims: dict[str, tuple[Claim, float]] = {}

    def _live(self, marks: dict[tuple[str, str], float], key: tuple[str, str]) -> bool:
        until = marks.get(key)
        return until is not None and until > self.clock()

    def _bound(self, marks: dict[object, object]) -> None:
        if len(marks) > self.max_marks:
            marks.clear()  # forgetting marks costs at most a few extra pushes

    async def first_in_burst(self, user: str, match_id: str, window_s: float) -> bool:
        if window_s <= 0:
            return True
        key = (user, match_id)
        if self._live(self._bursts, key):
            return False
        self._bound(self._bursts)  # type: ignore[arg-type]
        self._bursts[key] = self.clock() + window_s
        return True

    async def mark_delivered(self, user: str, match_id: str, window_s: float) -> None:
        self._bound(self._delivered)  # type: ignore[arg-type]
        self._delivered[(user, match_id)] = self.clock() + window_s

    async def recently_delivered(self, user: str, match_id: str) -> bool:
        return self._live(self._delivered, (user, match_id))

    async def claim(self, push_id: str, ttl_s: float) -> tuple[Claim, float]:
        now = self.clock()
        state, until = self._claims.get(push_id, (Claim.NEW, now))
        if until > now:
            return state, until - now
        self._bound(self._claims)  # type: ignore[arg-type]
        self._claims[push_id] = (Claim.BUSY, now + ttl_s)
        return Claim.NEW, 0.0

    async def finish(self, push_id: str, final: bool) -> None:
        if final:
            self._claims[push_id] = (Claim.SENT, self.clock() + SENT_MARK_S)
        else:
            self._claims.pop(push_id, None)

    def forget(self, user: str, match_ids: Iterable[str]) -> None:
        """Drop `user`'s burst and delivery marks in these matches (an erased user's)."""
        for match_id in match_ids:
            self._bursts.pop((user, match_id), None)
            self._delivered.pop((user, match_id), None)

    async def refresh(self, push_ids: Iterable[str], ttl_s: float) -> None:
        until = self.clock() + ttl_s
        for push_id in push_ids:
            if push_id in self._claims and self._claims[push_id][0] is Claim.BUSY:
                self._claims[push_id] = (Claim.BUSY, until)
