"""How `CassandraStore` keeps reports: by id, and listed newest first by UTC day.

`reports` holds each report with its evidence copied in (one partition per report);
`reports_by_day` lists them newest first, one partition per UTC day; `report_days` names the
days that hold any, in one small partition (a row per day of retention). A page of the
listing reads the day list once, then one day partition after another, newest first, back
to the retention horizon, then the reports of the page by id, concurrently. A purge drops
whole days (and the expired part of the day of the horizon) the same way. Every request is
one partition; nothing scans a table.

Rows are written with a TTL of the retention, a backstop of the purge: a report whose
listing row was lost to a failed write still goes when its time is up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from storage.base import (
    DAY_MS,
    Report,
    ReportPage,
    ReportReason,
    decode_report_cursor,
    encode_report_cursor,
)
from storage.report_rows import evidence_json, evidence_of

Row = dict[str, Any]
Run = Callable[..., Awaitable[list[Row]]]
NO_DAY_BOUND = (1 << 31) - 1
MAX_TTL_S = 630_720_000  # Cassandra refuses a TTL over 20 years
DELETES_AT_ONCE = 256  # report rows a purge deletes concurrently


class ReportTables:
    """The report operations of the `Store` over `run`, the store's "send one prepared
    statement by name" call."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def save(self, report: Report, keep_s: int) -> None:
        """The listing rows first, then the report: a failure between the two leaves a
        listing entry without a report (skipped by `page`, removed by `purge`), never a
        report that nothing lists."""
        r = report
        ttl = max(1, min(keep_s, MAX_TTL_S))
        day_ttl = min(ttl + DAY_MS // 1000, MAX_TTL_S)  # the day outlives its last report
        await _all((self._run("list_report", r.day, r.ts, r.id, ttl),
                    self._run("add_report_day", r.day, day_ttl)))
        await self._run("put_report", r.id, r.reporter, r.reported, r.reason, r.note, r.ts,
                        evidence_json(r.evidence), ttl)

    async def get(self, report_id: str) -> Report | None:
        rows = await self._run("get_report", report_id)
        return _report(rows[0]) if rows else None

    async def page(self, limit: int, cursor: str | None, since_ts: int) -> ReportPage:
        after = None if cursor is None else decode_report_cursor(cursor)
        top = NO_DAY_BOUND if after is None else after[0] // DAY_MS
        days = await self._run("report_days_from", top, since_ts // DAY_MS)  # newest first
        want = limit + 1  # one more than the page tells whether there is a next one
        keys: list[tuple[int, str]] = []
        for day in (row["day"] for row in days):
            if after is not None and day == top:
                rows = await self._run("reports_in_day_after", day, *after, want - len(keys))
            else:
                rows = await self._run("reports_in_day", day, want - len(keys))
            fresh = [(row["ts"], row["id"]) for row in rows if row["ts"] >= since_ts]
            keys += fresh
            if len(keys) >= want or len(fresh) < len(rows):  # full, or past the horizon
                break
        found = await _all(self.get(report_id) for _, report_id in keys[:limit])
        items = [report for report in found if report is not None]  # expired meanwhile
        more = len(keys) > limit
        return ReportPage(items, encode_report_cursor(*keys[limit - 1]) if more else None)

    async def purge(self, before_ts: int) -> int:
        """Day by day, up to the day of `before_ts`: the reports, then their listing rows,
        then (for a day wholly before it) the day, so a purge cut short is finished by the
        next one."""
        last_day = before_ts // DAY_MS
        deleted = 0
        for day in [row["day"] for row in await self._run("report_days_through", last_day)]:
            rows = await self._run("reports_in_day_before", day, before_ts)
            ids = [row["id"] for row in rows]
            for start in range(0, len(ids), DELETES_AT_ONCE):
                await _all(self._run("drop_report", report_id)
                           for report_id in ids[start:start + DELETES_AT_ONCE])
            if ids:
                await self._run("unlist_reports", day, before_ts)
            if day < last_day:
                await self._run("drop_report_day", day)
            deleted += len(ids)
        return deleted


async def _all(calls: Iterable[Awaitable[Any]]) -> list[Any]:
    """Await every call, even when one fails (none is left running), then raise."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _report(r: Row) -> Report:
    return Report(r["id"], r["reporter"], r["reported"], cast(ReportReason, r["reason"]),
                  r["ts"], r["note"], evidence_of(r["evidence"]))
