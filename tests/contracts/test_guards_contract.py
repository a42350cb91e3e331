"""The connect-time guards' contracts (server/backends/guards.py): `ConnectionCap`,
`AuthThrottle` and `FlapMarks`, on the in-process guards and on the Redis ones
(server/backends/redis_guards.py) that every node of a cluster shares.

Each simulated node gets a guard of its own (Redis: its own client and batcher); in memory
one process is one state, so every node shares the one instance. Outage fallbacks are the
Redis guards' own concern (tests/cluster/test_cluster_guards.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from server.backends.guards import (
    AuthThrottle,
    ConnectionCap,
    FlapMarks,
    MemoryAuthThrottle,
    MemoryConnectionCap,
    MemoryFlapMarks,
)
from server.backends.redis_guards import RedisAuthThrottle, RedisConnectionCap, RedisFlapMarks
from server.metrics import Metrics
from tests.contracts.conftest import Backing, MakeBatcher

MakeCap = Callable[[str], Awaitable[ConnectionCap]]
Evicted = list[tuple[str, str]]
MEMORY_NODE = "n"  # the one process's node name


@pytest.fixture
def make_cap(backing: Backing, batchers: MakeBatcher) -> MakeCap:
    memory = MemoryConnectionCap(2, MEMORY_NODE)

    async def make(node: str) -> ConnectionCap:
        if not backing.shared:
            return memory
        return RedisConnectionCap(await batchers(), cap=2, node=node, prefix=backing.prefix,
                                  metrics=Metrics())

    return make


async def evictions(evicted: Evicted, n: int, within_s: float = 5.0) -> Evicted:
    """The evictions once `n` have been reported (a Redis cap reports them after a round
    trip), and a moment more, so one too many shows up too."""
    for _ in range(int(within_s / 0.01)):
        if len(evicted) >= n:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    return list(evicted)


def node_of(backing: Backing, node: str) -> str:
    return node if backing.shared else MEMORY_NODE


async def test_past_the_cap_the_oldest_go_and_never_the_new_one(make_cap: MakeCap,
                                                                backing: Backing) -> None:
    cap = await make_cap("a")
    evicted: Evicted = []
    for session in ("s1", "s2", "s3"):
        cap.opened("alice", session, evicted.extend)
        await evictions(evicted, 0, within_s=0)  # in connect order
    assert await evictions(evicted, 1) == [(node_of(backing, "a"), "s1")]
    cap.opened("bob", "s1", evicted.extend)  # another user's sessions are their own
    cap.opened("bob", "s2", evicted.extend)
    assert await evictions(evicted, 1) == [(node_of(backing, "a"), "s1")]


async def test_a_closed_session_no_longer_counts(make_cap: MakeCap, backing: Backing) -> None:
    cap = await make_cap("a")
    evicted: Evicted = []
    for session in ("s1", "s2"):
        cap.opened("alice", session, evicted.extend)
        await evictions(evicted, 0, within_s=0)
    cap.closed("alice", "s1")
    cap.closed("alice", "s1")  # idempotent
    cap.opened("alice", "s3", evicted.extend)  # s2 and s3: at the cap, not past it
    await evictions(evicted, 0, within_s=0)
    cap.opened("alice", "s4", evicted.extend)  # now s2 is the oldest past it
    assert await evictions(evicted, 1) == [(node_of(backing, "a"), "s2")]


async def test_the_cap_counts_the_sessions_of_every_node(make_cap: MakeCap,
                                                         backing: Backing) -> None:
    a, b = await make_cap("a"), await make_cap("b")
    evicted: Evicted = []
    a.opened("alice", "s1", evicted.extend)
    await evictions(evicted, 0, within_s=0)
    b.opened("alice", "s2", evicted.extend)
    await evictions(evicted, 0, within_s=0)
    b.opened("alice", "s3", evicted.extend)  # the oldest is on the other node: named so
    assert await evictions(evicted, 1) == [(node_of(backing, "a"), "s1")]


MakeThrottle = Callable[..., Awaitable[AuthThrottle]]


@pytest.fixture
def make_throttle(backing: Backing,
                  batchers: MakeBatcher) -> MakeThrottle:
    memory: dict[int, AuthThrottle] = {}

    async def make(limit: int = 3, window_s: float = 10.0) -> AuthThrottle:
        if not backing.shared:
            return memory.setdefault(limit, MemoryAuthThrottle(limit, window_s))
        return RedisAuthThrottle(await batchers(), limit=limit, window_s=window_s,
                                 prefix=backing.prefix, metrics=Metrics())

    return make


async def test_failures_past_the_limit_block_the_ip_for_the_window(
        make_throttle: MakeThrottle) -> None:
    throttle = await make_throttle(limit=3, window_s=10.0)
    assert [await throttle.failed("10.0.0.1") for _ in range(2)] == [0.0, 0.0]
    assert throttle.blocked("10.0.0.1") == 0.0
    blocked_for = await throttle.failed("10.0.0.1")
    assert 9.0 < blocked_for <= 10.0
    assert 9.0 < throttle.blocked("10.0.0.1") <= 10.0
    assert throttle.blocked("10.0.0.2") == 0.0  # per IP
    assert await throttle.failed("10.0.0.2") == 0.0


async def test_failures_on_every_node_count_together(make_throttle: MakeThrottle) -> None:
    a, b = await make_throttle(limit=3), await make_throttle(limit=3)
    assert [await a.failed("10.0.0.1"), await b.failed("10.0.0.1")] == [0.0, 0.0]
    assert await a.failed("10.0.0.1") > 9.0  # the third failure of the cluster


async def test_a_block_learnt_from_another_node_refuses_here(
        make_throttle: MakeThrottle) -> None:
    throttle = await make_throttle()
    throttle.block("10.0.0.9", 5.0)
    assert 4.0 < throttle.blocked("10.0.0.9") <= 5.0
    throttle.block("10.0.0.9", 0.0)  # a shorter block never shortens a longer one
    assert throttle.blocked("10.0.0.9") > 4.0


async def test_a_limit_of_zero_turns_the_throttle_off(make_throttle: MakeThrottle) -> None:
    throttle = await make_throttle(limit=0)
    assert [await throttle.failed("10.0.0.1") for _ in range(5)] == [0.0] * 5
    assert throttle.blocked("10.0.0.1") == 0.0


MakeMarks = Callable[[], Awaitable[FlapMarks]]


@pytest.fixture
def make_marks(backing: Backing, batchers: MakeBatcher) -> MakeMarks:
    memory = MemoryFlapMarks()

    async def make() -> FlapMarks:
        if not backing.shared:
            return memory
        return RedisFlapMarks(await batchers(), prefix=backing.prefix, metrics=Metrics())

    return make


async def test_a_mark_goes_to_exactly_one_taker_on_any_node(make_marks: MakeMarks) -> None:
    a, b = await make_marks(), await make_marks()
    assert not await a.take("alice")  # nothing marked
    for _ in range(5):
        await a.mark("alice", 5.0)
        taken = await asyncio.gather(a.take("alice"), b.take("alice"), b.take("alice"))
        assert sorted(taken) == [False, False, True]
    await a.mark("alice", 5.0)
    assert not await b.take("bob")  # per user
    assert await b.take("alice")  # marked on one node, taken on the other


async def test_a_mark_runs_out_after_its_ttl(make_marks: MakeMarks) -> None:
    marks = await make_marks()
    await marks.mark("alice", 0.05)
    await asyncio.sleep(0.2)
    assert not await marks.take("alice")
