"""What only `MemoryPushQueue` does: it knows when it is idle, for the drain at stop. What
every `PushQueue` promises is in tests/contracts/test_push_queue_contract.py."""

from __future__ import annotations

from push.queue import MemoryPushQueue, PushJob
from storage import Message


def job(message_id: int) -> PushJob:
    return PushJob.for_message("bob", Message(match_id="m0123", id=message_id, sender="ann",
                                              client_id="c", ts=1_700_000_000_000,
                                              body="hi"))


async def test_idle_only_when_nothing_waits_and_nothing_is_owned() -> None:
    queue = MemoryPushQueue()
    assert queue.idle()
    assert await queue.put(job(1), delay_s=10)
    assert not queue.idle()  # a delayed job waits
    queue = MemoryPushQueue()
    assert await queue.put(job(2))
    taken = await queue.take()
    assert not queue.idle()  # owned by a worker, not done
    await queue.done(taken)
    assert queue.idle()
