"""Many messages written straight into a store (no node in between), for the export tests
that need a long history fast."""

from __future__ import annotations

import asyncio
import time

from protocol.ids import compose
from storage import MatchRecord, Message, Store, StoreUnavailable, match_id_for
from storage.buckets import bucket_of

PER_MS = 1000  # ids per millisecond of seeded history


def seeded_body(i: int, chars: int) -> str:
    return f"{i:07d} " + "x" * max(0, chars - 8)


async def seed_match(store: Store, a: str, b: str, n: int, *, body_chars: int = 80,
                     batch: int = 2000, rows_only: bool = False) -> MatchRecord:
    """A match of `a` and `b` (both liked) holding `n` messages, alternately from each,
    bodies `seeded_body(i)`, ids increasing from an hour ago.

    `rows_only` (a `CassandraStore`): write only the message rows and their bucket, in
    batches of one partition, instead of a save's four rows in three partitions (the
    idempotency key and both conversation rows, which no read of the history needs)."""
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

    if rows_only:
        await _cassandra_rows(store, [message(i) for i in range(n)])
        return match
    for first in range(0, n, batch):
        await asyncio.gather(*(store.save_message(message(i), claimed=True,
                                                  members=match.users)
                               for i in range(first, min(n, first + batch))))
    return match


async def _cassandra_rows(store: Store, messages: list[Message], per_batch: int = 150,
                          in_flight: int = 16) -> None:
    """The message rows in single-partition unlogged batches (one mutation each, about
    20 KB: under Cassandra's 50 KB batch limit), `in_flight` batches at a time; a batch
    that times out (a loaded test machine) is sent again."""
    from cassandra.query import UNSET_VALUE, BatchStatement, BatchType

    from storage.cassandra import CassandraStore

    assert isinstance(store, CassandraStore)
    insert = store._prepared["insert_message"]  # the store's own statement and bridge
    for bucket in sorted({bucket_of(m.id) for m in messages}):
        await store._run("add_bucket", messages[0].match_id, bucket)
    batches = []
    for first in range(0, len(messages), per_batch):
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for m in messages[first:first + per_batch]:
            batch.add(insert, (bucket_of(m.id), m.match_id, m.id, m.sender, m.client_id,
                               m.ts, m.body, UNSET_VALUE))
        batches.append(batch)

    async def send(batch: BatchStatement) -> None:
        for attempt in range(1, 6):  # an idempotent write: a busy node's timeout is retried
            try:
                await store._execute(batch, None)
                return
            except StoreUnavailable:
                if attempt == 5:
                    raise
                await asyncio.sleep(0.5 * attempt)

    for first in range(0, len(batches), in_flight):
        await asyncio.gather(*(send(b) for b in batches[first:first + in_flight]))
