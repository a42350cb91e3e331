"""The durable push queue and gates against real Redis, standalone and cluster.

Each "node" is a queue with its own client and consumer name, as real nodes have; keys carry
a prefix unique to the test because the cluster is shared by the session.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from push.gates import Claim, MemoryPushGates
from push.queue import MemoryPushQueue, PushJob, Taken, pack_job, unpack_job
from push.redis_queue import RedisPushGates, RedisPushQueue
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


async def test_the_memory_queue_delays_and_bounds() -> None:
    queue = MemoryPushQueue(max_jobs=2)
    assert await queue.put(job(message_id=1), delay_s=0.3)
    assert await queue.put(job(message_id=2))
    assert not await queue.put(job(message_id=3))  # full
    started = time.monotonic()
    first = await take(queue)
    assert first.job.message_id == 2  # the due one first
    second = await take(queue)
    assert second.job.message_id == 1 and time.monotonic() - started >= 0.29
    assert not queue.idle()
    await queue.done(first)
    await queue.done(second)
    assert queue.idle()


async def test_memory_gates_coalesce_claim_and_expire() -> None:
    now = [100.0]
    gates = MemoryPushGates(clock=lambda: now[0])
    assert await gates.first_in_burst("bob", "m1", 10)
    assert not await gates.first_in_burst("bob", "m1", 10)
    assert await gates.first_in_burst("bob", "m2", 10)
    assert await gates.claim("p1", 5) == (Claim.NEW, 0.0)
    assert await gates.claim("p1", 5) == (Claim.BUSY, 5.0)
    now[0] += 11
    assert await gates.first_in_burst("bob", "m1", 10)
    assert (await gates.claim("p1", 5))[0] is Claim.NEW  # the claim lapsed
    await gates.finish("p1", final=True)
    assert (await gates.claim("p1", 5))[0] is Claim.SENT


# -- the Redis queue ------------------------------------------------------------------------
async def test_jobs_go_round_and_done_ones_leave_the_stream(make_queue: MakeQueue) -> None:
    queue = make_queue()
    await queue.start()
    jobs = [job(message_id=i) for i in range(1, 4)]
    for item in jobs:
        assert await queue.put(item)
    taken = [await take(queue) for _ in jobs]
    assert [t.job for t in taken] == jobs
    for item in taken:
        await queue.done(item)
    assert await queue.redis.xlen(queue.stream) == 0
    pending = await queue.redis.xpending(queue.stream, "push")
    assert pending["pending"] == 0


async def test_a_delayed_job_is_not_taken_before_it_is_due(make_queue: MakeQueue) -> None:
    queue = make_queue()
    await queue.start()
    started = time.monotonic()
    assert await queue.put(job(message_id=7), delay_s=0.5)
    assert await queue.put(job(message_id=8))
    assert (await take(queue)).job.message_id == 8
    late = await take(queue)
    assert late.job.message_id == 7
    assert time.monotonic() - started >= 0.48
    assert await queue.redis.zcard(queue.delayed) == 0


async def test_the_queue_is_bounded(make_queue: MakeQueue) -> None:
    queue = make_queue(max_jobs=2)
    await queue.start()
    assert await queue.put(job(message_id=1))
    assert await queue.put(job(message_id=2), delay_s=10)  # delayed jobs count too
    assert not await queue.put(job(message_id=3))
    await queue.done(await take(queue))
    assert await queue.put(job(message_id=4))


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


# -- the Redis gates ------------------------------------------------------------------------
async def test_redis_gates_claim_once_across_nodes(redis_clients: Callable[[], Client]) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    a = RedisPushGates(redis_clients(), prefix=prefix)
    b = RedisPushGates(redis_clients(), prefix=prefix)
    assert await a.claim("msg:m1:1:dev", 5) == (Claim.NEW, 0.0)
    state, left = await b.claim("msg:m1:1:dev", 5)
    assert state is Claim.BUSY and 4 < left <= 5
    await a.finish("msg:m1:1:dev", final=False)  # a retry follows: released
    # Windows of 1 s: a stall of the loaded machine must not lapse them between two calls.
    assert (await b.claim("msg:m1:1:dev", 1))[0] is Claim.NEW
    await b.refresh(["msg:m1:1:dev"], 5)
    await asyncio.sleep(1.1)
    assert (await a.claim("msg:m1:1:dev", 5))[0] is Claim.BUSY  # refreshed: still held
    await b.finish("msg:m1:1:dev", final=True)
    assert (await a.claim("msg:m1:1:dev", 5))[0] is Claim.SENT

    assert await a.first_in_burst("bob", "m1", 1)
    assert not await b.first_in_burst("bob", "m1", 1)
    await asyncio.sleep(1.1)
    assert await b.first_in_burst("bob", "m1", 1)
    assert not await a.recently_delivered("bob", "m1")
    await b.mark_delivered("bob", "m1", 5)
    assert await a.recently_delivered("bob", "m1")
    assert not await a.recently_delivered("bob", "m2")


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
