"""The driver bridge on its own: answers from other threads reach the loop in batches, and a
request the driver never answers still ends in `StoreUnavailable`.

A stand-in session plays the driver here, because the real one cannot be made to lose an
answer or to answer from many threads on cue; everything else runs against a real node in
test_cassandra_specific.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from cassandra import OperationTimedOut

from storage.base import StoreUnavailable
from storage.cassandra_bridge import DriverBridge


class HeldFuture:
    """A driver future that answers only when told to (or never)."""

    def __init__(self) -> None:
        self.callbacks: tuple[Any, ...] = ()
        self.has_more_pages = False

    def add_callbacks(self, callback: Any, errback: Any, callback_args: tuple[Any, ...] = (),
                      errback_args: tuple[Any, ...] = ()) -> None:
        self.callbacks = (callback, callback_args, errback, errback_args)

    def answer(self, rows: list[dict[str, Any]]) -> None:
        callback, args, _, _ = self.callbacks
        callback(rows, *args)

    def fail(self, exc: BaseException) -> None:
        _, _, errback, args = self.callbacks
        errback(exc, *args)


class HeldSession:
    def __init__(self) -> None:
        self.sent: list[HeldFuture] = []

    def execute_async(self, statement: Any, args: Any, timeout: float) -> HeldFuture:
        future = HeldFuture()
        self.sent.append(future)
        return future


async def test_answers_from_driver_threads_are_settled_in_batches() -> None:
    session = HeldSession()
    bridge = DriverBridge(session, asyncio.get_running_loop(), max_in_flight=1000)
    calls = [bridge.send("q", (i,), timeout=5.0) for i in range(200)]

    def answer_all() -> None:  # as the driver's I/O thread does, all at once
        for i, future in enumerate(session.sent):
            if i % 10 == 9:
                future.fail(OperationTimedOut("slow"))
            else:
                future.answer([{"n": i}])

    await asyncio.to_thread(answer_all)
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 10 == 9:
            assert isinstance(result, StoreUnavailable)
            assert isinstance(result.__cause__, OperationTimedOut)
        else:
            assert result == [{"n": i}]
    assert bridge.wakes < 20  # not one wake per answer
    assert bridge.in_flight == 0


async def test_a_request_the_driver_never_answers_fails_soon_after_its_timeout() -> None:
    session = HeldSession()
    bridge = DriverBridge(session, asyncio.get_running_loop(), max_in_flight=1)
    started = time.monotonic()
    lost = bridge.send("q", (), timeout=0.1)
    assert bridge.full
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(lost, 5.0)
    assert time.monotonic() - started < 0.1 + 1.0 + 0.5 + 0.5  # timeout, grace, sweep, slack
    assert not bridge.full and bridge.in_flight == 0
    await asyncio.wait_for(bridge.idle(5.0), 0.1)  # nothing to wait for now
    session.sent[0].answer([])  # a late answer is dropped, not counted twice
    await asyncio.sleep(0.05)
    assert bridge.in_flight == 0


async def test_callers_past_the_bound_wait_on_the_loop_for_a_slot() -> None:
    session = HeldSession()
    bridge = DriverBridge(session, asyncio.get_running_loop(), max_in_flight=2)
    first = [bridge.send("q", (i,), timeout=5.0) for i in range(2)]
    waiting = asyncio.ensure_future(bridge.slot())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    threading.Thread(target=session.sent[0].answer, args=([],)).start()
    await asyncio.wait_for(waiting, 1.0)
    assert await first[0] == []
    session.sent[1].answer([])
    assert await first[1] == []
