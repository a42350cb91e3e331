"""The `PushGates` contract (push/gates.py): a push id is claimed by one worker of all nodes
at a time and marked sent once done, the first message of a burst per user and match is
pushed, and a delivered mark holds for its window.

Windows of 1 s: a stall of the loaded machine must not lapse them between two calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from push.gates import Claim, MemoryPushGates, PushGates
from push.redis_queue import RedisPushGates
from tests.contracts.conftest import Backing

MakeGates = Callable[[], Awaitable[PushGates]]


@pytest.fixture
def make_gates(backing: Backing) -> MakeGates:
    """A node's gates; memory: the one process's, whichever node asks."""
    memory = MemoryPushGates()

    async def make() -> PushGates:
        if not backing.shared:
            return memory
        return RedisPushGates(await backing.client(), prefix=backing.prefix)

    return make


async def test_a_push_is_claimed_once_across_nodes(make_gates: MakeGates) -> None:
    a, b = await make_gates(), await make_gates()
    assert await a.claim("msg:m1:1:dev", 5) == (Claim.NEW, 0.0)
    state, left = await b.claim("msg:m1:1:dev", 5)
    assert state is Claim.BUSY and 4 < left <= 5
    await a.finish("msg:m1:1:dev", final=False)  # a retry follows: released
    assert (await b.claim("msg:m1:1:dev", 1))[0] is Claim.NEW
    await b.refresh(["msg:m1:1:dev"], 5)
    await asyncio.sleep(1.1)
    assert (await a.claim("msg:m1:1:dev", 5))[0] is Claim.BUSY  # refreshed: still held
    await b.finish("msg:m1:1:dev", final=True)
    assert (await a.claim("msg:m1:1:dev", 5))[0] is Claim.SENT


async def test_an_unfinished_claim_lapses_after_its_ttl(make_gates: MakeGates) -> None:
    a, b = await make_gates(), await make_gates()
    assert await a.claim("p1", 1) == (Claim.NEW, 0.0)
    assert (await b.claim("p1", 1))[0] is Claim.BUSY
    await asyncio.sleep(1.1)
    assert (await b.claim("p1", 5))[0] is Claim.NEW  # the worker holding it died
    await b.finish("p1", final=True)
    assert (await a.claim("p1", 5))[0] is Claim.SENT


async def test_the_first_message_of_a_burst_per_user_and_match(make_gates: MakeGates) -> None:
    a, b = await make_gates(), await make_gates()
    assert await a.first_in_burst("bob", "m1", 1)
    assert not await b.first_in_burst("bob", "m1", 1)
    assert await b.first_in_burst("bob", "m2", 1)  # another match
    assert await b.first_in_burst("ann", "m1", 1)  # another user
    assert await a.first_in_burst("bob", "m1", 0)  # no window: every message
    assert await a.first_in_burst("bob", "m1", 0)
    await asyncio.sleep(1.1)
    assert await b.first_in_burst("bob", "m1", 1)


async def test_a_delivered_mark_holds_for_its_window(make_gates: MakeGates) -> None:
    a, b = await make_gates(), await make_gates()
    assert not await a.recently_delivered("bob", "m1")
    await b.mark_delivered("bob", "m1", 5)
    assert await a.recently_delivered("bob", "m1")
    assert not await a.recently_delivered("bob", "m2")
    assert not await a.recently_delivered("ann", "m1")
    await b.mark_delivered("ann", "m1", 0)  # no window: no mark
    assert not await a.recently_delivered("ann", "m1")
