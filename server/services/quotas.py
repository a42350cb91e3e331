"""Daily like and super-like quotas: which swipes spend, when a day begins, who is exempt.

A day runs from `quota_reset_hour_utc` to the same hour the next day (UTC, the same for
every user: one reset moment the app can show). Counting is the `Quotas` backend's (in
memory, or one counter in Redis for the cluster); this module only decides what to count.
Only likes and super likes spend; a pass never does. A token whose `quota_exempt_claim`
holds one of `quota_exempt_values` (e.g. `"plan": "premium"`) spends nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from protocol.errors import ErrorCode, ProtocolError
from server.backends.quotas import Quotas

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
KINDS = ("like", "superlike")


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    likes_per_day: int = 0  # 0: unlimited
    superlikes_per_day: int = 0
    reset_hour_utc: int = 0
    exempt_values: frozenset[str] = frozenset()

    def limit(self, action: str) -> int:
        if action == "like":
            return self.likes_per_day
        if action == "superlike":
            return self.superlikes_per_day
        return 0

    def exempt(self, tier: tuple[str, ...]) -> bool:
        """Whether a token carrying these values of the exempt claim spends nothing."""
        return any(value in self.exempt_values for value in tier)


def day_of(now_ms: int, reset_hour_utc: int) -> tuple[int, int]:
    """(start, end) in unix ms of the quota day holding `now_ms`."""
    offset = reset_hour_utc * HOUR_MS
    start = (now_ms - offset) // DAY_MS * DAY_MS + offset
    return start, start + DAY_MS


@dataclass(frozen=True, slots=True)
class Spent:
    """One unit taken for a swipe: what to give back if the swipe is not stored."""

    kind: str
    day: int
    expires_ms: int


class QuotaService:
    def __init__(self, quotas: Quotas, policy: QuotaPolicy,
                 clock: Callable[[], float] = time.time) -> None:
        self.quotas = quotas
        self.policy = policy
        self.clock = clock

    def metered(self, action: str, tier: tuple[str, ...]) -> bool:
        return self.policy.limit(action) > 0 and not self.policy.exempt(tier)

    async def spend(self, user: str, action: str, tier: tuple[str, ...]) -> Spent | None:
        """Take one unit for a swipe of `action`, or raise `quota_exceeded` with the time
        of the next reset. None when the swipe is not metered."""
        if not self.metered(action, tier):
            return None
        day, end = day_of(int(self.clock() * 1000), self.policy.reset_hour_utc)
        left = await self.quotas.spend(user, action, day, self.policy.limit(action), end)
        if left < 0:
            noun = "likes" if action == "like" else "super likes"
            raise ProtocolError(ErrorCode.QUOTA_EXCEEDED,
                                f"no {noun} left today: {self.policy.limit(action)} a day",
                                reset_ms=end)
        return Spent(action, day, end)

    async def refund(self, user: str, spent: Spent, token: str) -> None:
        """Give back a unit whose swipe failed to store (`token` names that attempt)."""
        await self.quotas.give_back(user, spent.kind, spent.day, token, spent.expires_ms)

    async def give_back(self, user: str, action: str, swiped_ms: int, token: str,
                        tier: tuple[str, ...] = ()) -> bool:
        """An undone swipe's unit, if it was spent today (a past day's is gone anyway) by a
        token that spends (an exempt one never took a unit)."""
        if not self.metered(action, tier):
            return False
        day, end = day_of(int(self.clock() * 1000), self.policy.reset_hour_utc)
        if day_of(swiped_ms, self.policy.reset_hour_utc)[0] != day:
            return False
        return await self.quotas.give_back(user, action, day, token, end)

    async def status(self, user: str, tier: tuple[str, ...]) -> dict[str, int | None]:
        """`{"likes_left", "superlikes_left", "reset_at"}`: None where unlimited (or
        exempt); `reset_at` (unix ms) None when nothing is limited."""
        day, end = day_of(int(self.clock() * 1000), self.policy.reset_hour_utc)
        metered = [kind for kind in KINDS if self.metered(kind, tier)]
        used = await self.quotas.used(user, metered, day) if metered else {}
        left: dict[str, int | None] = {
            kind: max(0, self.policy.limit(kind) - used[kind]) if kind in used else None
            for kind in KINDS}
        return {"likes_left": left["like"], "superlikes_left": left["superlike"],
                "reset_at": end if metered else None}
