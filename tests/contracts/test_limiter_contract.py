"""The `Limiter` contract (server/backends/cluster_state.py): a token bucket per key, as every
node of the deployment sees it. Outage fallbacks are in tests/redis/test_redis_state.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from server.backends.cluster_state import Limiter, MemoryLimiter
from server.backends.redis_state import RedisLimiter
from server.metrics import Metrics
from tests.contracts.conftest import Backing

MakeLimiter = Callable[..., Awaitable[Limiter]]


@pytest.fixture
def make_limiter(backing: Backing) -> MakeLimiter:
    """A node's limiter called `name`; memory: the one process's, whichever node asks."""
    memory: dict[str, Limiter] = {}

    async def make(name: str = "send", rate: float = 10.0, burst: int = 3) -> Limiter:
        if not backing.shared:
            return memory.setdefault(name, MemoryLimiter(rate, burst))
        return RedisLimiter(await backing.client(), name=name, prefix=backing.prefix, rate=rate,
                            burst=burst, fallback=MemoryLimiter(rate, burst),
                            metrics=Metrics())

    return make


async def test_the_burst_then_a_wait_of_one_token(make_limiter: MakeLimiter) -> None:
    bucket = await make_limiter(rate=2.0, burst=3)
    assert [await bucket.take("alice") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await bucket.take("alice")
    assert 0.25 < wait <= 0.5  # about 1/rate
    assert await bucket.take("bob") == 0.0  # one bucket per key
    await asyncio.sleep(wait + 0.02)
    assert await bucket.take("alice") == 0.0  # refilled at `rate`


async def test_one_bucket_for_all_nodes_and_one_per_limit(make_limiter: MakeLimiter) -> None:
    a, b = await make_limiter(rate=2, burst=4), await make_limiter(rate=2, burst=4)
    assert [await a.take("alice"), await b.take("alice"), await a.take("alice"),
            await b.take("alice")] == [0.0] * 4
    assert await a.take("alice") > 0
    assert await b.take("alice") > 0
    other = await make_limiter(name="swipe", rate=10, burst=1)
    assert await other.take("alice") == 0.0  # another limit, another bucket
