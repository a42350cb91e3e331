"""What the quota service counts and when a day begins (fast, on the in-memory counters; the
real-node and cluster tests are in test_swipe_economy.py and tests/cluster/)."""

from __future__ import annotations

import pytest

from protocol.errors import ErrorCode, ProtocolError
from server.backends.quotas import MemoryQuotas
from server.services.quotas import DAY_MS, HOUR_MS, QuotaPolicy, QuotaService, day_of

NOON = 1_764_676_800_000  # 2025-12-02 12:00 UTC


@pytest.mark.parametrize(("now", "hour", "start"), [
    (NOON, 0, NOON - 12 * HOUR_MS),
    (NOON, 12, NOON),  # exactly at the reset: a new day
    (NOON - 1, 12, NOON - DAY_MS),
    (NOON, 13, NOON - 23 * HOUR_MS),  # before the reset hour: yesterday's day
    (NOON, 23, NOON - 13 * HOUR_MS),
])
def test_the_day_begins_at_the_reset_hour(now: int, hour: int, start: int) -> None:
    assert day_of(now, hour) == (start, start + DAY_MS)
    assert (start - hour * HOUR_MS) % DAY_MS == 0 and start <= now < start + DAY_MS


def service(now_ms: list[int], **policy: object) -> QuotaService:
    return QuotaService(MemoryQuotas(clock=lambda: now_ms[0] / 1000),
                        QuotaPolicy(**policy),  # type: ignore[arg-type]
                        clock=lambda: now_ms[0] / 1000)


async def test_spend_refuse_and_refill_the_next_day() -> None:
    now = [NOON]
    quotas = service(now, likes_per_day=2, reset_hour_utc=6)
    assert await quotas.spend("ann", "pass", ()) is None  # passes are never metered
    assert await quotas.spend("ann", "like", ()) is not None
    assert await quotas.spend("ann", "like", ()) is not None
    with pytest.raises(ProtocolError) as error:
        await quotas.spend("ann", "like", ())
    reset = day_of(NOON, 6)[1]
    assert (error.value.code, error.value.reset_ms) == (ErrorCode.QUOTA_EXCEEDED, reset)
    assert await quotas.status("ann", ()) == {"likes_left": 0, "superlikes_left": None,
                                              "reset_at": reset}
    now[0] = reset  # the reset hour: a new day, a full quota
    assert (await quotas.status("ann", ()))["likes_left"] == 2
    assert await quotas.spend("ann", "like", ()) is not None


async def test_give_back_only_for_today_and_metered_tokens() -> None:
    now = [NOON]
    quotas = service(now, likes_per_day=1, exempt_values=frozenset({"premium"}))
    await quotas.spend("ann", "like", ())
    assert await quotas.give_back("ann", "like", NOON - DAY_MS, "bob:1") is False  # yesterday
    assert await quotas.give_back("ann", "like", NOON, "bob:2", ("premium",)) is False
    assert await quotas.give_back("ann", "like", NOON, "bob:3") is True
    assert await quotas.give_back("ann", "like", NOON, "bob:3") is False  # once per swipe
    assert (await quotas.status("ann", ()))["likes_left"] == 1
    assert await quotas.spend("vip", "like", ("gold", "premium")) is None
    assert await quotas.status("vip", ("premium",)) == {
        "likes_left": None, "superlikes_left": None, "reset_at": None}
