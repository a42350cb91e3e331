"""The `Store` contract of the swipe economy (latest swipe, undo, likes by time, the deck),
on every backend (tests/storage/conftest.py: SQLite and a real Cassandra node)."""

from __future__ import annotations

from storage.base import MAX_DECK_CANDIDATES, Store, Swipe
from tests.storage.conftest import OpenStore

T0 = 1_700_000_000_000


async def swipe(store: Store, swiper: str, target: str, action: str, ts: int) -> Swipe:
    s = Swipe(swiper, target, action, ts)  # type: ignore[arg-type]
    await store.record_swipe(swiper, target, s.action, ts)
    await store.index_swipe(s)
    return s


async def test_the_latest_swipe_is_kept_and_survives_a_restart(open_store: OpenStore) -> None:
    store = await open_store()
    assert await store.last_swipe("ann") is None
    await swipe(store, "ann", "bob", "like", T0)
    latest = await swipe(store, "ann", "cat", "pass", T0 + 5)
    await swipe(store, "ann", "dan", "like", T0 + 2)  # a late, older one: not the latest
    assert await store.last_swipe("ann") == latest
    again = await open_store()
    assert await again.last_swipe("ann") == latest
    assert await again.last_swipe("bob") is None


async def test_undo_removes_the_swipe_and_the_like_received(store: Store) -> None:
    s = await swipe(store, "ann", "bob", "superlike", T0)
    assert [x.swiper for x in await store.likes_received("bob", 10)] == ["ann"]
    assert await store.undo_swipe(s) is True
    assert await store.get_swipe("ann", "bob") is None
    assert await store.likes_received("bob", 10) == []
    assert await store.last_swipe("ann") is None
    assert await store.undo_swipe(s) is False  # idempotent: nothing left to remove
    assert await store.deck_exclusions("ann", ["bob"]) == set()


async def test_undo_leaves_a_later_swipe_of_the_pair(store: Store) -> None:
    old = await swipe(store, "ann", "bob", "like", T0)
    await swipe(store, "ann", "bob", "pass", T0 + 10)
    assert await store.undo_swipe(old) is False
    assert await store.get_swipe("ann", "bob") == "pass"
    assert (await store.last_swipe("ann")) == Swipe("ann", "bob", "pass", T0 + 10)
    # and a swipe made again after an undo stands
    await swipe(store, "ann", "cat", "like", T0 + 20)
    await store.undo_swipe(Swipe("ann", "cat", "like", T0 + 20))
    await swipe(store, "ann", "cat", "like", T0 + 30)
    assert await store.get_swipe("ann", "cat") == "like"
    assert [x.ts for x in await store.likes_received("cat", 10)] == [T0 + 30]


async def test_likes_received_newest_first_in_pages(store: Store) -> None:
    for i in range(7):
        await swipe(store, f"u{i}", "zoe", "superlike" if i == 3 else "like", T0 + i)
    await swipe(store, "u5", "zoe", "pass", T0 + 100)  # passed over later: gone
    await swipe(store, "u1", "zoe", "like", T0 + 50)  # liked again later: moves up
    first = await store.likes_received("zoe", 3)
    assert [(x.swiper, x.action, x.ts) for x in first] == [
        ("u1", "like", T0 + 50), ("u6", "like", T0 + 6), ("u4", "like", T0 + 4)]
    last = first[-1]
    rest = await store.likes_received("zoe", 10, (last.ts, last.swiper))
    assert [(x.swiper, x.action) for x in rest] == [("u3", "superlike"), ("u2", "like"),
                                                     ("u0", "like")]
    assert all(x.target == "zoe" for x in first + rest)
    assert await store.likes_received("nobody", 10) == []


async def test_deck_exclusions_swiped_blocked_and_blocked_by(store: Store) -> None:
    await swipe(store, "ann", "s1", "pass", T0)
    await swipe(store, "ann", "s2", "like", T0)
    await store.add_block("ann", "b1", T0)
    await store.add_block("b2", "ann", T0)
    await swipe(store, "other", "ann", "like", T0)  # liked by: stays in the deck
    await store.add_block("other", "x", T0)  # someone else's block: no effect
    candidates = ["s1", "fresh", "b1", "s2", "b2", "other", "x", "s1"]
    assert await store.deck_exclusions("ann", candidates) == {"s1", "s2", "b1", "b2"}
    assert await store.deck_exclusions("ann", []) == set()


async def test_deck_exclusions_take_a_full_batch(store: Store) -> None:
    for i in range(0, MAX_DECK_CANDIDATES, 7):
        await store.record_swipe("ann", f"c{i}", "pass", T0)
    candidates = [f"c{i}" for i in range(MAX_DECK_CANDIDATES)]
    excluded = await store.deck_exclusions("ann", candidates)
    assert excluded == {f"c{i}" for i in range(0, MAX_DECK_CANDIDATES, 7)}
