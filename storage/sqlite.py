"""`SqliteStore`: the embedded default's durable state, one SQLite file in WAL mode.

The tables mirror the Cassandra layout (see `storage.sqlite_schema`); the threads that keep
SQLite off the event loop live in `storage.sqlite_engine`. Each operation below is a plain
function of a connection, run by the writer inside the group's transaction or by a reader.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

from storage import sqlite_controls as controls
from storage import sqlite_erasure, sqlite_reports, sqlite_swipes
from storage.base import (
    SETTING_COLUMNS,
    SETTING_NAMES,
    Conversation,
    CursorKind,
    Cursors,
    Device,
    ErasableKind,
    Erasure,
    MatchRecord,
    Message,
    Page,
    Platform,
    Report,
    ReportPage,
    Settings,
    Swipe,
    SwipeAction,
    SwipeRecord,
    decode_page_cursor,
    decode_report_cursor,
    encode_page_cursor,
)
from storage.buckets import bucket_of
from storage.sqlite_engine import SqliteEngine
from storage.sqlite_schema import create_or_check

Row = tuple[Any, ...]
_CURSOR_COLUMNS: dict[str, str] = {"read": "read_id", "delivered": "delivered_id"}
_MSG = "match_id, id, sender, client_id, ts, body, media"
_MATCH = "id, user_a, user_b, ts, superlike, closed_ts, closed_by"
_NO_ID_BOUND = (1 << 63) - 1  # "no newest given": every id is at or below it


class SqliteStore:
    """The `Store` on one SQLite file, for a single node.

    Writes are acknowledged only after the COMMIT of the group holding them returned (with
    `synchronous="FULL"`, after the WAL is fsynced) and are committed in the order they were
    called: each write is enqueued synchronously, before the coroutine first suspends.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL",
                 max_batch: int = 256, lock_wait_s: float = 60.0) -> None:
        self.engine = SqliteEngine(path, synchronous=synchronous, max_batch=max_batch,
                                   setup=_setup_writer, lock_wait_s=lock_wait_s)
        self._write = self.engine.write
        self._read = self.engine.read

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.engine.start()

    async def close(self) -> None:
        await self.engine.close()

    async def ping(self) -> None:
        await self._read(lambda c: _rows(c, "SELECT 1"))

    # -- messages -------------------------------------------------------------------------
    async def save_message(self, message: Message, *, claimed: bool = False,
                           members: tuple[str, str] | None = None) -> tuple[Message, bool]:
        """The hints change nothing here: the key's insert is its own check and the members
        come from the match row in the same statement, inside the writer's transaction, so
        neither costs a read of its own."""
        return await self.engine.write_grouped(_save_messages, message)  # type: ignore[no-any-return]

    async def history(self, match_id: str, before: int | None,
                      limit: int) -> tuple[list[Message], bool]:
        args: tuple[Any, ...] = (match_id,)
        sql = f"SELECT {_MSG} FROM messages WHERE match_id = ?"
        if before is not None:
            sql, args = sql + " AND id < ?", (match_id, before)
        rows = await self._read(
            lambda c: _rows(c, sql + " ORDER BY id DESC LIMIT ?", (*args, limit + 1)))
        return [_message(r) for r in rows[:limit]], len(rows) > limit

    async def messages_after(self, match_id: str, after_id: int, limit: int, *,
                             newest: int | None = None) -> list[Message]:
        sql = (f"SELECT {_MSG} FROM messages WHERE match_id = ? AND id > ? AND id <= ?"
               " ORDER BY id LIMIT ?")
        upper = _NO_ID_BOUND if newest is None else newest
        rows = await self._read(lambda c: _rows(c, sql, (match_id, after_id, upper, limit)))
        return [_message(r) for r in rows]

    async def count_unread(self, match_id: str, user: str, after_id: int,
                           cap: int = 999, *, newest: int | None = None) -> int:
        sql = ("SELECT count(*) FROM (SELECT 1 FROM messages WHERE match_id = ? AND id > ?"
               " AND id <= ? AND sender <> ? LIMIT ?)")
        upper = _NO_ID_BOUND if newest is None else newest
        rows = await self._read(
            lambda c: _rows(c, sql, (match_id, after_id, upper, user, cap)))
        return int(rows[0][0])

    # -- conversations and cursors --------------------------------------------------------
    async def conversations(self, user: str) -> list[Conversation]:
        sql = ("SELECT c.match_id, c.peer, c.match_ts, c.last_id, c.last_from, c.last_ts"
               " FROM conversations_by_user c JOIN matches m ON m.id = c.match_id"
               " WHERE c.user = ? AND m.closed_ts IS NULL ORDER BY"
               " max(coalesce(c.last_ts, c.match_ts), c.match_ts) DESC, c.match_id DESC")
        rows = await self._read(lambda c: _rows(c, sql, (user,)))
        return [Conversation(*r) for r in rows]

    async def cursors(self, match_id: str) -> dict[str, Cursors]:
        sql = "SELECT user, read_id, delivered_id FROM read_cursors WHERE match_id = ?"
        rows = await self._read(lambda c: _rows(c, sql, (match_id,)))
        return {user: Cursors(read_id, delivered_id) for user, read_id, delivered_id in rows}

    async def advance_cursor(self, match_id: str, user: str, kind: CursorKind,
                             message_id: int) -> bool:
        col = _CURSOR_COLUMNS[kind]
        if message_id <= 0:  # every cursor starts at 0: nothing to move
            return False
        sql = (f"INSERT INTO read_cursors (match_id, user, {col}) VALUES (?, ?, ?)"
               f" ON CONFLICT (match_id, user) DO UPDATE SET {col} = excluded.{col}"
               f" WHERE excluded.{col} > read_cursors.{col}")
        return await self._write(lambda c: _changed(c, sql, (match_id, user, message_id)))

    # -- swipes and matches ---------------------------------------------------------------
    async def record_swipe(self, swiper: str, target: str, action: SwipeAction,
                           ts: int) -> None:
        await self._write(lambda c: _record_swipe(c, swiper, target, action, ts))

    async def get_swipe(self, swiper: str, target: str) -> SwipeAction | None:
        sql = "SELECT action FROM swipes_by_swiper WHERE swiper = ? AND target = ?"
        rows = await self._read(lambda c: _rows(c, sql, (swiper, target)))
        return cast(SwipeAction, rows[0][0]) if rows else None

    async def swipes_given(self, swiper: str, after: str | None,
                           limit: int) -> list[SwipeRecord]:
        sql = ("SELECT target, action, ts FROM swipes_by_swiper WHERE swiper = ?"
               " AND target > ? ORDER BY target LIMIT ?")
        rows = await self._read(lambda c: _rows(c, sql, (swiper, after or "", limit)))
        return [SwipeRecord(t, cast(SwipeAction, a), ts) for t, a, ts in rows]

    async def create_match(self, match: MatchRecord) -> tuple[MatchRecord, bool]:
        return await self._write(lambda c: _create_match(c, match))

    async def get_match(self, match_id: str) -> MatchRecord | None:
        rows = await self._read(lambda c: _match_rows(c, match_id))
        return _match(rows[0]) if rows else None

    async def matches_for_user(self, user: str, limit: int,
                               cursor: str | None = None) -> Page:
        sql = (f"SELECT {', '.join('m.' + col for col in _MATCH.split(', '))}"
               " FROM matches_by_user u JOIN matches m ON m.id = u.match_id"
               " WHERE u.user = ? AND m.closed_ts IS NULL")
        args: tuple[Any, ...] = (user,)
        if cursor is not None:
            sql += " AND (u.ts, u.match_id) < (?, ?)"
            args += decode_page_cursor(cursor)
        sql += " ORDER BY u.ts DESC, u.match_id DESC LIMIT ?"
        rows = await self._read(lambda c: _rows(c, sql, (*args, limit + 1)))
        items = [_match(r) for r in rows[:limit]]
        more = len(rows) > limit and bool(items)
        return Page(items, encode_page_cursor(items[-1]) if more else None)

    async def matches_ever(self, user: str) -> list[MatchRecord]:
        # matches_by_user keeps closed matches here (the join filters them for listings)
        sql = (f"SELECT {', '.join('m.' + col for col in _MATCH.split(', '))}"
               " FROM matches_by_user u JOIN matches m ON m.id = u.match_id"
               " WHERE u.user = ? ORDER BY u.ts DESC, u.match_id DESC")
        rows = await self._read(lambda c: _rows(c, sql, (user,)))
        return [_match(r) for r in rows]

    async def close_match(self, match_id: str, by_user: str, ts: int) -> MatchRecord | None:
        return await self._write(lambda c: _close_match(c, match_id, by_user, ts))

    # -- blocks, devices, settings --------------------------------------------------------
    async def add_block(self, user: str, target: str, ts: int) -> None:
        sql = ("INSERT INTO blocks (user, target, ts) VALUES (?, ?, ?)"
               " ON CONFLICT (user, target) DO NOTHING")
        await self._write(lambda c: _changed(c, sql, (user, target, ts)))

    async def is_blocked(self, a: str, b: str) -> bool:
        sql = ("SELECT 1 FROM blocks WHERE (user = ? AND target = ?)"
               " OR (user = ? AND target = ?) LIMIT 1")
        return bool(await self._read(lambda c: _rows(c, sql, (a, b, b, a))))

    async def blocks_made(self, user: str) -> list[tuple[str, int]]:
        sql = "SELECT target, ts FROM blocks WHERE user = ? ORDER BY target"
        rows = await self._read(lambda c: _rows(c, sql, (user,)))
        return [(str(t), int(ts)) for t, ts in rows]

    async def put_device(self, device: Device) -> None:
        await self._write(lambda c: _put_device(c, device))

    async def delete_device(self, user: str, token: str) -> bool:
        return await self._write(lambda c: _delete_device(c, user, token))

    async def devices(self, user: str) -> list[Device]:
        sql = ("SELECT user, token, platform, app, locale, updated_ts FROM devices_by_user"
               " WHERE user = ? ORDER BY token")
        rows = await self._read(lambda c: _rows(c, sql, (user,)))
        return [Device(u, t, cast(Platform, p), a, lo, ts) for u, t, p, a, lo, ts in rows]

    async def get_settings(self, user: str) -> Settings:
        return await self._read(lambda c: _settings(c, user))

    async def put_settings(self, user: str, changes: dict[str, bool]) -> Settings:
        unknown = set(changes) - SETTING_NAMES
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        return await self._write(lambda c: _put_settings(c, user, changes))

    # -- the swipe economy (storage/sqlite_swipes.py) ---------------------------------------
    async def index_swipe(self, swipe: Swipe) -> None:
        await self._write(lambda c: sqlite_swipes.index_swipe(c, swipe))

    async def last_swipe(self, swiper: str) -> Swipe | None:
        return await self._read(lambda c: sqlite_swipes.last_swipe(c, swiper))

    async def undo_swipe(self, swipe: Swipe) -> bool:
        return await self._write(lambda c: sqlite_swipes.undo_swipe(c, swipe))

    async def likes_received(self, target: str, limit: int,
                             before: tuple[int, str] | None = None) -> list[Swipe]:
        return await self._read(
            lambda c: sqlite_swipes.likes_received(c, target, limit, before))

    async def deck_exclusions(self, user: str, candidates: Sequence[str]) -> set[str]:
        if not candidates:
            return set()
        return await self._read(lambda c: sqlite_swipes.deck_exclusions(c, user, candidates))

    # -- token revocations ----------------------------------------------------------------
    async def revoke_tokens(self, user: str, ts: int) -> int:
        return await self._write(lambda c: _revoke_tokens(c, user, ts))

    async def tokens_not_before(self, user: str) -> int | None:
        sql = "SELECT not_before FROM token_revocations WHERE user = ?"
        rows = await self._read(lambda c: _rows(c, sql, (user,)))
        return int(rows[0][0]) if rows else None

    # -- chat controls (storage/sqlite_controls.py) ---------------------------------------
    async def get_message(self, match_id: str, message_id: int) -> Message | None:
        row = await self._read(lambda c: controls.get_message(c, match_id, message_id))
        return None if row is None else _message(row)

    async def tombstone_message(self, match_id: str, message_id: int) -> bool:
        return await self._write(
            lambda c: controls.tombstone_message(c, match_id, message_id))

    async def has_sent(self, match_id: str, user: str) -> bool:
        return await self._read(lambda c: controls.has_sent(c, match_id, user))

    async def put_mute(self, user: str, match_id: str, until: int) -> None:
        await self._write(lambda c: controls.put_mute(c, user, match_id, until))

    async def delete_mute(self, user: str, match_id: str) -> None:
        await self._write(lambda c: controls.delete_mute(c, user, match_id))

    async def mute_until(self, user: str, match_id: str) -> int:
        return await self._read(lambda c: controls.mute_until(c, user, match_id))

    async def mutes(self, user: str) -> dict[str, int]:
        return await self._read(lambda c: controls.mutes(c, user))

    # -- account erasure (storage/sqlite_erasure.py) --------------------------------------
    async def begin_erasure(self, user: str, ts: int, *,
                            again_after: int | None = None) -> Erasure:
        return await self._write(lambda c: sqlite_erasure.begin(c, user, ts, again_after))

    async def get_erasure(self, user: str) -> Erasure | None:
        return await self._read(lambda c: sqlite_erasure.get(c, user))

    async def erasure_progress(self, user: str, step: int) -> None:
        await self._write(lambda c: sqlite_erasure.progress(c, user, step))

    async def finish_erasure(self, user: str, ts: int) -> None:
        await self._write(lambda c: sqlite_erasure.finish(c, user, ts))

    async def pending_erasures(self, limit: int) -> list[Erasure]:
        return await self._read(lambda c: sqlite_erasure.pending(c, limit))

    async def sent_in_match(self, user: str, match_id: str) -> list[tuple[int, str]]:
        return await self._read(lambda c: sqlite_erasure.sent_in_match(c, user, match_id))

    async def erase_in_match(self, user: str, match: MatchRecord) -> int:
        return await self._write(lambda c: sqlite_erasure.erase_in_match(c, user, match))

    async def erase_user_data(self, user: str, kind: ErasableKind) -> None:
        await self._write(lambda c: sqlite_erasure.erase_user_data(c, user, kind))

    # -- reports (storage/sqlite_reports.py) ----------------------------------------------
    async def save_report(self, report: Report, *, keep_s: int) -> None:
        """`keep_s` is not used: `purge_reports` deletes (SQLite has no TTL)."""
        await self._write(lambda c: sqlite_reports.save_report(c, report))

    async def get_report(self, report_id: str) -> Report | None:
        return await self._read(lambda c: sqlite_reports.get_report(c, report_id))

    async def list_reports(self, limit: int, cursor: str | None = None, *,
                           since_ts: int = 0) -> ReportPage:
        after = None if cursor is None else decode_report_cursor(cursor)
        return await self._read(
            lambda c: sqlite_reports.list_reports(c, limit, after, since_ts))

    async def purge_reports(self, before_ts: int) -> int:
        return await self._write(lambda c: sqlite_reports.purge_reports(c, before_ts))


# -- operations, run on the writer or a reader thread -------------------------------------
def _rows(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
    """All rows; fetching to the end resets the statement, so no read snapshot lingers."""
    return conn.execute(sql, args).fetchall()


def _changed(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> bool:
    return conn.execute(sql, args).rowcount > 0


def _message(row: Row) -> Message:
    match_id, id_, sender, client_id, ts, body, media = row
    return Message(match_id, id_, sender, client_id, ts, body,
                   None if media is None else json.loads(media))


def _match(row: Row) -> MatchRecord:
    id_, user_a, user_b, ts, superlike, closed_ts, closed_by = row
    return MatchRecord(id_, (user_a, user_b), ts, bool(superlike), closed_ts, closed_by)


def _match_rows(conn: sqlite3.Connection, match_id: str) -> list[Row]:
    return _rows(conn, f"SELECT {_MATCH} FROM matches WHERE id = ?", (match_id,))




# A save is one statement: an insert into this view, whose trigger claims the idempotency
# key, stores the message only if the claim is this message's, and advances both members'
# conversation rows (the members read from the match row). One statement instead of three
# is two fewer trips into SQLite, each a release and re-take of the GIL by the writer
# thread while the event loop wants it (docs/storage.md). Inside a trigger, `changes()` is
# the row count of the trigger's previous statement: 1 after the claim means the key is
# this message's (no read back), 1 after the message insert means it was stored. TEMP: it
# lives on the writer's connection only, nothing of it is in the file.
_SAVE_MESSAGE_TRIGGER = """
CREATE TEMP VIEW IF NOT EXISTS message_saves AS
    SELECT bucket, match_id, id, sender, client_id, ts, body, media FROM main.messages;
CREATE TEMP TRIGGER IF NOT EXISTS message_saves_insert INSTEAD OF INSERT ON message_saves
BEGIN
    INSERT INTO message_client_ids (match_id, sender, client_id, id)
        VALUES (NEW.match_id, NEW.sender, NEW.client_id, NEW.id) ON CONFLICT DO NOTHING;
    INSERT INTO messages (bucket, match_id, id, sender, client_id, ts, body, media)
        SELECT NEW.bucket, NEW.match_id, NEW.id, NEW.sender, NEW.client_id, NEW.ts,
               NEW.body, NEW.media
        WHERE changes() = 1;
    INSERT INTO conversations_by_user
        (user, match_id, peer, match_ts, last_id, last_from, last_ts)
        SELECT user_a, id, user_b, ts, NEW.id, NEW.sender, NEW.ts FROM matches
        WHERE id = NEW.match_id AND changes() = 1
        UNION ALL
        SELECT user_b, id, user_a, ts, NEW.id, NEW.sender, NEW.ts FROM matches
        WHERE id = NEW.match_id AND changes() = 1
        ON CONFLICT (user, match_id) DO UPDATE SET last_id = excluded.last_id,
        last_from = excluded.last_from, last_ts = excluded.last_ts
        WHERE excluded.last_id > conversations_by_user.last_id;
END;
"""
# Many saves in one statement, a VALUES row each: the writer thread's GIL is released once
# for the lot (docs/storage.md). VALUES rows are inserted in the order listed, so of two
# sends with one client id the first wins, as it would one statement at a time. The text
# of each size is built once; the connection's statement cache keeps it prepared.
_SAVE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"


@functools.cache
def _saves(n: int) -> str:
    return f"INSERT INTO message_saves (bucket, {_MSG}) VALUES " + ", ".join([_SAVE_ROW] * n)


# the most rows one save changes: its claim, the message and two conversation rows. A
# group that changed this many per save holds no key stored before (a repeat changes none)
_MOST_CHANGES_PER_SAVE = 4


def _setup_writer(conn: sqlite3.Connection) -> None:
    """The writer connection's set-up: the schema, then the save trigger above."""
    create_or_check(conn)
    conn.executescript(_SAVE_MESSAGE_TRIGGER)


def _save_messages(conn: sqlite3.Connection,
                   messages: list[Message]) -> list[tuple[Message, bool]]:
    """One statement for any number of messages (see `_SAVE_MESSAGE_TRIGGER`). When the
    rows it changed do not show every save as new, the message holding each key is read:
    one with another id was stored before, and is what that save returns. Without a match
    row the message is stored alone."""
    params: list[Any] = []
    for m in messages:
        params += (bucket_of(m.id), m.match_id, m.id, m.sender, m.client_id, m.ts, m.body,
                   None if m.media is None else json.dumps(m.media, separators=(",", ":")))
    before = conn.total_changes
    conn.execute(_saves(len(messages)), params)
    if conn.total_changes - before == _MOST_CHANGES_PER_SAVE * len(messages):
        return [(m, True) for m in messages]  # every save changed all it can: all new
    # a repeated key, or a conversation row that did not move: look at each (the rare way)
    return [(m, True) if stored.id == m.id else (stored, False)
            for m, stored in ((m, _stored(conn, m)) for m in messages)]


def _stored(conn: sqlite3.Connection, m: Message) -> Message:
    """The message stored under `m`'s idempotency key (`m` itself if its save won it)."""
    rows = _rows(conn, f"SELECT {', '.join('m.' + c for c in _MSG.split(', '))}"
                 " FROM message_client_ids k JOIN messages m"
                 " ON m.match_id = k.match_id AND m.id = k.id"
                 " WHERE k.match_id = ? AND k.sender = ? AND k.client_id = ?",
                 (m.match_id, m.sender, m.client_id))
    return _message(rows[0])


def _record_swipe(conn: sqlite3.Connection, swiper: str, target: str, action: SwipeAction,
                  ts: int) -> None:
    if not _changed(conn, "INSERT INTO swipes_by_swiper (swiper, target, action, ts)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (swiper, target) DO UPDATE SET"
                    " action = excluded.action, ts = excluded.ts"
                    " WHERE excluded.ts >= swipes_by_swiper.ts", (swiper, target, action, ts)):
        return  # an older swipe arrived late: the standing one keeps its like or not
    if action == "pass":
        conn.execute("DELETE FROM likes_received WHERE target = ? AND swiper = ?",
                     (target, swiper))
    else:
        conn.execute("INSERT INTO likes_received (target, swiper, action, ts)"
                     " VALUES (?, ?, ?, ?) ON CONFLICT (target, swiper) DO UPDATE SET"
                     " action = excluded.action, ts = excluded.ts", (target, swiper, action, ts))


def _create_match(conn: sqlite3.Connection, match: MatchRecord) -> tuple[MatchRecord, bool]:
    created = _changed(conn, f"INSERT INTO matches ({_MATCH}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                       " ON CONFLICT (id) DO NOTHING",
                       (match.id, *match.users, match.ts, int(match.superlike),
                        match.closed_ts, match.closed_by))
    stored = _match(_match_rows(conn, match.id)[0])
    user_a, user_b = stored.users
    for user, peer in ((user_a, user_b), (user_b, user_a)):  # harmless when already there
        conn.execute("INSERT INTO matches_by_user (user, match_id, ts) VALUES (?, ?, ?)"
                     " ON CONFLICT DO NOTHING", (user, stored.id, stored.ts))
        conn.execute("INSERT INTO conversations_by_user (user, match_id, peer, match_ts)"
                     " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                     (user, stored.id, peer, stored.ts))
    return stored, created


def _close_match(conn: sqlite3.Connection, match_id: str, by_user: str,
                 ts: int) -> MatchRecord | None:
    conn.execute("UPDATE matches SET closed_ts = ?, closed_by = ?"
                 " WHERE id = ? AND closed_ts IS NULL", (ts, by_user, match_id))
    rows = _match_rows(conn, match_id)
    return _match(rows[0]) if rows else None


def _put_device(conn: sqlite3.Connection, d: Device) -> None:
    for (owner,) in _rows(conn, "SELECT user FROM device_owner WHERE token = ?", (d.token,)):
        if owner != d.user:  # the token moved to another account on the same phone
            conn.execute("DELETE FROM devices_by_user WHERE user = ? AND token = ?",
                         (owner, d.token))
    conn.execute("INSERT INTO device_owner (token, user) VALUES (?, ?)"
                 " ON CONFLICT (token) DO UPDATE SET user = excluded.user", (d.token, d.user))
    conn.execute("INSERT INTO devices_by_user (user, token, platform, app, locale, updated_ts)"
                 " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user, token) DO UPDATE SET"
                 " platform = excluded.platform, app = excluded.app,"
                 " locale = excluded.locale, updated_ts = excluded.updated_ts",
                 (d.user, d.token, d.platform, d.app, d.locale, d.updated_ts))


def _delete_device(conn: sqlite3.Connection, user: str, token: str) -> bool:
    existed = _changed(conn, "DELETE FROM devices_by_user WHERE user = ? AND token = ?",
                       (user, token))
    conn.execute("DELETE FROM device_owner WHERE token = ? AND user = ?", (token, user))
    return existed


_SETTINGS_SELECT = f"SELECT {', '.join(SETTING_COLUMNS)} FROM settings WHERE user = ?"
_SETTINGS_PUT = (f"INSERT INTO settings (user, {', '.join(SETTING_COLUMNS)}) VALUES"
                 f" (?{', ?' * len(SETTING_COLUMNS)}) ON CONFLICT (user) DO UPDATE SET "
                 + ", ".join(f"{col} = excluded.{col}" for col in SETTING_COLUMNS))


def _settings(conn: sqlite3.Connection, user: str) -> Settings:
    rows = _rows(conn, _SETTINGS_SELECT, (user,))
    return Settings(*(bool(v) for v in rows[0])) if rows else Settings()


def _put_settings(conn: sqlite3.Connection, user: str, changes: dict[str, bool]) -> Settings:
    merged = {**_settings(conn, user).as_dict(), **changes}
    conn.execute(_SETTINGS_PUT, (user, *(int(merged[col]) for col in SETTING_COLUMNS)))
    return Settings(**merged)


def _revoke_tokens(conn: sqlite3.Connection, user: str, ts: int) -> int:
    """The max-merge of `revoke_tokens`, and the value it left."""
    conn.execute("INSERT INTO token_revocations (user, not_before) VALUES (?, ?)"
                 " ON CONFLICT (user) DO UPDATE SET"
                 " not_before = max(not_before, excluded.not_before)", (user, ts))
    return int(conn.execute("SELECT not_before FROM token_revocations WHERE user = ?",
                            (user,)).fetchone()[0])
