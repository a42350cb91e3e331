"""The `SendClaims` contract (server/backends/cluster_state.py): what a send may do with its
client id (`c`) before the store sees it.

Claims shared by every node (Redis) answer new (exclusive), pending and done; the embedded
default (`StoreClaims`) has one writer and leaves every resend to the store's own
idempotency key: always new, never exclusive. Either way at most one concurrent claim of a
key is exclusive. Outages, keys and the send gate are in tests/redis/test_redis_state.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from server.backends.cluster_state import Claim, SendClaims, StoreClaims
from server.backends.redis_state import RedisSendClaims
from server.metrics import Metrics
from tests.contracts.conftest import Backing

MakeClaims = Callable[[], Awaitable[SendClaims]]


@pytest.fixture
def make_claims(backing: Backing) -> MakeClaims:
    """A node's claims; memory: the one process's, whichever node asks."""
    memory = StoreClaims()

    async def make() -> SendClaims:
        if not backing.shared:
            return memory
        return RedisSendClaims(await backing.client(), prefix=backing.prefix,
                               metrics=Metrics())

    return make


async def test_claim_new_then_pending_then_done(make_claims: MakeClaims,
                                                backing: Backing) -> None:
    claims = await make_claims()
    shared = backing.shared
    new = Claim("new", exclusive=shared)
    assert await claims.claim("m1", "alice", "c1") == new
    assert await claims.claim("m1", "alice", "c1") == (Claim("pending") if shared else new)
    assert await claims.claim("m1", "alice", "c2") == new  # another c
    assert await claims.claim("m1", "bob", "c1") == new  # another sender
    claims.confirm("m1", "alice", "c1", 1234567890123, 1_700_000_000_000)  # queued first
    done = Claim("done", 1234567890123, 1_700_000_000_000) if shared else new
    assert await claims.claim("m1", "alice", "c1") == done
    await claims.release("m1", "alice", "c1")  # too late: done stays done
    assert await claims.claim("m1", "alice", "c1") == done


async def test_release_lets_the_retry_claim_again(make_claims: MakeClaims,
                                                  backing: Backing) -> None:
    claims = await make_claims()
    new = Claim("new", exclusive=backing.shared)
    assert await claims.claim("m1", "alice", "c1") == new
    await claims.release("m1", "alice", "c1")
    assert await claims.claim("m1", "alice", "c1") == new


async def test_concurrent_claims_from_two_nodes_give_one_exclusive(
        make_claims: MakeClaims, backing: Backing) -> None:
    a, b = await make_claims(), await make_claims()
    for c in range(20):
        results = await asyncio.gather(*(node.claim("m", "alice", f"c{c}")
                                         for node in (a, b, a, b, a, b)))
        if backing.shared:
            assert sorted(r.state for r in results) == ["new"] + ["pending"] * 5
            assert sum(r.exclusive for r in results) == 1
        else:
            assert results == [Claim("new")] * 6  # the store settles which one is stored
