"""Stopping tasks that swallow a cancellation, as Python 3.11's wait_for can make them do."""

from __future__ import annotations

import asyncio

from runtime.tasks import stop_tasks, wait_event


async def test_a_task_that_swallows_its_first_cancel_is_still_stopped() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:  # what a lost cancellation looks like from outside
                swallowed += 1
                if swallowed == 1:
                    continue
                raise

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(stop_tasks([task]), 5)
    assert task.cancelled() and swallowed == 2


async def test_stop_tasks_collects_the_errors_of_finished_tasks() -> None:
    async def fails() -> None:
        raise ValueError("seen by nobody")

    failed = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    await stop_tasks([failed])  # no "exception was never retrieved" left for the loop to log
    assert isinstance(failed.exception(), ValueError)


async def test_wait_event_returns_on_the_event_or_the_timeout() -> None:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_event(event, 0.05)
    assert loop.time() - started >= 0.04
    loop.call_later(0.01, event.set)
    await asyncio.wait_for(wait_event(event, 10), 2)
