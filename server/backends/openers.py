"""The opener ledger: which matches a user opened in the last 24 hours, cluster-wide.

An opener is the first message a user sends in a match (docs/chat-controls.md). The rules
(`openers_per_day`, `reject_duplicate_openers`) need one atomic step per opener: look at the
user's openers of the window, decide, and record this one, so that two devices racing to
open two matches can never both take the last opener of the day, and two racing to open
the same match record one. `MemoryOpenerLedger` is the embedded default; the cluster's is
`server/backends/redis_openers.py`. Nothing here runs unless a rule is on, and then only
for a user's first message in a match.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

OPENER_WINDOW_MS = 24 * 3600 * 1000
# An opener recorded this recently is still being stored: a second first message of the
# same match waits for it (`pending`); an older record whose message never reached the
# store (its node died before the write) is replaced.
PENDING_MS = 30_000

Verdict = Literal["ok", "pending", "limit", "duplicate"]


class OpenerVerdict(NamedTuple):
    verdict: Verdict
    retry_ms: int = 0  # for "limit": until the oldest opener of the window leaves it


class OpenersUnavailable(Exception):
    """The shared ledger cannot be reached: refuse the send as `unavailable` (retry)."""


@dataclass(frozen=True, slots=True)
class OpenerRules:
    per_day: int = 0  # 0: no limit
    reject_duplicates: bool = False


class OpenerLedger(Protocol):
    async def admit(self, user: str, match_id: str, digest: str | None) -> OpenerVerdict:
        """Decide, atomically, on `user`'s opener in `match_id` (`digest`: its normalised
        text's digest, or None when duplicates are not checked or it has no text):

        - `pending` if an opener of this match was admitted under `PENDING_MS` ago (it is
          still being stored: the caller retries, and then finds it stored);
        - `limit` if `per_day` openers were admitted in the last 24 h;
        - `duplicate` if an opener with this digest was admitted in another match in the
          last 24 h;
        - else `ok`, and this opener is recorded (it counts from now).
        Raises `OpenersUnavailable` when the ledger is unreachable."""

    async def release(self, user: str, match_id: str) -> None:
        """Forget the opener of `match_id` admitted by `admit` whose message could not be
        stored, so it counts for nothing (idempotent)."""

    async def forget(self, user: str) -> None:
        """Drop the user's openers and their digests (account erasure)."""


class MemoryOpenerLedger:
    """Each user's openers of the window in this process: match -> (ms, digest)."""

    def __init__(self, rules: OpenerRules, *, window_ms: int = OPENER_WINDOW_MS,
                 pending_ms: int = PENDING_MS,
                 clock: Callable[[], float] = time.time) -> None:
        self.rules = rules
        self.window_ms = window_ms
        self.pending_ms = pending_ms
        self.clock = clock
        self._by_user: dict[str, dict[str, tuple[int, str | None]]] = {}

    async def admit(self, user: str, match_id: str, digest: str | None) -> OpenerVerdict:
        now = int(self.clock() * 1000)
        openers = {m: v for m, v in self._by_user.get(user, {}).items()
                   if v[0] > now - self.window_ms}  # the window's only
        self._by_user[user] = openers
        previous = openers.get(match_id)
        if previous is not None:
            if now - previous[0] < self.pending_ms:
                return OpenerVerdict("pending")
            del openers[match_id]  # its message never reached the store
        if self.rules.per_day and len(openers) >= self.rules.per_day:
            oldest = min(ts for ts, _ in openers.values())
            return OpenerVerdict("limit", max(1, oldest + self.window_ms - now))
        if digest is not None and any(d == digest for _, d in openers.values()):
            return OpenerVerdict("duplicate")
        openers[match_id] = (now, digest)
        return OpenerVerdict("ok")

    async def forget(self, user: str) -> None:
        self._by_user.pop(user, None)

    async def release(self, user: str, match_id: str) -> None:
        openers = self._by_user.get(user)
        if openers is not None:
            openers.pop(match_id, None)
            if not openers:
                del self._by_user[user]
