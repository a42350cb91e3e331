"""The bridge from the Cassandra driver's threads to one asyncio loop, in batches.

The driver answers on its own I/O thread. Waking the loop once per answer (a
`call_soon_threadsafe` each, so a write to the loop's self-pipe each) cost more Python than
the statements themselves: here a driver thread only appends the answer to a deque and
schedules one drain if none is pending, and the drain settles every answer that arrived
meanwhile in one loop callback. Under load one wake carries dozens of answers.

The loop side owns the bookkeeping: how many requests are in flight (bounded, so that
callers wait on the loop and not inside the driver, which would block for a free stream id)
and a way to wait until none is. A caller that is cancelled leaves its request counted until
the driver answers, so `close` still waits for it. A request the driver has not answered
`GIVE_UP_AFTER_S` past its own timeout fails with `StoreUnavailable` (a sweep every
`SWEEP_EVERY_S` while requests are out), so no caller and no `close` waits on a lost answer.
See docs/storage.md (the save path).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

from cassandra import OperationTimedOut, RequestExecutionException
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionBusy, ConnectionException
from cassandra.protocol import RequestExecutionException as FailedRequestMessage
from cassandra.protocol import ServerError as ServerErrorMessage

from storage.base import StoreUnavailable

Row = dict[str, Any]

# Failures that say "not now" (retry later), as opposed to a bug in a statement.
TEMPORARY: tuple[type[BaseException], ...] = (
    NoHostAvailable, OperationTimedOut, RequestExecutionException, ConnectionException,
    ConnectionBusy, ServerErrorMessage, FailedRequestMessage, OSError)


def unavailable(exc: BaseException) -> BaseException:
    """What a caller sees for a driver failure: `StoreUnavailable` if it is temporary."""
    if isinstance(exc, TEMPORARY):
        error = StoreUnavailable(f"cassandra: {exc!r}")
        error.__cause__ = exc
        return error
    return exc


GIVE_UP_AFTER_S = 1.0  # past a request's own timeout: the driver should have answered
SWEEP_EVERY_S = 0.5


class DriverBridge:
    """Sends statements with `execute_async`; their rows (every page) come back as futures
    of one loop, settled in batches by `_drain`."""

    def __init__(self, session: Any, loop: asyncio.AbstractEventLoop, *,
                 max_in_flight: int) -> None:
        self._session = session
        self._loop = loop
        self._max_in_flight = max_in_flight
        # sent and not yet settled, with the loop time past which it is given up
        self._deadlines: dict[asyncio.Future[list[Row]], float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._answers: collections.deque[tuple[asyncio.Future[list[Row]], Any,
                                               BaseException | None]] = collections.deque()
        self._drain_scheduled = False
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle: asyncio.Future[None] | None = None
        self.wakes = 0  # drains run: answers per wake is the batching this buys
        self.sent = 0  # requests sent (a batch counts once)

    # -- the loop side --------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._deadlines)

    @property
    def full(self) -> bool:
        return len(self._deadlines) >= self._max_in_flight

    async def slot(self) -> None:
        """Wait until fewer than `max_in_flight` requests are out."""
        while self.full:
            waiter = self._loop.create_future()
            self._slot_waiters.append(waiter)
            await waiter

    def send(self, statement: Any, args: Any, timeout: float) -> asyncio.Future[list[Row]]:
        """Send one statement (prepared with `args`, or a batch with `args` None) now.

        Raises `StoreUnavailable` if the driver refuses it at once; the caller checks
        `full` (or awaits `slot`) first to stay within the bound."""
        done: asyncio.Future[list[Row]] = self._loop.create_future()
        try:
            future = self._session.execute_async(statement, args, timeout=timeout)
        except TEMPORARY as exc:
            raise StoreUnavailable(f"cassandra: {exc!r}") from exc
        self.sent += 1
        self._deadlines[done] = self._loop.time() + timeout + GIVE_UP_AFTER_S
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(SWEEP_EVERY_S, self._sweep)
        future.add_callbacks(self._on_page, self._on_error, callback_args=(done, future, []),
                             errback_args=(done,))
        return done

    async def idle(self, timeout: float) -> None:
        """Return once nothing is in flight, or after `timeout` seconds."""
        if self.in_flight == 0:
            return
        if self._idle is None or self._idle.done():
            self._idle = self._loop.create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._idle)

    def _drain(self) -> None:
        """Settle every answer that arrived since the last drain (on the loop)."""
        self._drain_scheduled = False  # first: an answer appended from now on wakes again
        answers = self._answers
        deadlines = self._deadlines
        self.wakes += 1
        while answers:
            done, rows, exc = answers.popleft()
            if deadlines.pop(done, None) is None or done.done():
                continue  # given up by `_sweep`, or its caller was cancelled
            if exc is None:
                done.set_result(rows)
            else:
                done.set_exception(unavailable(exc))
        self._slots_freed()

    def _sweep(self) -> None:
        """Fail what the driver did not answer well past its own timeout: a request the
        driver lost must still end in `StoreUnavailable`, and `close` must not wait on it."""
        now = self._loop.time()
        expired = [done for done, deadline in self._deadlines.items() if deadline <= now]
        for done in expired:
            del self._deadlines[done]
            if not done.done():
                done.set_exception(StoreUnavailable(
                    "cassandra: no answer from the driver within the request timeout"))
        self._sweeper = (self._loop.call_later(SWEEP_EVERY_S, self._sweep)
                         if self._deadlines else None)
        if expired:
            self._slots_freed()

    def _slots_freed(self) -> None:
        free = self._max_in_flight - len(self._deadlines)
        while self._slot_waiters and free > 0:  # each woken caller takes one slot
            waiter = self._slot_waiters.popleft()
            if not waiter.done():  # else its caller was cancelled meanwhile
                waiter.set_result(None)
                free -= 1
        if not self._deadlines and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    # -- the driver threads ---------------------------------------------------------------
    def _hand_over(self, done: asyncio.Future[list[Row]], rows: Any,
                   exc: BaseException | None) -> None:
        self._answers.append((done, rows, exc))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                self._loop.call_soon_threadsafe(self._drain)

    def _on_page(self, result: Any, done: asyncio.Future[list[Row]], future: Any,
                 rows: list[Row]) -> None:
        try:
            if future.has_more_pages:  # the next page, without blocking anyone
                rows.extend(result or ())
                future.start_fetching_next_page()
                return
        except Exception as exc:
            self._hand_over(done, None, exc)
            return
        if rows:
            rows.extend(result or ())
            self._hand_over(done, rows, None)
        else:
            self._hand_over(done, result or [], None)

    def _on_error(self, exc: BaseException, done: asyncio.Future[list[Row]]) -> None:
        self._hand_over(done, None, exc)
