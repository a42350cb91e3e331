"""The Cassandra schema: one keyspace, a table per query, and the migrations that make it.

Every table is shaped by the one query that reads it (Cassandra has no joins): messages by
(match, time bucket) newest first, the buckets each match used, the idempotency keys of
sends, each user's conversations, matches and devices. `storage.sqlite_schema` keeps the same
tables and column names for the embedded default.

`migrate` creates or upgrades the keyspace and is safe to run again; `CassandraStore.start`
runs it, and so can a one-off `rendezvous migrate` before a rolling deploy (DDL from many
nodes at once is best avoided: it is the one moment schema versions can disagree).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1
COMPONENT = "rendezvous"  # the row of `schema_version` this code owns

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")

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
            token      text,
            platform   text,
            app        text,
            locale     text,
            updated_ts bigint,
            PRIMARY KEY ((user), token)
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.device_owner (
            token text PRIMARY KEY,
            user  text
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.settings (
            user          text PRIMARY KEY,
            show_online   boolean,
            read_receipts boolean,
            push_previews boolean
        )""",
    ),
}


class SchemaTooNew(Exception):
    """The keyspace was migrated by a newer version of the code; refuse rather than guess."""


def check_identifier(name: str) -> str:
    """`name` if it is a plain CQL identifier (it is pasted into statements unquoted)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a valid keyspace name: {name!r}")
    return name


def replication_cql(replication: Mapping[str, Any]) -> str:
    """The CQL map literal of a replication setting: every value quoted, as CQL wants."""
    if "class" not in replication:
        raise ValueError("replication needs a 'class' (SimpleStrategy or NetworkTopologyStrategy)")
    items = []
    for key, value in replication.items():
        for part in (str(key), str(value)):
            if "'" in part:
                raise ValueError(f"quote in replication setting: {part!r}")
        items.append(f"'{key}': '{value}'")
    return "{" + ", ".join(items) + "}"


def migrate(session: Any, keyspace: str, replication: Mapping[str, Any]) -> int:
    """Create the keyspace and tables, or bring an older schema up to `SCHEMA_VERSION`.

    Blocking (DDL waits for schema agreement): run it at start-up in an executor or from the
    CLI. Returns the version now stored. An existing keyspace keeps its replication; change
    that with ALTER KEYSPACE and a repair, never here.
    """
    ks = check_identifier(keyspace)
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
                    f"{replication_cql(replication)}")
    session.execute(f"CREATE TABLE IF NOT EXISTS {ks}.schema_version ("
                    " component text PRIMARY KEY, version int, updated_ts timestamp)")
    current = stored_version(session, ks)
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(f"keyspace {ks} is at schema version {current}, newer than this "
                           f"code's {SCHEMA_VERSION}")
    for version in sorted(v for v in MIGRATIONS if v > current):
        for statement in MIGRATIONS[version]:
            session.execute(statement.format(ks=ks))
        session.execute(f"INSERT INTO {ks}.schema_version (component, version, updated_ts)"
                        " VALUES (%s, %s, toTimestamp(now()))", (COMPONENT, version))
        current = version
    return current


def stored_version(session: Any, keyspace: str) -> int:
    """The schema version recorded in `keyspace` (0 for a keyspace never migrated)."""
    ks = check_identifier(keyspace)
    rows = list(session.execute(f"SELECT version FROM {ks}.schema_version"
                                " WHERE component = %s", (COMPONENT,)))
    if not rows:
        return 0
    row = rows[0]
    value = row["version"] if isinstance(row, dict) else row[0]
    return int(value or 0)
