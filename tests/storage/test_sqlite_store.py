"""What only `SqliteStore` promises: group commit, per-write savepoints, reads beside writes,
the on-disk layout (WAL, schema version, buckets) and durability across a hard exit."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import storage.sqlite
from protocol.ids import compose, ms_of
from storage.base import MatchRecord, Message, Settings, StoreUnavailable, match_id_for
from storage.buckets import bucket_of
from storage.sqlite import SqliteStore
from storage.sqlite_schema import SCHEMA_VERSION

T0 = 1_700_000_000_000
MATCH = match_id_for("ann", "bob")
REPO = Path(__file__).resolve().parents[2]


def msg(i: int, client_id: str | None = None, ms: int = T0) -> Message:
    id_ = compose(ms, 1, i)
    return Message(MATCH, id_, "ann", client_id or f"c{i}", ms_of(id_), f"body {i}")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "r.db")
    await store.start()
    await store.create_match(MatchRecord(MATCH, ("ann", "bob"), T0))
    yield store
    await store.close()


class Gate:
    """A write that holds the writer thread until opened, so what follows queues up."""

    def __init__(self, store: SqliteStore) -> None:
        self.entered, self.opened = threading.Event(), threading.Event()
        self.done = store.engine.write(self._hold)

    def _hold(self, conn: sqlite3.Connection) -> None:
        self.entered.set()
        self.opened.wait(10)

    async def __aenter__(self) -> Gate:
        await asyncio.to_thread(self.entered.wait, 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.opened.set()
        await self.done


def raising_for(client_id: str, error: Exception) -> Callable[..., Any]:
    """`_save_messages` that does its writes, then fails for a group holding one client id."""
    real = storage.sqlite._save_messages

    def save(conn: sqlite3.Connection, messages: list[Message]) -> Any:
        result = real(conn, messages)
        if any(m.client_id == client_id for m in messages):
            raise error
        return result
    return save


async def test_a_failing_write_fails_alone_and_leaves_no_trace(
        db: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.sqlite, "_save_messages", raising_for("bad", RuntimeError("x")))
    good1, bad, good2 = msg(1), msg(2, "bad"), msg(3)
    async with Gate(db):
        batches = db.engine.batches
        tasks = [asyncio.ensure_future(db.save_message(m)) for m in (good1, bad, good2)]
        await asyncio.sleep(0)  # every save is now queued behind the gate
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert db.engine.batches == batches + 2  # the gate's transaction, then all three in one
    assert results[0] == (good1, True) and results[2] == (good2, True)
    assert isinstance(results[1], RuntimeError)
    assert (await db.history(MATCH, None, 10))[0] == [good2, good1]
    monkeypatch.undo()
    assert await db.save_message(bad) == (bad, True)  # its client id was rolled back too


async def test_saves_queued_together_are_one_group_with_per_message_outcomes(
        db: SqliteStore) -> None:
    """One statement saves a queued group; what each save returns is what it would be one
    at a time: a key sent twice in the group keeps the first message, a key stored before
    returns the stored one, a message without a match row is stored alone, and a cursor
    write between saves keeps its place in the order."""
    earlier = msg(1, "old")
    assert await db.save_message(earlier) == (earlier, True)
    lonely = Message("no-such-match", compose(T0, 1, 9), "ann", "c9", T0, "alone")
    first, twin, resent, later = msg(2, "k"), msg(3, "k"), msg(4, "old"), msg(5)
    async with Gate(db):
        batches = db.engine.batches
        saves = [asyncio.ensure_future(db.save_message(m))
                 for m in (first, twin, resent, lonely)]
        await asyncio.sleep(0)
        cursor = asyncio.ensure_future(db.advance_cursor(MATCH, "bob", "read", first.id))
        await asyncio.sleep(0)
        saves.append(asyncio.ensure_future(db.save_message(later)))
        await asyncio.sleep(0)
    results = await asyncio.gather(*saves)
    assert db.engine.batches == batches + 2  # the gate's, then everything queued behind it
    assert results == [(first, True), (first, False), (earlier, False), (lonely, True),
                       (later, True)]
    assert await cursor is True
    assert (await db.history(MATCH, None, 10))[0] == [later, first, earlier]
    assert (await db.history("no-such-match", None, 10))[0] == [lonely]
    conversation, = await db.conversations("bob")
    assert (conversation.last_id, conversation.last_from) == (later.id, "ann")


async def test_the_checkpointer_copies_the_wal_back_off_the_writer(
        db: SqliteStore, tmp_path: Path) -> None:
    """Commits poke the checkpointer thread, which copies every WAL frame back into the
    database file soon after (the writer's own checkpoint is only a backstop)."""
    await asyncio.gather(*(db.save_message(msg(i)) for i in range(1, 400)))
    await asyncio.sleep(0.6)  # more than one interval: the last poke was served
    assert db.engine.checkpointer.checkpoints >= 1
    # the database file alone, without its WAL, holds every message: they were copied
    alone = tmp_path / "alone.db"
    alone.write_bytes((tmp_path / "r.db").read_bytes())
    probe = sqlite3.connect(alone)
    try:
        assert probe.execute("SELECT count(*) FROM messages").fetchone() == (399,)
    finally:
        probe.close()


async def test_a_sqlite_error_in_a_write_is_store_unavailable(
        db: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    error = sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(storage.sqlite, "_save_messages", raising_for("bad", error))
    with pytest.raises(StoreUnavailable) as info:
        await db.save_message(msg(1, "bad"))
    assert info.value.__cause__ is error
    assert (await db.save_message(msg(2)))[1]


async def test_a_sqlite_error_in_a_read_is_store_unavailable(
        db: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")
    monkeypatch.setattr(storage.sqlite, "_settings", broken)
    with pytest.raises(StoreUnavailable):
        await db.get_settings("ann")


async def test_reads_do_not_wait_behind_writes(db: SqliteStore) -> None:
    await db.save_message(msg(1))
    async with Gate(db):
        queued = asyncio.ensure_future(db.save_message(msg(2)))
        page, _ = await asyncio.wait_for(db.history(MATCH, None, 10), 5)
        assert [m.id for m in page] == [msg(1).id]
        assert not queued.done()
    assert await queued == (msg(2), True)


async def test_queued_writes_commit_in_groups_of_max_batch(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.db", max_batch=100)
    await store.start()
    try:
        async with Gate(store):
            batches = store.engine.batches
            tasks = [asyncio.ensure_future(store.save_message(msg(i))) for i in range(250)]
            await asyncio.sleep(0)
        assert all(created for _, created in await asyncio.gather(*tasks))
        assert store.engine.batches == batches + 1 + 3  # the gate, then 100 + 100 + 50
    finally:
        await store.close()


async def test_close_commits_writes_already_queued(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.db")
    await store.start()
    async with Gate(store):
        tasks = [asyncio.ensure_future(store.save_message(msg(i))) for i in range(50)]
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0.05)
        assert not closing.done()
    await closing
    assert all(created for _, created in await asyncio.gather(*tasks))
    reopened = SqliteStore(tmp_path / "r.db")
    await reopened.start()
    try:
        assert len(await reopened.messages_after(MATCH, 0, 100)) == 50
    finally:
        await reopened.close()


async def test_acked_write_survives_a_hard_exit(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    script = textwrap.dedent(f"""
        import asyncio, os
        from storage.base import Message
        from storage.sqlite import SqliteStore

        async def main():
            store = SqliteStore({str(path)!r})
            await store.start()
            for i in range(20):
                await store.save_message(Message("m1", 1000 + i, "ann", f"c{{i}}", 0, "x"))
            print("acked", flush=True)
            os._exit(0)  # no close(): the process dies with the store open

        asyncio.run(main())
    """)
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], cwd=REPO,
                                   capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "acked", done.stderr
    store = SqliteStore(path)
    await store.start()
    try:
        assert [m.id for m in await store.messages_after("m1", 0, 50)] == list(
            range(1000, 1020))
    finally:
        await store.close()


async def test_on_disk_layout(db: SqliteStore, tmp_path: Path) -> None:
    ids = [compose(T0, 1, 0), compose(T0 + 3 * 86_400_000 * 10, 1, 0)]
    for n, id_ in enumerate(ids):
        await db.save_message(Message(MATCH, id_, "ann", f"c{n}", ms_of(id_), None,
                                      {"kind": "image", "url": "u"}))
    await db.record_swipe("ann", "bob", "like", T0)
    await db.record_swipe("cat", "bob", "superlike", T0)
    await db.record_swipe("dan", "bob", "like", T0)
    await db.record_swipe("dan", "bob", "pass", T0 + 1)
    conn = sqlite3.connect(tmp_path / "r.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)]
        rows = conn.execute("SELECT bucket, id, media FROM messages ORDER BY id").fetchall()
        assert rows == [(bucket_of(i), i, '{"kind":"image","url":"u"}') for i in ids]
        assert rows[0][0] != rows[1][0]
        likes = conn.execute("SELECT target, swiper, action FROM likes_received"
                             " ORDER BY swiper").fetchall()
        assert likes == [("bob", "ann", "like"), ("bob", "cat", "superlike")]
    finally:
        conn.close()


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        await SqliteStore(tmp_path / "r.db").start()


async def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file of version 1 (no token_revocations) gets version 2's tables, keeping its
    data."""
    old = SqliteStore(tmp_path / "r.db")
    await old.start()
    await old.record_swipe("ann", "bob", "like", T0)
    await old.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.execute("DROP TABLE token_revocations")
    conn.execute("UPDATE schema_version SET version = 1")
    conn.commit()
    conn.close()
    store = SqliteStore(tmp_path / "r.db")
    await store.start()
    try:
        assert await store.get_swipe("ann", "bob") == "like"
        assert await store.revoke_tokens("ann", T0) == T0
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)]
    finally:
        conn.close()


async def test_a_version_1_file_gets_the_push_kind_columns_and_mutes(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE settings (user TEXT NOT NULL PRIMARY KEY, show_online INTEGER NOT NULL,
            read_receipts INTEGER NOT NULL, push_previews INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO settings VALUES ('ann', 0, 1, 1);
    """)
    conn.close()
    for start in range(2):  # the second start finds the version now and changes nothing
        store = SqliteStore(tmp_path / "r.db")
        await store.start()
        try:
            kept = await store.get_settings("ann")
            assert kept == Settings(show_online=False, push_previews=True,
                                    push_match=start == 0)
            assert (await store.put_settings("ann", {"push_match": False})).push_match is False
            await store.put_mute("ann", "m1", 5)
            assert await store.mute_until("ann", "m1") == 5
        finally:
            await store.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


async def test_an_unopenable_file_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        await SqliteStore(tmp_path).start()  # a directory


async def test_calls_before_start_raise_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        await SqliteStore(tmp_path / "r.db").ping()


async def test_bad_arguments_are_refused(db: SqliteStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteStore(tmp_path / "x.db", synchronous="SOMETIMES")
    with pytest.raises(ValueError):
        SqliteStore(tmp_path / "x.db", max_batch=0)
    with pytest.raises(ValueError):
        await db.matches_for_user("ann", 10, "not a cursor")
    with pytest.raises(ValueError):
        await db.put_settings("ann", {"dark_mode": True})
