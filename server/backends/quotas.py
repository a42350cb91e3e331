"""Daily allowances (likes, super likes) counted per user and period: the `Quotas` protocol
and its in-process implementation; the Redis one, shared by every node, is in
`server/backends/redis_quotas.py`.

A quota is a counter per (user, kind, period), where a period is named by the unix ms it
began at: a new period is a new counter, so a refill is nothing but time passing, and a
counter expires once its period is over. Spending is check-and-take in one step, so that
two devices of one user spending the last like at the same moment get one yes and one no.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

SWEEP_EVERY = 4096  # operations between sweeps of expired counters (memory only)


class Quotas(Protocol):
    async def spend(self, user: str, kind: str, period: int, limit: int,
                    expires_ms: int) -> int:
        """Take one unit of `user`'s `kind` allowance of `limit` for `period`, if one is
        left. Returns how many are left after it (0 or more), or -1 when none was left (and
        nothing was taken). Atomic: concurrent spends never take more than `limit` in all.
        `expires_ms` (unix ms) is when the counter may be forgotten (the period's end)."""

    async def give_back(self, user: str, kind: str, period: int, token: str,
                        expires_ms: int) -> bool:
        """Return one unit taken in `period` (an undone swipe). At most once per `token` (the
        swipe it was spent on), so that two racing undos of one swipe give back one unit;
        never below zero. True if a unit came back."""

    async def used(self, user: str, kinds: Sequence[str], period: int) -> dict[str, int]:
        """How many of each kind `user` spent in `period` (0 for none)."""

    async def forget(self, user: str) -> None:
        """Drop every counter and give-back mark of `user` (account erasure)."""


class MemoryQuotas:
    """The counters in this process (the embedded default: one node, one count)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, str, int], tuple[int, int]] = {}  # -> (n, expires)
        self._returned: dict[tuple[str, str], int] = {}  # (user, token) -> expires
        self._ops = 0

    async def spend(self, user: str, kind: str, period: int, limit: int,
                    expires_ms: int) -> int:
        self._tick()
        key = (user, kind, period)
        n = self._count(key)
        if n >= limit:
            return -1
        self._counts[key] = (n + 1, expires_ms)
        return limit - n - 1

    async def give_back(self, user: str, kind: str, period: int, token: str,
                        expires_ms: int) -> bool:
        self._tick()
        if (user, token) in self._returned:
            return False
        self._returned[(user, token)] = expires_ms
        key = (user, kind, period)
        n = self._count(key)
        if n <= 0:
            return False
        self._counts[key] = (n - 1, self._counts[key][1])
        return True

    async def forget(self, user: str) -> None:
        self._counts = {k: v for k, v in self._counts.items() if k[0] != user}
        self._returned = {k: v for k, v in self._returned.items() if k[0] != user}

    async def used(self, user: str, kinds: Sequence[str], period: int) -> dict[str, int]:
        return {kind: self._count((user, kind, period)) for kind in kinds}

    def _count(self, key: tuple[str, str, int]) -> int:
        """The counter's value; 0 once it expired (as a Redis key would be gone)."""
        n, expires = self._counts.get(key, (0, 0))
        return n if expires > self._clock() * 1000 else 0

    def _tick(self) -> None:
        """Forget expired counters and give-back marks now and then (bounded memory)."""
        self._ops += 1
        if self._ops % SWEEP_EVERY:
            return
        now = int(self._clock() * 1000)
        self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        self._returned = {k: v for k, v in self._returned.items() if v > now}
