"""The chat controls on Cassandra: a message by id, its tombstone, "has this user sent
here", and mutes (docs/chat-controls.md). Each call reads or writes one partition through
the store's `run` (storage/cassandra_reads.py has the bucket walk this reuses)."""

from __future__ import annotations

from storage.base import Message
from storage.buckets import bucket_of
from storage.cassandra_reads import COUNT_PAGE, NO_ID_BOUND, Run
from storage.cassandra_schema import message_of

SENT_SCAN_LIMIT = 2_000  # messages `has_sent` reads, oldest first, before answering True


class ChatControls:
    def __init__(self, run: Run) -> None:
        self._run = run

    async def get_message(self, match_id: str, message_id: int) -> Message | None:
        rows = await self._run("get_message", match_id, bucket_of(message_id), message_id)
        return message_of(rows[0]) if rows else None

    async def tombstone_message(self, match_id: str, message_id: int) -> bool:
        """A read to tell "no such message" (a DELETE of cells writes no row, so it cannot
        create one), then the DELETE of body and media."""
        if await self.get_message(match_id, message_id) is None:
            return False
        await self._run("tombstone_message", match_id, bucket_of(message_id), message_id)
        return True

    async def has_sent(self, match_id: str, user: str) -> bool:
        """Senders oldest first, bucket by bucket, a page at a time: a user's first message
        is almost always among a match's first few, so this is one or two reads."""
        scanned = 0
        for row in await self._run("buckets_up", match_id, 0):
            last = 0
            while True:
                page = await self._run("senders_after", match_id, row["bucket"], last,
                                       NO_ID_BOUND, COUNT_PAGE)
                if any(r["sender"] == user for r in page):
                    return True
                scanned += len(page)
                if scanned >= SENT_SCAN_LIMIT:
                    return True
                if len(page) < COUNT_PAGE:
                    break
                last = page[-1]["id"]
        return False

    async def put_mute(self, user: str, match_id: str, until: int) -> None:
        await self._run("put_mute", user, match_id, until)

    async def delete_mute(self, user: str, match_id: str) -> None:
        await self._run("delete_mute", user, match_id)

    async def mute_until(self, user: str, match_id: str) -> int:
        rows = await self._run("mute_until", user, match_id)
        return int(rows[0]["until_ms"] or 0) if rows else 0

    async def mutes(self, user: str) -> dict[str, int]:
        rows = await self._run("mutes", user)
        return {r["match_id"]: int(r["until_ms"] or 0) for r in rows}
