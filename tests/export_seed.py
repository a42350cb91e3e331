"""Many messages written straight into a store (no node in between), for the export tests
that need a long history fast."""

from __future__ import annotations

import asyncio
import time

from protocol.ids import compose
from storage import MatchRecord, Message, Store, match_id_for

PER_MS = 1000  # ids per millisecond of seeded history


def seeded_body(i: int, chars: int) -> str:
    return f"{i:07d} " + "x" * max(0, chars - 8)


async def seed_match(store: Store, a: str, b: str, n: int, *, body_chars: int = 80,
                     batch: int = 2000) -> MatchRecord:
    """A match of `a` and `b` (both liked) holding `n` messages, alternately from each,
    bodies `seeded_body(i)`, ids increasing from an hour ago."""
    start_ms = int(time.time() * 1000) - 3_600_000
    users = tuple(sorted((a, b)))
    match = MatchRecord(match_id_for(a, b), (users[0], users[1]), start_ms)
    await store.record_swipe(a, b, "like", start_ms)
    await store.record_swipe(b, a, "like", start_ms)
    await store.create_match(match)

    def message(i: int) -> Message:
        ms = start_ms + 1 + i // PER_MS
        return Message(match.id, compose(ms, 1, i % PER_MS), (a, b)[i % 2], f"seed-{i}", ms,
                       seeded_body(i, body_chars))

    for first in range(0, n, batch):
        await asyncio.gather(*(store.save_message(message(i), claimed=True,
                                                  members=match.users)
                               for i in range(first, min(n, first + batch))))
    return match
