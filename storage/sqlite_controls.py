"""The chat controls on SQLite: a message by id, its tombstone, "has this user sent here",
and mutes. Plain functions of a connection, run by `SqliteStore` on the writer or a reader
(as in storage/sqlite.py); docs/chat-controls.md says what each feature does with them."""

from __future__ import annotations

import sqlite3
from typing import Any

from storage.buckets import bucket_of

_MSG = "match_id, id, sender, client_id, ts, body, media"


def get_message(conn: sqlite3.Connection, match_id: str,
                message_id: int) -> tuple[Any, ...] | None:
    """The message row (the store turns it into a `Message`), by its primary key."""
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {_MSG} FROM messages WHERE match_id = ? AND bucket = ? AND id = ?",
        (match_id, bucket_of(message_id), message_id)).fetchone()
    return row


def tombstone_message(conn: sqlite3.Connection, match_id: str, message_id: int) -> bool:
    """Clear body and media; the row, so its id, sender and time, stays."""
    cur = conn.execute("UPDATE messages SET body = NULL, media = NULL WHERE match_id = ?"
                       " AND bucket = ? AND id = ?", (match_id, bucket_of(message_id),
                                                      message_id))
    return cur.rowcount > 0


def has_sent(conn: sqlite3.Connection, match_id: str, user: str) -> bool:
    """One look at the idempotency keys' primary key prefix (match, sender)."""
    return conn.execute("SELECT 1 FROM message_client_ids WHERE match_id = ? AND sender = ?"
                        " LIMIT 1", (match_id, user)).fetchone() is not None


def put_mute(conn: sqlite3.Connection, user: str, match_id: str, until: int) -> None:
    conn.execute("INSERT INTO mutes (user, match_id, until_ms) VALUES (?, ?, ?)"
                 " ON CONFLICT (user, match_id) DO UPDATE SET until_ms = excluded.until_ms",
                 (user, match_id, until))


def delete_mute(conn: sqlite3.Connection, user: str, match_id: str) -> None:
    conn.execute("DELETE FROM mutes WHERE user = ? AND match_id = ?", (user, match_id))


def mutes(conn: sqlite3.Connection, user: str) -> dict[str, int]:
    rows = conn.execute("SELECT match_id, until_ms FROM mutes WHERE user = ?", (user,))
    return {match_id: int(until) for match_id, until in rows}


def mute_until(conn: sqlite3.Connection, user: str, match_id: str) -> int:
    row = conn.execute("SELECT until_ms FROM mutes WHERE user = ? AND match_id = ?",
                       (user, match_id)).fetchone()
    return int(row[0]) if row else 0
