"""The `PushQueue` contract (push/queue.py): jobs go round in order, a delayed job waits
until it is due, and the queue is bounded, delayed jobs included.

What only the Redis Stream does (take-over of a stopped node's jobs, dropping a job no node
finishes, keeping a slow job, forgetting consumers) is in
tests/push/test_push_queue_redis.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from push.queue import MemoryPushQueue, PushJob, PushQueue, Taken
from push.redis_queue import RedisPushQueue
from storage import Message
from tests.contracts.conftest import Backing

MakeQueue = Callable[..., Awaitable[PushQueue]]


def job(user: str = "bob", message_id: int = 1) -> PushJob:
    return PushJob.for_message(user, Message(match_id="m0123", id=message_id, sender="ann",
                                             client_id="c", ts=1_700_000_000_000,
                                             body="a secret body"))


@pytest.fixture
async def make_queue(backing: Backing) -> AsyncIterator[MakeQueue]:
    """Started queues, closed at teardown."""
    made: list[PushQueue] = []

    async def make(max_jobs: int = 100) -> PushQueue:
        queue: PushQueue
        if backing.shared:
            queue = RedisPushQueue(await backing.client(), consumer=f"node-{len(made)}",
                                   prefix=backing.prefix, max_jobs=max_jobs)
        else:
            queue = MemoryPushQueue(max_jobs=max_jobs)
        await queue.start()
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()


async def take(queue: Any, timeout: float = 5.0) -> Taken:
    async with asyncio.timeout(timeout):
        taken: Taken = await queue.take()
    return taken


async def test_jobs_go_round_in_order(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    jobs = [job(message_id=i) for i in range(1, 4)]
    for item in jobs:
        assert await queue.put(item)
    taken = [await take(queue) for _ in jobs]
    assert [t.job for t in taken] == jobs
    for item in taken:
        await queue.done(item)


async def test_a_delayed_job_is_not_taken_before_it_is_due(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    started = time.monotonic()
    assert await queue.put(job(message_id=7), delay_s=0.5)
    assert await queue.put(job(message_id=8))
    first = await take(queue)
    assert first.job.message_id == 8  # the due one first
    late = await take(queue)
    assert late.job.message_id == 7
    assert time.monotonic() - started >= 0.48
    await queue.done(first)
    await queue.done(late)


async def test_the_queue_is_bounded_delayed_jobs_included(make_queue: MakeQueue) -> None:
    queue = await make_queue(max_jobs=2)
    assert await queue.put(job(message_id=1))
    assert await queue.put(job(message_id=2), delay_s=10)  # delayed jobs count too
    assert not await queue.put(job(message_id=3))
    await queue.done(await take(queue))
    assert await queue.put(job(message_id=4))


async def test_forget_removes_the_jobs_naming_a_user_waiting_or_delayed(
        make_queue: MakeQueue) -> None:
    """Account erasure: every job to or about the user goes, due or delayed; others stay."""
    queue = await make_queue()
    kept = [job("bob", 1), job("cat", 2)]
    for j in (job("erin", 3), kept[0], PushJob.for_message("dan", Message(
            match_id="m1", id=4, sender="erin", client_id="c", ts=1, body="x"))):
        assert await queue.put(j)
    assert await queue.put(job("erin", 5), delay_s=3600)
    assert await queue.put(kept[1], delay_s=0.2)
    erin = lambda j: "erin" in (j.user, j.sender, j.peer)  # noqa: E731
    assert await queue.forget(erin) == 3  # type: ignore[attr-defined]
    got = [await take(queue), await take(queue)]
    assert [t.job for t in got] == kept
    for taken in got:
        await queue.done(taken)
    assert await queue.forget(erin) == 0  # type: ignore[attr-defined]
