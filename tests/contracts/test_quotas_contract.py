"""The `Quotas` contract (server/backends/quotas.py) on memory, a real redis-server and the
session's real Redis Cluster: atomic spends, give-backs once per token, per user, kind and
period, shared by every node where the backing is shared."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from server.backends.quotas import SWEEP_EVERY, MemoryQuotas, Quotas
from server.backends.redis_quotas import RedisQuotas
from server.metrics import Metrics
from tests.contracts.conftest import Backing, MakeBatcher

MakeQuotas = Callable[[], Awaitable[Quotas]]
DAY = 1_700_000_000_000  # the period's start (unix ms)


def expires() -> int:
    return int(time.time() * 1000) + 60_000


@pytest.fixture
def make_quotas(backing: Backing, batchers: MakeBatcher) -> MakeQuotas:
    memory = MemoryQuotas()

    async def make() -> Quotas:
        if not backing.shared:
            return memory  # one process, one count
        return RedisQuotas(await batchers(), prefix=backing.prefix, fallback=MemoryQuotas(),
                           metrics=Metrics())

    return make


async def test_spend_counts_down_then_refuses(make_quotas: MakeQuotas) -> None:
    q = await make_quotas()
    assert [await q.spend("ann", "like", DAY, 3, expires()) for _ in range(4)] == [2, 1, 0, -1]
    assert await q.used("ann", ["like", "superlike"], DAY) == {"like": 3, "superlike": 0}
    assert await q.spend("ann", "like", DAY, 3, expires()) == -1  # a refusal takes nothing
    assert (await q.used("ann", ["like"], DAY))["like"] == 3


async def test_counters_are_per_user_kind_and_period(make_quotas: MakeQuotas) -> None:
    q = await make_quotas()
    assert await q.spend("ann", "like", DAY, 1, expires()) == 0
    assert await q.spend("ann", "like", DAY, 1, expires()) == -1
    assert await q.spend("bob", "like", DAY, 1, expires()) == 0
    assert await q.spend("ann", "superlike", DAY, 1, expires()) == 0
    assert await q.spend("ann", "like", DAY + 86_400_000, 1, expires()) == 0  # the next day
    assert await q.used("cat", ["like"], DAY) == {"like": 0}


async def test_concurrent_spends_never_take_more_than_the_limit(
        make_quotas: MakeQuotas) -> None:
    nodes = [await make_quotas() for _ in range(3)]
    results = await asyncio.gather(*(nodes[i % 3].spend("ann", "like", DAY, 10, expires())
                                     for i in range(40)))
    assert sorted(r for r in results if r >= 0) == list(range(10))
    assert results.count(-1) == 30
    assert (await nodes[0].used("ann", ["like"], DAY))["like"] == 10


async def test_every_node_sees_one_count(make_quotas: MakeQuotas) -> None:
    a, b = await make_quotas(), await make_quotas()
    assert await a.spend("ann", "like", DAY, 2, expires()) == 1
    assert await b.spend("ann", "like", DAY, 2, expires()) == 0
    assert await a.spend("ann", "like", DAY, 2, expires()) == -1
    assert (await b.used("ann", ["like"], DAY))["like"] == 2


async def test_give_back_once_per_token_never_below_zero(make_quotas: MakeQuotas) -> None:
    a, b = await make_quotas(), await make_quotas()
    for _ in range(2):
        await a.spend("ann", "like", DAY, 2, expires())
    assert await a.spend("ann", "like", DAY, 2, expires()) == -1
    racing = await asyncio.gather(a.give_back("ann", "like", DAY, "bob:1", expires()),
                                  b.give_back("ann", "like", DAY, "bob:1", expires()))
    assert sorted(racing) == [False, True]  # two undos of one swipe: one unit back
    assert (await a.used("ann", ["like"], DAY))["like"] == 1
    assert await b.spend("ann", "like", DAY, 2, expires()) == 0
    assert await a.give_back("ann", "like", DAY, "cat:2", expires()) is True
    assert await a.give_back("ann", "like", DAY, "dan:3", expires()) is True
    assert await a.give_back("ann", "like", DAY, "eve:4", expires()) is False  # at zero
    assert (await b.used("ann", ["like"], DAY))["like"] == 0


async def test_a_counter_is_gone_after_its_expiry(make_quotas: MakeQuotas) -> None:
    q = await make_quotas()
    soon = int(time.time() * 1000) + 300
    assert await q.spend("ann", "like", DAY, 1, soon) == 0
    await asyncio.sleep(0.5)
    assert await q.used("ann", ["like"], DAY) == {"like": 0}


def test_memory_forgets_expired_counters() -> None:
    now = [1000.0]
    q = MemoryQuotas(clock=lambda: now[0])

    async def run() -> None:
        await q.spend("ann", "like", DAY, 5, 1_001_000)
        await q.give_back("ann", "like", DAY, "t", 1_001_000)
        now[0] = 2000.0
        for i in range(SWEEP_EVERY):
            await q.spend(f"u{i}", "like", DAY, 5, 3_000_000)

    asyncio.run(run())
    assert ("ann", "like", DAY) not in q._counts and ("ann", "t") not in q._returned
    assert len(q._counts) == SWEEP_EVERY  # the live ones stay
