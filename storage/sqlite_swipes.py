"""The swipe economy's operations on SQLite: latest swipes for undo, likes by time, the deck.

Plain functions of a connection, run by `SqliteStore` on its writer (inside the group's
transaction) or on a reader thread, like the others of `storage.sqlite`. Tables and indexes:
`storage.sqlite_schema.MIGRATIONS[3]`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import cast

from storage.base import Swipe, SwipeAction

LIKES = ("like", "superlike")


def index_swipe(conn: sqlite3.Connection, s: Swipe) -> None:
    """The swiper's latest swipe; the like's time is already in `likes_received`."""
    conn.execute("INSERT INTO last_swipes (swiper, target, action, ts) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (swiper) DO UPDATE SET target = excluded.target,"
                 " action = excluded.action, ts = excluded.ts"
                 " WHERE excluded.ts >= last_swipes.ts", (s.swiper, s.target, s.action, s.ts))


def last_swipe(conn: sqlite3.Connection, swiper: str) -> Swipe | None:
    rows = conn.execute("SELECT target, action, ts FROM last_swipes WHERE swiper = ?",
                        (swiper,)).fetchall()
    if not rows:
        return None
    target, action, ts = rows[0]
    return Swipe(swiper, target, cast(SwipeAction, action), ts)


def undo_swipe(conn: sqlite3.Connection, s: Swipe) -> bool:
    """Each row goes only while it still is this swipe (same action and time)."""
    removed = conn.execute("DELETE FROM swipes_by_swiper WHERE swiper = ? AND target = ?"
                           " AND action = ? AND ts = ?",
                           (s.swiper, s.target, s.action, s.ts)).rowcount > 0
    if removed and s.action in LIKES:
        conn.execute("DELETE FROM likes_received WHERE target = ? AND swiper = ? AND ts = ?",
                     (s.target, s.swiper, s.ts))
    conn.execute("DELETE FROM last_swipes WHERE swiper = ? AND target = ? AND ts = ?",
                 (s.swiper, s.target, s.ts))
    return removed


def likes_received(conn: sqlite3.Connection, target: str, limit: int,
                   before: tuple[int, str] | None) -> list[Swipe]:
    sql = "SELECT swiper, action, ts FROM likes_received WHERE target = ?"
    args: tuple[object, ...] = (target,)
    if before is not None:
        sql += " AND (ts, swiper) < (?, ?)"
        args += before
    rows = conn.execute(sql + " ORDER BY ts DESC, swiper DESC LIMIT ?",
                        (*args, limit)).fetchall()
    return [Swipe(swiper, target, cast(SwipeAction, action), ts)
            for swiper, action, ts in rows]


# One statement for the three exclusions: the candidates come in as one JSON array (one
# parameter, whatever their number), each lookup is a primary-key or index probe.
_DECK = """
WITH c(id) AS (SELECT value FROM json_each(?))
SELECT target FROM swipes_by_swiper WHERE swiper = ? AND target IN (SELECT id FROM c)
UNION SELECT target FROM blocks WHERE user = ? AND target IN (SELECT id FROM c)
UNION SELECT user FROM blocks WHERE target = ? AND user IN (SELECT id FROM c)
"""


def deck_exclusions(conn: sqlite3.Connection, user: str,
                    candidates: Sequence[str]) -> set[str]:
    rows = conn.execute(_DECK, (json.dumps(list(candidates)), user, user, user)).fetchall()
    return {r[0] for r in rows}
