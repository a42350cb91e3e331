"""Account erasure on SQLite: the statements behind the `Store` erasure methods.

Each function is one writer or reader operation (a plain function of a connection, as in
`storage.sqlite`); a write runs inside the writer's group transaction, so each step is
atomic here. The rows they touch and why: docs/privacy.md, "Erasure".
"""

from __future__ import annotations

import sqlite3
from typing import Any

from storage.base import ErasableKind, Erasure, MatchRecord

Row = tuple[Any, ...]
_ERASURE = "user, erased_at, step, done_ts"


def _erasure(row: Row) -> Erasure:
    return Erasure(*row)


def begin(conn: sqlite3.Connection, user: str, ts: int, again_after: int | None) -> Erasure:
    conn.execute("INSERT INTO erasures (user, erased_at) VALUES (?, ?)"
                 " ON CONFLICT (user) DO NOTHING", (user, ts))
    if again_after is not None:
        conn.execute("UPDATE erasures SET erased_at = ?, step = 0, done_ts = NULL"
                     " WHERE user = ? AND done_ts IS NOT NULL AND erased_at < ?",
                     (ts, user, again_after))
    return _erasure(conn.execute(f"SELECT {_ERASURE} FROM erasures WHERE user = ?",
                                 (user,)).fetchone())


def get(conn: sqlite3.Connection, user: str) -> Erasure | None:
    row = conn.execute(f"SELECT {_ERASURE} FROM erasures WHERE user = ?", (user,)).fetchone()
    return None if row is None else _erasure(row)


def progress(conn: sqlite3.Connection, user: str, step: int) -> None:
    conn.execute("UPDATE erasures SET step = ? WHERE user = ? AND step < ?", (step, user, step))


def finish(conn: sqlite3.Connection, user: str, ts: int) -> None:
    conn.execute("UPDATE erasures SET done_ts = ? WHERE user = ? AND done_ts IS NULL",
                 (ts, user))


def pending(conn: sqlite3.Connection, limit: int) -> list[Erasure]:
    rows = conn.execute(f"SELECT {_ERASURE} FROM erasures WHERE done_ts IS NULL"
                        " ORDER BY erased_at LIMIT ?", (limit,)).fetchall()
    return [_erasure(r) for r in rows]


def sent_in_match(conn: sqlite3.Connection, user: str, match_id: str) -> list[tuple[int, str]]:
    rows = conn.execute("SELECT id, client_id FROM messages WHERE match_id = ? AND sender = ?"
                        " AND client_id <> '' ORDER BY id", (match_id, user)).fetchall()
    return [(int(i), str(c)) for i, c in rows]


def erase_in_match(conn: sqlite3.Connection, user: str, match: MatchRecord) -> int:
    """One transaction: the tombstones, the keys, the cursor, both conversation rows of
    the match, and the user's listing of it."""
    peer = match.peer_of(user)
    # client_id is NOT NULL in this table: '' is "none" (Cassandra drops the cell)
    tombstoned = conn.execute(
        "UPDATE messages SET body = NULL, media = NULL, client_id = ''"
        " WHERE match_id = ? AND sender = ? AND (client_id <> '' OR body IS NOT NULL"
        " OR media IS NOT NULL)", (match.id, user)).rowcount
    conn.execute("DELETE FROM message_client_ids WHERE match_id = ? AND sender = ?",
                 (match.id, user))
    conn.execute("DELETE FROM read_cursors WHERE match_id = ? AND user = ?", (match.id, user))
    conn.execute("DELETE FROM conversations_by_user WHERE user IN (?, ?) AND match_id = ?",
                 (user, peer, match.id))
    conn.execute("DELETE FROM matches_by_user WHERE user = ? AND match_id = ?",
                 (user, match.id))
    return int(tombstoned)


def erase_user_data(conn: sqlite3.Connection, user: str, kind: ErasableKind) -> None:
    for sql in _BY_KIND[kind]:
        conn.execute(sql, (user,) * sql.count("?"))


# Each kind's statements, run in order in one transaction; every `?` is the user.
_BY_KIND: dict[str, tuple[str, ...]] = {
    "swipes": (
        "DELETE FROM likes_received WHERE swiper = ?",  # the likes lists of their targets
        "DELETE FROM likes_received WHERE target = ?",
        "DELETE FROM swipes_by_swiper WHERE swiper = ?",
        "DELETE FROM swipes_by_swiper WHERE target = ?",  # received, passes too
        "DELETE FROM last_swipes WHERE swiper = ? OR target = ?",  # undo's: theirs, about them
    ),
    "blocks": ("DELETE FROM blocks WHERE user = ?",),  # made by them; against them stay
    "devices": (
        "DELETE FROM device_owner WHERE token IN"
        " (SELECT token FROM devices_by_user WHERE user = ?) AND user = ?",
        "DELETE FROM devices_by_user WHERE user = ?",
    ),
    "settings": ("DELETE FROM settings WHERE user = ?", "DELETE FROM mutes WHERE user = ?"),
    "matches_index": (
        "DELETE FROM conversations_by_user WHERE user = ?",
        "DELETE FROM matches_by_user WHERE user = ?",
    ),
}
