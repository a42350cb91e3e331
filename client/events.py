"""The buffer of unsolicited frames, with filtered waits that never drop anything.

Tests wait for "the next `msg`" while `typing` and `presence` frames arrive around it; those
must stay available, in arrival order, for the next call. Frames taken off the queue that
did not match are held in a deque that is always searched first, so every frame is returned
exactly once and in the order it arrived, whatever filters the caller uses.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Set

from protocol.codec import Frame

EventType = str | Set[str] | None
Predicate = Callable[[Frame], bool]


def _matcher(t: EventType, predicate: Predicate | None) -> Predicate:
    if t is None:
        return predicate or (lambda f: True)
    if isinstance(t, str):
        if predicate is None:
            return lambda f: f.get("t") == t
        return lambda f: f.get("t") == t and predicate(f)
    types = t
    if predicate is None:
        return lambda f: f.get("t") in types
    return lambda f: f.get("t") in types and predicate(f)


class EventBuffer:
    """Unbounded FIFO of event frames; `close(exc)` makes waits past the end raise `exc`."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._held: deque[Frame] = deque()
        self._end: BaseException | None = None
        self._eof = False

    def put(self, frame: Frame) -> None:
        self._queue.put_nowait(frame)

    def close(self, exc: BaseException) -> None:
        """No more frames will come; waits that find nothing raise `exc`."""
        if self._end is None:
            self._end = exc
            self._queue.put_nowait(None)

    async def next(
        self,
        t: EventType = None,
        timeout: float | None = 5,
        predicate: Predicate | None = None,
    ) -> Frame:
        """The oldest frame matching `t` (a type or set of types) and `predicate`."""
        match = _matcher(t, predicate)
        for i, frame in enumerate(self._held):
            if match(frame):
                del self._held[i]
                return frame
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._eof:
                        assert self._end is not None
                        raise self._end
                    item = await self._queue.get()
                    if item is None:
                        self._eof = True
                        continue
                    if match(item):
                        return item
                    self._held.append(item)
        except TimeoutError:
            held = [f.get("t") for f in self._held]
            raise TimeoutError(
                f"no event matching t={t!r} within {timeout}s; held events: {held}"
            ) from None

    def drain(self) -> list[Frame]:
        """Every buffered frame, oldest first, removing them."""
        frames = list(self._held)
        self._held.clear()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._eof = True
            else:
                frames.append(item)
        return frames
