"""The Cassandra tables, version by version: the DDL that `migrate` runs
(storage/cassandra_schema.py) when a keyspace's stored version is older.

Every table is shaped by the one query that reads it (Cassandra has no joins); the
statements that read and write them are `cassandra_schema.CQL`. docs/storage.md says why
each table exists; `storage.sqlite_schema` keeps the same tables for the embedded default.
"""

from __future__ import annotations

SCHEMA_VERSION = 4
COMPONENT = "rendezvous"  # the row of `schema_version` this code owns

# Each version's statements, run in order by `migrate` when the stored version is older.
# Every statement must be idempotent (IF NOT EXISTS), as a migration cut short is run again.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        # Discord's layout: a match's messages split into 10-day partitions, newest first.
        """CREATE TABLE IF NOT EXISTS {ks}.messages (
            match_id  text,
            bucket    int,
            id        bigint,
            sender    text,
            client_id text,
            ts        bigint,
            body      text,
            media     text,
            PRIMARY KEY ((match_id, bucket), id)
        ) WITH CLUSTERING ORDER BY (id DESC)""",
        # The buckets that hold messages, so history jumps over silent months and stops at
        # the first one instead of probing empty partitions back to the epoch.
        """CREATE TABLE IF NOT EXISTS {ks}.match_buckets (
            match_id text,
            bucket   int,
            PRIMARY KEY ((match_id), bucket)
        ) WITH CLUSTERING ORDER BY (bucket DESC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.message_client_ids (
            match_id  text,
            sender    text,
            client_id text,
            id        bigint,
            ts        bigint,
            PRIMARY KEY ((match_id, sender, client_id))
        )""",
        # `last` is one cell (id, sender, ts) so the three never disagree: writes carry a
        # timestamp made from the message id, and equal timestamps fall to the larger value,
        # which starts with the id.
        """CREATE TABLE IF NOT EXISTS {ks}.conversations_by_user (
            user     text,
            match_id text,
            peer     text,
            match_ts bigint,
            last     frozen<tuple<bigint, text, bigint>>,
            PRIMARY KEY ((user), match_id)
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.read_cursors (
            match_id     text,
            user         text,
            read_id      bigint,
            delivered_id bigint,
            PRIMARY KEY ((match_id), user)
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.swipes_by_swiper (
            swiper text,
            target text,
            action text,
            ts     bigint,
            PRIMARY KEY ((swiper), target)
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.likes_received (
            target text,
            swiper text,
            action text,
            ts     bigint,
            PRIMARY KEY ((target), swiper)
        )""",
        # Written with INSERT ... IF NOT EXISTS only; `creator` is the token of the call
        # that inserted the row, so a call whose insert timed out can tell if it won.
        """CREATE TABLE IF NOT EXISTS {ks}.matches (
            id        text PRIMARY KEY,
            user_a    text,
            user_b    text,
            ts        bigint,
            superlike boolean,
            closed_ts bigint,
            closed_by text,
            creator   uuid
        )""",
        # Open matches only (closing deletes the rows), newest first, for keyset paging.
        """CREATE TABLE IF NOT EXISTS {ks}.matches_by_user (
            user      text,
            ts        bigint,
            match_id  text,
            peer      text,
            superlike boolean,
            PRIMARY KEY ((user), ts, match_id)
        ) WITH CLUSTERING ORDER BY (ts DESC, match_id DESC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.blocks (
            user   text,
            target text,
            ts     bigint,
            PRIMARY KEY ((user), target)
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.devices_by_user (
            user       text,
            "token"    text,
            platform   text,
            app        text,
            locale     text,
            updated_ts bigint,
            PRIMARY KEY ((user), "token")
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.device_owner (
            "token" text PRIMARY KEY,
            user  text
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.settings (
            user          text PRIMARY KEY,
            show_online   boolean,
            read_receipts boolean,
            push_previews boolean
        )""",
    ),
    2: (
        # Every match a user was ever in, closed too (matches_by_user drops closed ones):
        # the one partition an export lists and an erasure walks (docs/privacy.md).
        # `migrate` fills it from `matches` once, when it upgrades a version-1 keyspace.
        """CREATE TABLE IF NOT EXISTS {ks}.user_matches (
            user     text,
            ts       bigint,
            match_id text,
            PRIMARY KEY ((user), ts, match_id)
        ) WITH CLUSTERING ORDER BY (ts DESC, match_id DESC)""",
        # Each user's "tokens not before" (unix ms). Written only with USING TIMESTAMP of
        # the value itself (in us), so the largest value is the newest cell and wins: a
        # max-merge without a read or a lightweight transaction. Never deleted.
        """CREATE TABLE IF NOT EXISTS {ks}.token_revocations (
            user       text PRIMARY KEY,
            not_before bigint
        )""",
        # One switch per push kind (docs/push.md); a null reads as the default, on.
        # `migrate` skips an ADD whose column exists (a migration cut short, run again).
        "ALTER TABLE {ks}.settings ADD push_message boolean",
        "ALTER TABLE {ks}.settings ADD push_match boolean",
        "ALTER TABLE {ks}.settings ADD push_like boolean",
        # Muted matches per user (docs/chat-controls.md): the push worker reads one row.
        """CREATE TABLE IF NOT EXISTS {ks}.mutes (
            user     text,
            match_id text,
            until_ms bigint,
            PRIMARY KEY ((user), match_id)
        )""",
    ),
    3: (
        # -- the swipe economy (docs/storage.md, "Undo, likes and the deck") --
        # each swiper's latest swipe, for undo; written with the swipe's stamp, so the
        # latest stays whatever the order the writes land in
        """CREATE TABLE IF NOT EXISTS {ks}.last_swipes (
            swiper text PRIMARY KEY,
            target text,
            action text,
            ts     bigint
        )""",
        # who liked me, newest first: the likes of `likes_received` by time. A row whose
        # like was passed over or overtaken later is found stale by its time and dropped
        # when read (storage/cassandra_swipes.py)
        """CREATE TABLE IF NOT EXISTS {ks}.likes_by_time (
            target text,
            ts     bigint,
            swiper text,
            action text,
            PRIMARY KEY ((target), ts, swiper)
        ) WITH CLUSTERING ORDER BY (ts DESC, swiper DESC)""",
        # the blocks a user received, for the deck filter's "who blocked me"
        """CREATE TABLE IF NOT EXISTS {ks}.blocks_received (
            target text,
            user   text,
            ts     bigint,
            PRIMARY KEY ((target), user)
        )""",
        # Account erasure (docs/privacy.md, "Erasure"): the record, kept once done, and the
        # one small partition of the unfinished ones that a starting node resumes.
        """CREATE TABLE IF NOT EXISTS {ks}.erasures (
            user      text PRIMARY KEY,
            erased_at bigint,
            step      int,
            done_ts   bigint
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.erasures_pending (
            shard     int,
            user      text,
            erased_at bigint,
            PRIMARY KEY ((shard), user)
        )""",
        # Every swipe a user received, passes too (likes_received has only the likes): the
        # partition an erasure reads to find the swipers' rows about them. `migrate` fills
        # it from swipes_by_swiper once, when it upgrades an older keyspace.
        """CREATE TABLE IF NOT EXISTS {ks}.swipes_received (
            target text,
            swiper text,
            ts     bigint,
            PRIMARY KEY ((target), swiper)
        )""",
    ),
    4: (
        # -- reports (docs/privacy.md, "Reports"); written with a TTL of the retention, as
        # a backstop of the daily purge. The evidence is copied into the row (JSON text,
        # storage.report_rows), so nothing done to `messages` reaches it.
        """CREATE TABLE IF NOT EXISTS {ks}.reports (
            id       text PRIMARY KEY,
            reporter text,
            reported text,
            reason   text,
            note     text,
            ts       bigint,
            evidence text
        )""",
        # The listing, newest first: one partition per UTC day, so a page reads one day at
        # a time and a purge drops whole days.
        """CREATE TABLE IF NOT EXISTS {ks}.reports_by_day (
            day int,
            ts  bigint,
            id  text,
            PRIMARY KEY ((day), ts, id)
        ) WITH CLUSTERING ORDER BY (ts DESC, id DESC)""",
        # The days that hold reports, in one small partition (a row per day of retention),
        # so paging and purging go from day to day without probing empty ones.
        """CREATE TABLE IF NOT EXISTS {ks}.report_days (
            shard int,
            day   int,
            PRIMARY KEY ((shard), day)
        ) WITH CLUSTERING ORDER BY (day DESC)""",
    ),
}
