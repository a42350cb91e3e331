"""The SQLite schema: the Cassandra tables, one for one, plus the indexes SQLite needs.

Table and column names match the Cassandra layout so a reader of either schema knows the
other. `schema_version` holds one row; a later migration reads it and upgrades in place:
`MIGRATIONS` holds what each version after the first added, every statement idempotent.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 4

TABLES = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    match_id  TEXT    NOT NULL,
    bucket    INTEGER NOT NULL,
    id        INTEGER NOT NULL,
    sender    TEXT    NOT NULL,
    client_id TEXT    NOT NULL,
    ts        INTEGER NOT NULL,
    body      TEXT,
    media     TEXT,               -- JSON, the wire form of protocol.frames.Media
    PRIMARY KEY (match_id, bucket, id)
);
CREATE INDEX IF NOT EXISTS messages_by_match_id ON messages (match_id, id);
CREATE TABLE IF NOT EXISTS message_client_ids (
    match_id  TEXT    NOT NULL,
    sender    TEXT    NOT NULL,
    client_id TEXT    NOT NULL,
    id        INTEGER NOT NULL,
    PRIMARY KEY (match_id, sender, client_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversations_by_user (
    user      TEXT    NOT NULL,
    match_id  TEXT    NOT NULL,
    peer      TEXT    NOT NULL,
    match_ts  INTEGER NOT NULL,
    last_id   INTEGER NOT NULL DEFAULT 0,
    last_from TEXT,
    last_ts   INTEGER,
    PRIMARY KEY (user, match_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS read_cursors (
    match_id     TEXT    NOT NULL,
    user         TEXT    NOT NULL,
    read_id      INTEGER NOT NULL DEFAULT 0,
    delivered_id INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (match_id, user)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS swipes_by_swiper (
    swiper TEXT    NOT NULL,
    target TEXT    NOT NULL,
    action TEXT    NOT NULL,
    ts     INTEGER NOT NULL,
    PRIMARY KEY (swiper, target)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS likes_received (
    target TEXT    NOT NULL,
    swiper TEXT    NOT NULL,
    action TEXT    NOT NULL,
    ts     INTEGER NOT NULL,
    PRIMARY KEY (target, swiper)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS matches (
    id        TEXT    NOT NULL PRIMARY KEY,
    user_a    TEXT    NOT NULL,
    user_b    TEXT    NOT NULL,
    ts        INTEGER NOT NULL,
    superlike INTEGER NOT NULL DEFAULT 0,
    closed_ts INTEGER,
    closed_by TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS matches_by_user (
    user     TEXT    NOT NULL,
    match_id TEXT    NOT NULL,
    ts       INTEGER NOT NULL,
    PRIMARY KEY (user, match_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS matches_by_user_newest ON matches_by_user (user, ts, match_id);
CREATE TABLE IF NOT EXISTS blocks (
    user   TEXT    NOT NULL,
    target TEXT    NOT NULL,
    ts     INTEGER NOT NULL,
    PRIMARY KEY (user, target)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices_by_user (
    user       TEXT    NOT NULL,
    token      TEXT    NOT NULL,
    platform   TEXT    NOT NULL,
    app        TEXT,
    locale     TEXT,
    updated_ts INTEGER NOT NULL,
    PRIMARY KEY (user, token)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_owner (
    token TEXT NOT NULL PRIMARY KEY,
    user  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (
    user           TEXT    NOT NULL PRIMARY KEY,
    show_online    INTEGER NOT NULL,
    read_receipts  INTEGER NOT NULL,
    push_previews  INTEGER NOT NULL,
    push_message   INTEGER NOT NULL DEFAULT 1,
    push_match     INTEGER NOT NULL DEFAULT 1,
    push_like      INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mutes (
    user     TEXT    NOT NULL,
    match_id TEXT    NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (user, match_id)
) WITHOUT ROWID;
-- account erasure (docs/privacy.md): one row per erased user, kept after it is done (its
-- erased_at is what a second DELETE /v1/me answers), done_ts NULL while steps remain
CREATE TABLE IF NOT EXISTS erasures (
    user      TEXT    NOT NULL PRIMARY KEY,
    erased_at INTEGER NOT NULL,
    step      INTEGER NOT NULL DEFAULT 0,
    done_ts   INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS erasures_pending ON erasures (erased_at) WHERE done_ts IS NULL;
-- what an erasure looks up by the other column of a primary key
CREATE INDEX IF NOT EXISTS swipes_by_target ON swipes_by_swiper (target);
CREATE INDEX IF NOT EXISTS likes_by_swiper ON likes_received (swiper);
"""

# What each version after 1 adds, run in order after TABLES on every start (so a file of an
# older version is upgraded in place); each statement is idempotent (IF NOT EXISTS).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # each user's "tokens not before" (unix ms): only ever raised (log out everywhere)
        """CREATE TABLE IF NOT EXISTS token_revocations (
            user       TEXT    NOT NULL PRIMARY KEY,
            not_before INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ),
    3: (
        # the swipe economy (docs/storage.md, "Undo, likes and the deck"): each swiper's
        # latest swipe, for undo
        """CREATE TABLE IF NOT EXISTS last_swipes (
            swiper TEXT    NOT NULL PRIMARY KEY,
            target TEXT    NOT NULL,
            action TEXT    NOT NULL,
            ts     INTEGER NOT NULL
        ) WITHOUT ROWID""",
        # who liked me, newest first
        "CREATE INDEX IF NOT EXISTS likes_received_newest ON likes_received (target, ts, swiper)",
        # the deck filter's "who blocked me"
        "CREATE INDEX IF NOT EXISTS blocks_received ON blocks (target, user)",
    ),
    4: (
        # Reports (docs/privacy.md, "Reports"): each with its evidence copied into the row
        # (JSON, storage.report_rows); the index on (ts, id) is the newest-first listing
        # that Cassandra keeps in `reports_by_day` and `report_days`.
        """CREATE TABLE IF NOT EXISTS reports (
            id       TEXT    NOT NULL PRIMARY KEY,
            reporter TEXT    NOT NULL,
            reported TEXT    NOT NULL,
            reason   TEXT    NOT NULL,
            note     TEXT,
            ts       INTEGER NOT NULL,
            evidence TEXT    NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS reports_newest ON reports (ts, id)",
    ),
}

# Version 2: columns a version-1 file lacks (its tables exist, so CREATE TABLE IF NOT EXISTS
# leaves them as they were). Each is added once, when missing: (table, column, definition).
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("settings", "push_message", "INTEGER NOT NULL DEFAULT 1"),
    ("settings", "push_match", "INTEGER NOT NULL DEFAULT 1"),
    ("settings", "push_like", "INTEGER NOT NULL DEFAULT 1"),
)


class SchemaTooNew(Exception):
    """The file was written by a newer version of the code; refuse rather than corrupt it."""


def create_or_check(conn: sqlite3.Connection) -> None:
    """Create every table and index that is missing and record or check the version.

    Runs in one transaction on a connection in autocommit mode (isolation_level=None), so a
    crash half-way leaves no half-made schema behind.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in TABLES.split(";"):
            if statement.strip():
                conn.execute(statement)
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        stored = max((r[0] for r in rows), default=None)
        if stored is not None and stored > SCHEMA_VERSION:
            raise SchemaTooNew(f"schema version {stored} is newer than this code's "
                               f"{SCHEMA_VERSION}")
        for version in sorted(MIGRATIONS):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if stored is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif stored < SCHEMA_VERSION:
            add_missing_columns(conn)
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def add_missing_columns(conn: sqlite3.Connection) -> None:
    """The upgrade of an older file: every column of `ADDED_COLUMNS` it does not have yet
    (checked by name, so a rerun adds nothing twice)."""
    for table, column, definition in ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
