"""The `OpenerLedger` contract (server/backends/openers.py): the one atomic step that admits,
refuses or holds a user's opener, on memory, one redis-server and a Redis Cluster.

Windows are shortened (the ledgers take them as arguments) so that expiry is tested in
real time; the node's are 24 h and 30 s."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from server.backends.openers import MemoryOpenerLedger, OpenerLedger, OpenerRules
from server.backends.redis_openers import RedisOpenerLedger
from tests.contracts.conftest import Backing, MakeBatcher

MakeLedger = Callable[..., Awaitable[OpenerLedger]]


@pytest.fixture
def make_ledger(backing: Backing, batchers: MakeBatcher) -> MakeLedger:
    """A node's ledger; memory: one process's, whichever node asks (with the same rules)."""
    memory: dict[OpenerRules, MemoryOpenerLedger] = {}

    async def make(per_day: int = 0, duplicates: bool = False, window_ms: int = 60_000,
                   pending_ms: int = 30_000) -> OpenerLedger:
        rules = OpenerRules(per_day, duplicates)
        if not backing.shared:
            return memory.setdefault(rules, MemoryOpenerLedger(
                rules, window_ms=window_ms, pending_ms=pending_ms))
        return RedisOpenerLedger(await batchers(), rules, prefix=backing.prefix,
                                 window_ms=window_ms, pending_ms=pending_ms)
    return make


async def test_an_opener_is_admitted_once_and_a_racing_one_waits(make_ledger: MakeLedger
                                                                 ) -> None:
    ledger = await make_ledger()
    assert await ledger.admit("ann", "m1", None) == ("ok", 0)
    assert (await ledger.admit("ann", "m1", None)).verdict == "pending"
    assert (await ledger.admit("bob", "m1", None)).verdict == "ok"  # per user
    assert (await ledger.admit("ann", "m2", None)).verdict == "ok"  # per match


async def test_a_stale_record_whose_message_never_landed_is_replaced(make_ledger: MakeLedger
                                                                     ) -> None:
    ledger = await make_ledger(per_day=1, pending_ms=200)
    assert (await ledger.admit("ann", "m1", None)).verdict == "ok"
    await asyncio.sleep(0.3)
    assert (await ledger.admit("ann", "m1", None)).verdict == "ok"  # it replaces itself
    assert (await ledger.admit("ann", "m2", None)).verdict == "limit"  # and counted once


async def test_past_the_daily_limit_openers_are_refused_until_the_oldest_leaves(
        make_ledger: MakeLedger) -> None:
    ledger = await make_ledger(per_day=2, window_ms=600)
    assert [(await ledger.admit("ann", m, None)).verdict for m in ("m1", "m2")] == ["ok"] * 2
    refused = await ledger.admit("ann", "m3", None)
    assert refused.verdict == "limit" and 0 < refused.retry_ms <= 600
    assert (await ledger.admit("bob", "m3", None)).verdict == "ok"  # another user's day
    await asyncio.sleep(refused.retry_ms / 1000 + 0.05)
    assert (await ledger.admit("ann", "m3", None)).verdict == "ok"


async def test_a_released_opener_counts_for_nothing(make_ledger: MakeLedger) -> None:
    ledger = await make_ledger(per_day=1, duplicates=True)
    assert (await ledger.admit("ann", "m1", "d1")).verdict == "ok"
    await ledger.release("ann", "m1")
    await ledger.release("ann", "m1")  # idempotent
    assert (await ledger.admit("ann", "m2", "d1")).verdict == "ok"  # neither count nor text


async def test_the_same_text_in_another_match_is_a_duplicate(make_ledger: MakeLedger) -> None:
    ledger = await make_ledger(duplicates=True, window_ms=500)
    assert (await ledger.admit("ann", "m1", "d1")).verdict == "ok"
    assert (await ledger.admit("ann", "m2", "d1")).verdict == "duplicate"
    assert (await ledger.admit("ann", "m2", "d2")).verdict == "ok"
    assert (await ledger.admit("bob", "m3", "d1")).verdict == "ok"  # another user's text
    assert (await ledger.admit("ann", "m4", None)).verdict == "ok"  # media: no text
    await asyncio.sleep(0.6)
    assert (await ledger.admit("ann", "m5", "d1")).verdict == "ok"  # 24 h (here 0.5 s) on


async def test_racing_openers_from_two_nodes_never_overspend(make_ledger: MakeLedger) -> None:
    a, b = await make_ledger(per_day=3), await make_ledger(per_day=3)
    verdicts = await asyncio.gather(*(ledger.admit("ann", f"m{i}", None)
                                      for i in range(12) for ledger in (a, b)))
    assert sum(v.verdict == "ok" for v in verdicts) == 3
    assert {v.verdict for v in verdicts} == {"ok", "limit", "pending"}
