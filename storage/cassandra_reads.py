"""How `CassandraStore` reads a match's messages: which bucket partitions, in what order.

A match's messages are split into 10-day bucket partitions (`storage.buckets`), and
`match_buckets` lists the buckets that hold any. Reading every bucket between two ids
through that list costs one request more than the reads themselves; the messages of a sync
or an unread count, though, lie between the caller's cursor and the match's newest
message, which the caller has just read from its conversation row (`Conversation.last_id`,
at or past every acknowledged message). When the two ids are in the same bucket or in
neighbouring ones (almost always: a bucket is ten days), the reads go straight to those
partitions and the list is not read at all; past that, only the part of the list between
them is. See docs/storage.md (the read path).

Every read here is one partition (token-aware: it goes to a replica of it), sent through
the store's bridge, so answers come back to the loop in batches.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from storage.base import Message
from storage.buckets import bucket_of
from storage.cassandra_schema import message_of

Row = dict[str, Any]
Run = Callable[..., Awaitable[list[Row]]]

NO_ID_BOUND = (1 << 63) - 1
COUNT_PAGE = 500  # rows per read while counting unread messages
COUNT_SCAN_LIMIT = 20_000  # most rows one count may read (the user's own sends included)
DIRECT_SPAN = 2  # buckets read without the list when the range spans at most this many


class MessageReads:
    """The three message reads of the `Store` (history, messages_after, count_unread) over
    `run`, the store's "send one prepared statement by name" call."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def _buckets_up(self, match_id: str, after_id: int,
                          newest: int | None) -> list[int]:
        """The buckets that may hold ids in (after_id, newest], oldest first."""
        low = bucket_of(after_id)
        if newest is None:
            rows = await self._run("buckets_up", match_id, low)
            return [r["bucket"] for r in rows]
        high = bucket_of(newest)
        if high - low < DIRECT_SPAN:  # an empty partition read costs what a list read does
            return list(range(low, high + 1))
        rows = await self._run("buckets_between", match_id, low, high)
        return [r["bucket"] for r in rows]

    async def history(self, match_id: str, before: int | None,
                      limit: int) -> tuple[list[Message], bool]:
        upper = NO_ID_BOUND if before is None else before
        buckets = await self._run("buckets_down", match_id, bucket_of(upper))
        found: list[Row] = []
        for row in buckets:  # newest first; only buckets that were written
            want = limit + 1 - len(found)
            if want <= 0:
                break
            found += await self._run("history", match_id, row["bucket"], upper, want)
        return [message_of(r) for r in found[:limit]], len(found) > limit

    async def messages_after(self, match_id: str, after_id: int, limit: int,
                             newest: int | None = None) -> list[Message]:
        if newest is not None and newest <= after_id:
            return []
        upper = NO_ID_BOUND if newest is None else newest
        found: list[Row] = []
        for bucket in await self._buckets_up(match_id, after_id, newest):
            if len(found) >= limit:
                break
            found += await self._run("after", match_id, bucket, after_id, upper,
                                     limit - len(found))
        return [message_of(r) for r in found]

    async def count_unread(self, match_id: str, user: str, after_id: int, cap: int,
                           newest: int | None = None) -> int:
        """Reads only ids and senders newer than `after_id`, a page at a time, and stops
        at `cap` (or after `COUNT_SCAN_LIMIT` rows, for a user who sent thousands
        unanswered)."""
        if newest is not None and newest <= after_id:
            return 0
        upper = NO_ID_BOUND if newest is None else newest
        count = scanned = 0
        for bucket in await self._buckets_up(match_id, after_id, newest):
            last = after_id
            while count < cap and scanned < COUNT_SCAN_LIMIT:
                page = await self._run("senders_after", match_id, bucket, last, upper,
                                       COUNT_PAGE)
                scanned += len(page)
                count += sum(1 for r in page if r["sender"] != user)
                if len(page) < COUNT_PAGE:
                    break
                last = page[-1]["id"]
        return min(count, cap)
