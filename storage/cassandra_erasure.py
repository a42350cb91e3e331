"""Account erasure on Cassandra: the reads and deletes behind the `Store` erasure methods.

Every request is one partition, found from the user's own partitions or indexes (no full
scan, no ALLOW FILTERING): the matches from `user_matches`, a match's message partitions
from `match_buckets`, received swipes from `swipes_received`, the token owner rows from the
user's devices. Deletes carry the coordinator's time, later than any write stamp the store
gives (those are the event's own ms), so they win. Which rows go and why: docs/privacy.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from storage.base import ErasableKind, Erasure, MatchRecord
from storage.buckets import bucket_of

Row = dict[str, Any]
Run = Callable[..., Awaitable[list[Row]]]
All = Callable[[Iterable[Awaitable[Any]]], Awaitable[list[Any]]]

PENDING_SHARD = 0  # erasures_pending is one partition: it only holds unfinished erasures
SENT_PAGE = 1000  # message rows read per request while looking for the user's
NO_ID_BOUND = (1 << 63) - 1
AT_ONCE = 64  # deletes in flight at once


class CassandraErasure:
    """The erasure operations over the store's `run` (one prepared statement by name) and
    `all` (await many, then raise the first failure)."""

    def __init__(self, run: Run, all_: All) -> None:
        self._run = run
        self._all = all_

    async def _each(self, calls: list[Awaitable[Any]]) -> None:
        for start in range(0, len(calls), AT_ONCE):
            await self._all(calls[start:start + AT_ONCE])

    # -- the record -----------------------------------------------------------------------
    async def begin(self, user: str, ts: int, again_after: int | None) -> Erasure:
        """Lightweight transactions: racing first calls on two nodes agree on one
        `erased_at` (and racing restarts on one, conditioned on the old one). The pending
        row is written (again) while the erasure is not done, so a call that died between
        the two writes is repaired by the next."""
        rows = await self._run("begin_erasure", user, ts)
        if rows and rows[0]["[applied]"]:
            erasure = Erasure(user, ts)
        else:
            found = await self.get(user)
            erasure = found if found is not None else Erasure(user, ts)
            if (again_after is not None and erasure.done
                    and erasure.erased_at < again_after):
                rows = await self._run("restart_erasure", ts, user, erasure.erased_at)
                erasure = (Erasure(user, ts) if rows and rows[0]["[applied]"]
                           else await self.get(user) or erasure)
        if not erasure.done:
            await self._run("add_pending_erasure", user, erasure.erased_at)
        return erasure

    async def get(self, user: str) -> Erasure | None:
        rows = await self._run("get_erasure", user)
        if not rows:
            return None
        r = rows[0]
        return Erasure(r["user"], r["erased_at"], r["step"] or 0, r["done_ts"])

    async def progress(self, user: str, step: int) -> None:
        found = await self.get(user)
        if found is not None and found.step < step:
            await self._run("erasure_progress", step, user)

    async def finish(self, user: str, ts: int) -> None:
        found = await self.get(user)
        if found is not None and not found.done:
            await self._run("finish_erasure", ts, user)
        await self._run("drop_pending_erasure", user)

    async def pending(self, limit: int) -> list[Erasure]:
        rows = await self._run("pending_erasures", limit)
        found = await self._all(self.get(r["user"]) for r in rows)
        out = [e if e is not None else Erasure(r["user"], r["erased_at"])
               for r, e in zip(rows, found, strict=True)]
        # a finish cut short after its record write: finish dropping the pending row
        await self._each([self._run("drop_pending_erasure", e.user) for e in out if e.done])
        return sorted((e for e in out if not e.done), key=lambda e: e.erased_at)

    # -- one match ------------------------------------------------------------------------
    async def sent_in_match(self, user: str, match_id: str) -> list[tuple[int, str]]:
        """Every message partition of the match, paged by id; the user's rows that still
        carry a client id (an erased one has none)."""
        found: list[tuple[int, str]] = []
        for row in await self._run("buckets_down", match_id, bucket_of(NO_ID_BOUND)):
            upper = NO_ID_BOUND
            while True:
                page = await self._run("sent_page", match_id, row["bucket"], upper, SENT_PAGE)
                found += [(r["id"], r["client_id"]) for r in page
                          if r["sender"] == user and r["client_id"]]
                if len(page) < SENT_PAGE:
                    break
                upper = page[-1]["id"]
        found.sort()
        return found

    async def erase_in_match(self, user: str, match: MatchRecord) -> int:
        sent = await self.sent_in_match(user, match.id)
        await self._each([call for id_, client_id in sent for call in (
            self._run("tombstone", match.id, bucket_of(id_), id_),
            self._run("drop_client_id", match.id, user, client_id))])
        peer = match.peer_of(user)
        await self._all((self._run("drop_cursor", match.id, user),
                         self._run("drop_conversation", user, match.id),
                         self._run("drop_conversation", peer, match.id)))
        await self._run("forget_user_match", user, match.ts, match.id)  # last: see base.py
        return len(sent)

    # -- the user's own partitions --------------------------------------------------------
    async def erase_user_data(self, user: str, kind: ErasableKind) -> None:
        if kind == "swipes":
            given = [r["target"] for r in await self._run("swipes_given", user)]
            taken = [r["swiper"] for r in await self._run("swipes_taken", user)]
            timed = await self._all(self._run("likes_by_time_of", t) for t in given)
            await self._each([call for target in given for call in (
                self._run("erase_like", target, user),
                self._run("erase_received", target, user))]
                + [self._run("drop_timed_like", target, row["ts"], user)
                   for target, rows in zip(given, timed, strict=True)
                   for row in rows if row["swiper"] == user]
                + [self._run("erase_swipe", swiper, user) for swiper in taken])
            # the undo rows of those who swiped on them last: removed unless overtaken since
            lasts = await self._all(self._run("get_last_swipe", s) for s in taken)
            await self._each([self._run("drop_last_swipe", rows[0]["ts"] * 1000 + 999, swiper)
                              for swiper, rows in zip(taken, lasts, strict=True)
                              if rows and rows[0]["target"] == user])
            await self._all(self._run(f"erase_{table}", user) for table in (
                "swipes_by_swiper", "likes_received", "swipes_received", "likes_by_time",
                "last_swipes"))
        elif kind == "blocks":
            made = [r["target"] for r in await self._run("blocks_of", user)]
            await self._each([self._run("erase_block_received", t, user) for t in made])
            await self._run("erase_blocks", user)  # made by them; against them stay
        elif kind == "devices":
            tokens = [r["token"] for r in await self._run("devices", user)]
            owners = await self._all(self._run("get_owner", t) for t in tokens)
            await self._each([self._run("drop_owner", t) for t, rows in
                              zip(tokens, owners, strict=True)
                              if rows and rows[0]["user"] == user])
            await self._run("erase_devices_by_user", user)
        elif kind == "settings":
            await self._all((self._run("erase_settings", user), self._run("erase_mutes", user)))
        elif kind == "matches_index":
            await self._all(self._run(f"erase_{table}", user) for table in (
                "conversations_by_user", "matches_by_user"))
            await self._run("erase_user_matches", user)
        else:
            raise ValueError(f"unknown erasable kind {kind!r}")
