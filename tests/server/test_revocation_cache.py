"""`NotBefore`, the per-node cache of each user's "tokens not before" (server/services/
accounts.py), over a real SQLite store: bounded, expiring, one store read per miss however
many wait, and never lowered by a read that a revocation overtook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.services.accounts import NotBefore, revoked
from storage import StoreUnavailable
from storage.sqlite import SqliteStore

T0 = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(tmp_path / "r.db", synchronous="NORMAL")
    await db.start()
    yield db
    await db.close()


class CountedReads:
    """The store's read, counted, and held back while `gate` is set."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.reads = 0
        self.gate: asyncio.Event | None = None
        self.failing = False

    async def __call__(self, user: str) -> int | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise StoreUnavailable("injected")
        return await self.store.tokens_not_before(user)


def test_the_rule() -> None:
    assert not revoked(T0 / 1000, None) and not revoked(None, None)
    assert revoked(None, T0)  # undated: refused once there is a not-before
    assert revoked(T0 // 1000, T0) and revoked(T0 // 1000, T0 + 999)  # same second
    assert not revoked(T0 // 1000 + 1, T0 + 999)
    assert revoked((T0 - 1) / 1000, T0) and not revoked((T0 + 1) / 1000, T0)


async def test_hits_expire_and_misses_share_one_read(store: SqliteStore) -> None:
    reads, clock = CountedReads(store), Clock()
    cache = NotBefore(reads, ttl_s=5.0, max_entries=10, clock=clock)
    reads.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(cache.get("ann")) for _ in range(20)]
    await asyncio.sleep(0.01)
    reads.gate.set()
    assert await asyncio.gather(*waiting) == [None] * 20 and reads.reads == 1
    reads.gate = None
    await store.revoke_tokens("ann", T0)  # elsewhere, its message missed
    assert await cache.get("ann") is None and reads.reads == 1  # fresh for 5 s
    clock.now += 5.0
    assert await cache.get("ann") == T0 and reads.reads == 2  # expired: read again


async def test_a_read_overtaken_by_a_revocation_does_not_lower_it(store: SqliteStore) -> None:
    reads = CountedReads(store)
    cache = NotBefore(reads, ttl_s=5.0, max_entries=10)
    reads.gate = asyncio.Event()
    pending = asyncio.ensure_future(cache.get("ann"))
    await asyncio.sleep(0.01)
    cache.raised("ann", T0)  # the revocation's message, while the read is out
    reads.gate.set()
    assert await pending == T0  # the read found nothing yet: merged, not overwritten
    assert cache.known("ann") == T0
    assert cache.raised("ann", T0 - 10) == T0  # older news lowers nothing


async def test_entries_are_bounded_least_recently_used_first(store: SqliteStore) -> None:
    reads = CountedReads(store)
    cache = NotBefore(reads, ttl_s=60.0, max_entries=3)
    for user in ("a", "b", "c"):
        await cache.get(user)
    await cache.get("a")  # used: "b" is now the oldest
    await cache.get("d")
    assert reads.reads == 4
    await cache.get("a")
    await cache.get("c")
    assert reads.reads == 4  # still held
    await cache.get("b")
    assert reads.reads == 5  # forgotten, read again


async def test_a_store_outage_uses_a_stale_entry_or_raises(store: SqliteStore) -> None:
    reads, clock = CountedReads(store), Clock()
    cache = NotBefore(reads, ttl_s=1.0, max_entries=10, clock=clock)
    await store.revoke_tokens("ann", T0)
    assert await cache.get("ann") == T0
    reads.failing = True
    clock.now += 2.0
    assert await cache.get("ann") == T0  # stale, and not refreshed: the next get reads
    assert await cache.get("ann") == T0 and reads.reads == 3
    with pytest.raises(StoreUnavailable):
        await cache.get("bob")  # nothing known: no guess
    reads.failing = False
    assert await cache.get("bob") is None
