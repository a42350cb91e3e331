"""The `SendGate` contract (server/backends/cluster_state.py): a send's rate token and its
claim of the client id, together. `SequentialSendGate` takes them one after the other (the
embedded default); `RedisSendGate` (server/backends/redis_state.py) in one batch entry.
Either way a refused token leaves no claim behind, so the retry is not told "pending"."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from server.backends.cluster_state import (
    Claim,
    MemoryLimiter,
    SendGate,
    SequentialSendGate,
    StoreClaims,
)
from server.backends.redis_state import RedisLimiter, RedisSendClaims, RedisSendGate
from server.metrics import Metrics
from tests.contracts.conftest import Backing, MakeBatcher

MakeGate = Callable[[], Awaitable[SendGate]]
RATE, BURST = 4.0, 2


@pytest.fixture
def make_gate(backing: Backing, batchers: MakeBatcher) -> MakeGate:
    memory = SequentialSendGate(MemoryLimiter(RATE, BURST), StoreClaims())

    async def make() -> SendGate:
        if not backing.shared:
            return memory
        batcher = await batchers()
        client = batcher.client
        metrics = Metrics()
        limiter = RedisLimiter(client, name="send", prefix=backing.prefix, rate=RATE,
                               burst=BURST, fallback=MemoryLimiter(RATE, BURST),
                               metrics=metrics, batcher=batcher)
        claims = RedisSendClaims(client, prefix=backing.prefix, metrics=metrics,
                                 batcher=batcher)
        return RedisSendGate(limiter, claims, batcher)

    return make


async def test_a_token_and_a_claim_then_a_refusal_that_leaves_no_claim(
        make_gate: MakeGate, backing: Backing) -> None:
    gate = await make_gate()
    new = Claim("new", exclusive=backing.shared)
    assert await gate.admit("alice", "m1", "c1") == (0.0, new)
    assert await gate.admit("alice", "m1", "c2") == (0.0, new)
    wait, _ = await gate.admit("alice", "m1", "c3")  # the burst is spent
    assert 0.0 < wait <= 1 / RATE
    await asyncio.sleep(wait + 0.02)
    assert await gate.admit("alice", "m1", "c3") == (0.0, new)  # not "pending"


async def test_the_claim_of_a_resend_says_what_the_first_send_left(
        make_gate: MakeGate, backing: Backing) -> None:
    gate = await make_gate()
    assert (await gate.admit("alice", "m1", "c1"))[1] == Claim("new", exclusive=backing.shared)
    wait, claim = await gate.admit("alice", "m1", "c1")  # the first is still being stored
    assert wait == 0.0
    assert claim == (Claim("pending") if backing.shared else Claim("new"))


async def test_every_node_takes_from_one_bucket(make_gate: MakeGate) -> None:
    a, b = await make_gate(), await make_gate()
    assert [(await a.admit("alice", "m1", "c1"))[0],
            (await b.admit("alice", "m1", "c2"))[0]] == [0.0, 0.0]
    assert (await a.admit("alice", "m1", "c3"))[0] > 0
    assert (await b.admit("bob", "m2", "c1"))[0] == 0.0  # a bucket per user
