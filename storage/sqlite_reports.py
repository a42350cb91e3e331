"""The report operations of `SqliteStore`: plain functions of a connection, as in
`storage.sqlite`, run by its writer (inside the group's transaction) or a reader.

A report is one row of `reports` with its evidence copied in (`storage.report_rows`); the
listing reads the index on (ts, id) newest first, and a purge is one DELETE on it.
"""

from __future__ import annotations

import sqlite3
from typing import Any, cast

from storage.base import (
    Report,
    ReportPage,
    ReportReason,
    encode_report_cursor,
)
from storage.report_rows import evidence_json, evidence_of

Row = tuple[Any, ...]
_REPORT = "id, reporter, reported, reason, note, ts, evidence"


def save_report(conn: sqlite3.Connection, report: Report) -> None:
    """Insert the row; a retry of the same id changes nothing (it is the same report)."""
    r = report
    conn.execute(f"INSERT INTO reports ({_REPORT}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                 " ON CONFLICT (id) DO NOTHING",
                 (r.id, r.reporter, r.reported, r.reason, r.note, r.ts,
                  evidence_json(r.evidence)))


def get_report(conn: sqlite3.Connection, report_id: str) -> Report | None:
    rows = conn.execute(f"SELECT {_REPORT} FROM reports WHERE id = ?",
                        (report_id,)).fetchall()
    return _report(rows[0]) if rows else None


def list_reports(conn: sqlite3.Connection, limit: int, after: tuple[int, str] | None,
                 since_ts: int) -> ReportPage:
    """`after`: the (ts, id) of a decoded cursor (decoded on the loop, so that a bad one
    is the caller's ValueError before any thread is involved)."""
    sql = f"SELECT {_REPORT} FROM reports WHERE ts >= ?"
    args: tuple[Any, ...] = (since_ts,)
    if after is not None:
        sql += " AND (ts, id) < (?, ?)"
        args += after
    sql += " ORDER BY ts DESC, id DESC LIMIT ?"
    rows = conn.execute(sql, (*args, limit + 1)).fetchall()
    items = [_report(r) for r in rows[:limit]]
    more = len(rows) > limit and bool(items)
    return ReportPage(items, encode_report_cursor(items[-1].ts, items[-1].id) if more else None)


def purge_reports(conn: sqlite3.Connection, before_ts: int) -> int:
    return conn.execute("DELETE FROM reports WHERE ts < ?", (before_ts,)).rowcount


def _report(row: Row) -> Report:
    id_, reporter, reported, reason, note, ts, evidence = row
    return Report(id_, reporter, reported, cast(ReportReason, reason), ts, note,
                  evidence_of(evidence))
