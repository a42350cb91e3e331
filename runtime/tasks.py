"""Stopping and waiting without Python 3.11's lost cancellations.

On 3.11, `asyncio.wait_for` returns the inner result when a cancellation arrives in the
iteration the inner awaitable finishes, and the cancellation is lost (CPython gh-86296, fixed
in 3.12). Client libraries use it around every socket write (redis-py does), so a loop that is
cancelled mid-command can swallow the cancel and run on, and `task.cancel(); await task`
then waits forever. These helpers are what the node's stop paths use instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """`wait_for(event.wait(), timeout)` without the race above; a timeout is no error."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout)
    finally:
        waiter.cancel()


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel and wait for `tasks`, cancelling again any that swallowed the cancel."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for task in tasks:  # their errors were the caller's to see, not the loop's to log
        if not task.cancelled():
            task.exception()
