"""Time buckets of a match's messages: the partition key next to `match_id`.

Cassandra partitions messages by (match_id, bucket) so one busy match never grows a single
partition without bound; SQLite keeps the same column so both layouts stay one layout.
"""

from __future__ import annotations

from protocol.ids import ms_of

BUCKET_MS = 10 * 24 * 60 * 60 * 1000  # ten days


def bucket_of(message_id: int) -> int:
    """The bucket holding `message_id`: whole BUCKET_MS periods since the unix epoch."""
    return ms_of(message_id) // BUCKET_MS
