"""`report_hook` targets for tests/server/test_reports.py, loaded by the node by their
dotted path, as an operator's moderation hook would be."""

from __future__ import annotations

import asyncio

from storage import Store
from storage.base import Report

# what the hooks saw: (the report, whether the store held it when the hook ran)
CALLS: list[tuple[Report, bool]] = []
STORE: list[Store] = []  # the node's store, set by the test
RELEASE = asyncio.Event()


async def record(report: Report) -> None:
    stored = await STORE[0].get_report(report.id) if STORE else None
    CALLS.append((report, stored == report))


def fail(report: Report) -> None:
    raise RuntimeError(f"moderation said no to {report.note}")


async def hang(report: Report) -> None:
    await RELEASE.wait()
    CALLS.append((report, True))


not_callable = 42
