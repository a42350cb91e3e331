"""The swipe economy on Cassandra: latest swipes for undo, likes by time, the deck filter.

Every query reads or writes one partition (`storage.cassandra_tables.MIGRATIONS[3]`). No
read before a write and no lightweight transaction: a swipe's rows carry a write stamp made
from the swipe's time (ms * 1000 + a sub-ms count, `SubMsStamps`), so undoing the swipe of
time `ts` is a delete stamped `ts * 1000 + 999`. It removes what that swipe wrote and
nothing a later swipe wrote (stamped from a later ms), whatever the order they land in.

`likes_by_time` is an index of `likes_received` by time. A pass or a later like of the
same pair does not know the old row's time, so the old row stays there; a read checks each
row of a page against `likes_received` (one `IN` query on its clustering key) and drops the
stale ones it finds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

from storage.base import Swipe, SwipeAction

Row = dict[str, Any]
Run = Callable[..., Awaitable[list[Row]]]
All = Callable[[Iterable[Awaitable[Any]]], Awaitable[list[Any]]]
LIKES = ("like", "superlike")
MAX_STALE_ROUNDS = 20  # pages of stale rows one `likes_received` call reads past at most


def undo_stamp(ts: int) -> int:
    """The write stamp that removes every row of the swipe of `ts` (ms) and none later."""
    return ts * 1000 + 999


class SwipeTables:
    """The swipe-economy calls of the `Store` over `run` (send one prepared statement by
    name) and `all_` (await several, raising the first failure once all are done)."""

    def __init__(self, run: Run, all_: All, stamp: Callable[[int], int]) -> None:
        self._run = run
        self._all = all_
        self._stamp = stamp  # the store's swipe stamps: the later call wins a tie

    async def index_swipe(self, s: Swipe) -> None:
        stamp = self._stamp(s.ts)
        calls = [self._run("put_last_swipe", s.swiper, s.target, s.action, s.ts, stamp)]
        if s.action in LIKES:
            calls.append(self._run("put_timed_like", s.target, s.ts, s.swiper, s.action, stamp))
        await self._all(calls)

    async def last_swipe(self, swiper: str) -> Swipe | None:
        rows = await self._run("get_last_swipe", swiper)
        if not rows or rows[0]["target"] is None:
            return None
        r = rows[0]
        return Swipe(swiper, r["target"], cast(SwipeAction, r["action"]), r["ts"])

    async def undo_swipe(self, s: Swipe) -> bool:
        rows = await self._run("get_swipe_row", s.swiper, s.target)
        standing = bool(rows) and rows[0]["ts"] == s.ts and rows[0]["action"] == s.action
        stamp = undo_stamp(s.ts)
        calls = [self._run("drop_last_swipe", stamp, s.swiper)]
        if standing:
            calls.append(self._run("drop_swipe", stamp, s.swiper, s.target))
            if s.action in LIKES:
                calls += [self._run("drop_like", stamp, s.target, s.swiper),
                          self._run("drop_timed_like", s.target, s.ts, s.swiper)]
        await self._all(calls)
        return standing

    async def likes_received(self, target: str, limit: int,
                             before: tuple[int, str] | None) -> list[Swipe]:
        out: list[Swipe] = []
        for _ in range(MAX_STALE_ROUNDS):
            want = limit - len(out)
            if before is None:
                rows = await self._run("likes_first", target, want)
            else:
                rows = await self._run("likes_next", target, before[0], before[1], want)
            if not rows:
                break
            standing = {r["swiper"]: r for r in await self._run(
                "likes_standing", target, list({r["swiper"] for r in rows}))}
            stale = []
            for r in rows:
                now = standing.get(r["swiper"])
                if now is not None and now["ts"] == r["ts"]:
                    out.append(Swipe(r["swiper"], target,
                                           cast(SwipeAction, now["action"]), r["ts"]))
                else:
                    stale.append(self._run("drop_timed_like", target, r["ts"], r["swiper"]))
            await self._all(stale)
            before = (rows[-1]["ts"], rows[-1]["swiper"])
            if len(out) >= limit or len(rows) < want:
                break
        return out

    async def deck_exclusions(self, user: str, candidates: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(candidates))  # IN takes each value once
        swiped, blocked, blocked_by = await self._all((
            self._run("deck_swiped", user, ids), self._run("deck_blocked", user, ids),
            self._run("deck_blocked_by", user, ids)))
        return ({r["target"] for r in swiped} | {r["target"] for r in blocked}
                | {r["user"] for r in blocked_by})
