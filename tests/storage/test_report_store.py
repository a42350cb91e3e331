"""The report operations of the `Store` (storage/base.py, "reports") on SQLite and a real
Cassandra node: the round trip of a report and its evidence, the newest-first listing paged
across UTC days back to the retention horizon, and the purge. Then what only one backend
has: Cassandra's TTL and day rows, SQLite's upgrade of a version-1 file.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from protocol.ids import compose, ms_of
from storage.base import (
    DAY_MS,
    Message,
    Report,
    ReportPage,
    Store,
    encode_page_cursor,
    encode_report_cursor,
)
from storage.sqlite import SqliteStore
from storage.sqlite_schema import SCHEMA_VERSION, TABLES
from tests.cassandra_node import CassandraNode

T0 = 1_700_000_000_000  # unix ms: a fixed "now", 13:33 UTC
DAY0 = T0 // DAY_MS * DAY_MS  # the start of its UTC day
KEEP_S = 90 * 86_400


def message(n: int, sender: str = "ann", **fields: Any) -> Message:
    id_ = compose(T0 + n, 1, 0)
    defaults: dict[str, Any] = {"body": f"message {n}"}
    return Message("m1", id_, sender, f"c{n}", ms_of(id_), **{**defaults, **fields})


def report(n: int, ts: int, **fields: Any) -> Report:
    values: dict[str, Any] = {"id": f"r{n:04d}", "reporter": "ann", "reported": "bob",
                              "reason": "spam", "ts": ts, **fields}
    return Report(**values)


async def walk(store: Store, limit: int, since_ts: int = 0) -> list[list[str]]:
    """The ids of every page of the listing, following `next` to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        page: ReportPage = await store.list_reports(limit, cursor, since_ts=since_ts)
        pages.append([r.id for r in page.items])
        if page.next is None:
            return pages
        assert len(pages) < 100, "the listing does not end"
        cursor = page.next


async def test_a_report_and_its_evidence_round_trip(store: Store) -> None:
    evidence = (message(3, "bob", body="héllo ✓ \U0001f600"),
                message(2, "ann", body=None, media={"kind": "image", "url": "https://x/y",
                                                    "w": 10, "h": 20}),
                message(1, "bob", body="x" * 4000))
    filed = report(1, T0, reason="harassment", note="he said\nthings", evidence=evidence)
    await store.save_report(filed, keep_s=KEEP_S)
    assert await store.get_report(filed.id) == filed
    await store.save_report(filed, keep_s=KEEP_S)  # a retry: still the one report
    assert [r.id for r in (await store.list_reports(10)).items] == [filed.id]
    bare = report(2, T0 + 1)  # no note, no evidence (never matched)
    await store.save_report(bare, keep_s=KEEP_S)
    assert await store.get_report(bare.id) == bare
    assert await store.get_report("r-none") is None


async def test_the_listing_is_newest_first_and_pages_across_days(store: Store) -> None:
    # 13 reports over five UTC days (one day without any), two sharing a ts
    times = [DAY0 - 4 * DAY_MS + 5, DAY0 - 4 * DAY_MS + 9, DAY0 - 3 * DAY_MS,
             DAY0 - 2 * DAY_MS + 1, DAY0 - 2 * DAY_MS + 1, DAY0 - 2 * DAY_MS + DAY_MS - 1,
             DAY0, DAY0 + 1, DAY0 + 2, DAY0 + 3, DAY0 + 60_000, DAY0 + 61_000, T0]
    reports = [report(n, ts) for n, ts in enumerate(times)]
    for r in reversed(reports):  # written in no helpful order
        await store.save_report(r, keep_s=KEEP_S)
    newest_first = [r.id for r in sorted(reports, key=lambda r: (r.ts, r.id), reverse=True)]
    for limit in (1, 2, 3, 5, 13, 50):
        pages = await walk(store, limit)
        assert [i for page in pages for i in page] == newest_first, limit
        assert all(len(page) == limit for page in pages[:-1]), limit
        assert 0 < len(pages[-1]) <= limit or len(pages) == 1
    horizon = DAY0 - 2 * DAY_MS + 1  # mid-day: the two at exactly it are kept
    kept = [r.id for r in sorted(reports, key=lambda r: (r.ts, r.id), reverse=True)
            if r.ts >= horizon]
    assert len(kept) == 10
    for limit in (1, 4, 100):
        pages = await walk(store, limit, since_ts=horizon)
        assert [i for page in pages for i in page] == kept, limit


async def test_a_cursor_from_elsewhere_is_a_value_error(store: Store) -> None:
    await store.save_report(report(1, T0), keep_s=KEEP_S)
    from storage.base import MatchRecord
    for bad in ("", "nope", "!!!", encode_page_cursor(MatchRecord("m1", ("a", "b"), T0)),
                encode_report_cursor(T0, "")[:-2]):
        with pytest.raises(ValueError):
            await store.list_reports(10, bad)
    # a cursor past everything gives an empty last page
    empty = await store.list_reports(10, encode_report_cursor(0, "r"))
    assert empty.items == [] and empty.next is None


async def test_the_purge_deletes_what_was_filed_before_its_time(store: Store) -> None:
    times = [DAY0 - 3 * DAY_MS, DAY0 - 2 * DAY_MS + 7, DAY0 + 1, DAY0 + 5, DAY0 + 9, T0]
    reports = [report(n, ts, evidence=(message(n),)) for n, ts in enumerate(times)]
    for r in reports:
        await store.save_report(r, keep_s=KEEP_S)
    assert await store.purge_reports(DAY0 + 5) == 3  # two older days and one of today
    for r in reports:
        assert (await store.get_report(r.id) is None) == (r.ts < DAY0 + 5), r
    assert [i for page in await walk(store, 2) for i in page] == ["r0005", "r0004", "r0003"]
    assert await store.purge_reports(DAY0 + 5) == 0  # nothing left to do
    assert await store.purge_reports(T0 + 1) == 3
    assert (await store.list_reports(10)).items == []
    late = report(9, T0 + 2)  # a report after a purge is listed as ever
    await store.save_report(late, keep_s=KEEP_S)
    assert [r.id for r in (await store.list_reports(10)).items] == [late.id]


# -- Cassandra: TTL and day rows ------------------------------------------------------------
@pytest.fixture
def cql(cassandra_cql: Any) -> Any:
    return cassandra_cql


async def test_cassandra_rows_carry_the_retention_as_ttl_and_purge_drops_days(
        cassandra_node: CassandraNode, cql: Any, request: pytest.FixtureRequest) -> None:
    from storage.cassandra import CassandraStore

    keyspace = "t_" + hashlib.blake2b(request.node.nodeid.encode(), digest_size=8).hexdigest()
    store = CassandraStore([cassandra_node.contact_point], keyspace=keyspace)
    await store.start()
    try:
        for n, ts in enumerate((DAY0 - 2 * DAY_MS, DAY0 - DAY_MS, DAY0 + 1, T0)):
            await store.save_report(report(n, ts, evidence=(message(n),)), keep_s=3600)

        def look(query: str) -> list[Any]:
            return list(cql.execute(query.format(ks=keyspace)))

        ttls = await asyncio.to_thread(look, "SELECT TTL(evidence) AS t FROM {ks}.reports")
        assert len(ttls) == 4 and all(3500 < row["t"] <= 3600 for row in ttls), ttls
        today = DAY0 // DAY_MS
        listed = await asyncio.to_thread(look, "SELECT id FROM {ks}.reports_by_day"
                                         f" WHERE day = {today}")
        assert [row["id"] for row in listed] == ["r0003", "r0002"]  # newest first
        days = await asyncio.to_thread(look, "SELECT day FROM {ks}.report_days WHERE shard = 0")
        assert [row["day"] for row in days] == [today - d for d in (0, 1, 2)]
        assert await store.purge_reports(DAY0 + 2) == 3
        days = await asyncio.to_thread(look, "SELECT day FROM {ks}.report_days WHERE shard = 0")
        assert [row["day"] for row in days] == [today]  # today still holds one
        rest = await asyncio.to_thread(look, "SELECT day, id FROM {ks}.reports_by_day"
                                       f" WHERE day = {today}")
        assert [row["id"] for row in rest] == ["r0003"]
    finally:
        await store.close()


# -- SQLite: a version-1 file is upgraded ---------------------------------------------------
async def test_a_version_1_sqlite_file_gets_the_report_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(TABLES)
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.execute("INSERT INTO blocks (user, target, ts) VALUES ('ann', 'bob', 1)")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.start()
    try:
        assert await store.is_blocked("ann", "bob")  # the old data is still there
        await store.save_report(report(1, T0), keep_s=KEEP_S)
        assert (await store.get_report("r0001")) == report(1, T0)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)]
        assert SCHEMA_VERSION >= 4  # the reports came in version 4
    finally:
        conn.close()


@pytest.mark.parametrize("old", [1, 3])
async def test_an_older_cassandra_keyspace_gets_the_report_tables(
        cassandra_node: CassandraNode, cql: Any, request: pytest.FixtureRequest,
        old: int) -> None:
    """A keyspace at version 1, or at 3 (the version before the reports'), is migrated."""
    from storage.cassandra import CassandraStore
    from storage.cassandra_schema import COMPONENT, MIGRATIONS, stored_version

    keyspace = "v_" + hashlib.blake2b(request.node.nodeid.encode(), digest_size=8).hexdigest()

    def make_old() -> None:  # what an older release's `migrate` left
        cql.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication ="
                    " {'class': 'SimpleStrategy', 'replication_factor': '1'}")
        cql.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_version (component text"
                    " PRIMARY KEY, version int, updated_ts timestamp)")
        for version in range(1, old + 1):
            for statement in MIGRATIONS[version]:
                cql.execute(statement.format(ks=keyspace), timeout=60)
        cql.execute(f"INSERT INTO {keyspace}.schema_version (component, version)"
                    " VALUES (%s, %s)", (COMPONENT, old))
        cql.execute(f"INSERT INTO {keyspace}.blocks (user, target, ts) VALUES ('ann', 'bob', 1)")

    await asyncio.to_thread(make_old)
    store = CassandraStore([cassandra_node.contact_point], keyspace=keyspace)
    await store.start()
    try:
        assert await asyncio.to_thread(stored_version, cql, keyspace) == SCHEMA_VERSION
        assert await store.is_blocked("ann", "bob")  # the old data is still there
        await store.save_report(report(1, T0), keep_s=KEEP_S)
        assert await store.get_report("r0001") == report(1, T0)
    finally:
        await store.close()
