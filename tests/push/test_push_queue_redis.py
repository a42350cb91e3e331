"""The durable push queue against real Redis, standalone and cluster: what only the Redis
Stream does. What every `PushQueue` and `PushGates` promises is in tests/contracts/.

Each "node" is a queue with its own client and consumer name, as real nodes have; keys carry
a prefix unique to the test because the cluster is shared by the session.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from push.queue import PushJob, Taken, pack_job, unpack_job
from push.redis_queue import RedisPushQueue
from storage import MatchRecord, Message
from tests.helpers import wait_until

Client = Redis | RedisCluster
MakeQueue = Callable[..., RedisPushQueue]


def job(user: str = "bob", message_id: int = 1) -> PushJob:
    return PushJob.for_message(user, Message(match_id="m0123", id=message_id, sender="ann",
                                             client_id="c", ts=1_700_000_000_000,
                                             body="a secret body"))


@pytest.fixture
async def make_queue(redis_clients: Callable[[], Client]) -> AsyncIterator[MakeQueue]:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    made: list[RedisPushQueue] = []

    def make(**options: Any) -> RedisPushQueue:
        options.setdefault("consumer", f"node-{len(made)}")
        made.append(RedisPushQueue(redis_clients(), prefix=prefix, **options))
        return made[-1]

    yield make
    for queue in made:
        await queue.close()


async def take(queue: Any, timeout: float = 5.0) -> Taken:
    taken: Taken = await asyncio.wait_for(queue.take(), timeout)
    return taken


# -- jobs -----------------------------------------------------------------------------------
def test_a_job_survives_packing_without_its_body() -> None:
    original = job().retry(("dev1", "dev2"))
    data = pack_job(original)
    assert b"secret" not in data  # the body is never queued
    assert unpack_job(data) == original
    match = MatchRecord(id="m9", users=("ann", "bob"), ts=5, superlike=True)
    superlike = PushJob.for_match("bob", match, superlike=True)
    assert unpack_job(pack_job(superlike)) == superlike
    assert superlike.match() == match
    for junk in (b"", b"\x93\x01\x02\x03", pack_job(superlike)[:-3]):
        with pytest.raises(ValueError):
            unpack_job(junk)


# -- the Redis queue ------------------------------------------------------------------------
async def test_done_jobs_leave_the_stream_and_the_delayed_set(make_queue: MakeQueue) -> None:
    queue = make_queue()
    await queue.start()
    jobs = [job(message_id=i) for i in range(1, 4)]
    for item in jobs[:2]:
        assert await queue.put(item)
    assert await queue.put(jobs[2], delay_s=0.2)
    taken = [await take(queue) for _ in jobs]
    assert [t.job for t in taken] == jobs
    for item in taken:
        await queue.done(item)
    assert await queue.redis.xlen(queue.stream) == 0
    assert await queue.redis.zcard(queue.delayed) == 0
    pending = await queue.redis.xpending(queue.stream, "push")
    assert pending["pending"] == 0


async def test_a_stopped_consumer_s_jobs_are_taken_over(make_queue: MakeQueue) -> None:
    dead = make_queue(claim_idle_s=0.6)
    await dead.start()
    for i in (1, 2):
        assert await dead.put(job(message_id=i))
    first = await take(dead)  # read, never acknowledged: the node dies here
    await dead.close()
    assert first.job.message_id == 1
    living = make_queue(claim_idle_s=0.6)
    await living.start()
    got = [await take(living), await take(living)]
    assert sorted(t.job.message_id for t in got) == [1, 2]
    assert living.reclaimed >= 1
    for item in got:
        await living.done(item)
    assert await living.redis.xlen(living.stream) == 0


async def test_a_job_that_no_node_finishes_is_dropped_after_max_deliveries(
        make_queue: MakeQueue) -> None:
    """Each node that reads the job dies before finishing it; the third hand-out drops it."""
    abandoned: list[int] = []
    first = make_queue(claim_idle_s=0.1, max_deliveries=3)
    await first.start()
    assert await first.put(job(message_id=1))
    assert (await take(first)).job.message_id == 1  # read 1; the node dies
    await first.close()
    second = make_queue(claim_idle_s=0.1, max_deliveries=3)
    await second.start()
    assert (await take(second)).job.message_id == 1  # read 2, taken over; dies too
    await second.close()
    assert second.reclaimed == 1
    third = make_queue(claim_idle_s=0.1, max_deliveries=3,
                       on_abandon=lambda: abandoned.append(1))
    await third.start()
    await wait_until(lambda: third.abandoned == 1, timeout=5)
    assert abandoned == [1]
    assert await third.redis.xlen(third.stream) == 0
    assert (await third.redis.xpending(third.stream, "push"))["pending"] == 0
    assert third.reclaimed == 0
    with pytest.raises(TimeoutError):
        await take(third, timeout=0.5)


async def test_a_living_consumer_keeps_its_slow_job(make_queue: MakeQueue) -> None:
    slow = make_queue(claim_idle_s=0.6)
    await slow.start()
    assert await slow.put(job(message_id=1))
    held = await take(slow)  # the provider is slow: held for 3 claim periods
    other = make_queue(claim_idle_s=0.6)
    await other.start()
    with pytest.raises(TimeoutError):
        await take(other, timeout=1.8)
    assert other.reclaimed == 0
    await slow.done(held)


async def test_stopped_consumers_with_nothing_pending_are_forgotten(
        make_queue: MakeQueue) -> None:
    gone = make_queue(claim_idle_s=0.1)
    await gone.start()
    assert await gone.put(job())
    await gone.done(await take(gone))  # a consumer now, with nothing pending
    await gone.close()
    living = make_queue(claim_idle_s=0.1)
    await living.start()

    async def names() -> set[str]:
        infos = await living.redis.xinfo_consumers(living.stream, "push")
        return {i["name"].decode() for i in infos}

    assert "node-0" in await names()

    async def forgotten() -> bool:
        return "node-0" not in await names()

    await wait_until(forgotten, timeout=10)
