"""The socket side of one gateway connection: the direct write path of its session, and its
requests running as tasks. Kept apart from the gateway's protocol logic; both are on the hot
path, so each avoids a task, a coroutine or a loop handle per frame where it can."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from server.edge.hub import WriteNow
from server.edge.ws_frames import can_write_direct, write_direct

log = logging.getLogger("rendezvous.gateway")


def write_now(ws: ServerConnection) -> WriteNow:
    """A session's direct path to its socket: write one frame now, as `ws.send` would, when
    `ws.send` would not have to wait (no fragmented send in progress, the transport not
    paused by flow control); False means queue it for the session's writer task instead.
    Skips a coroutine, an async context manager and a task wake-up per frame."""
    protocol = ws.protocol

    def write(data: bytes | str) -> bool:
        if (ws.paused or ws.send_in_progress is not None or protocol.state is not State.OPEN
                or ws.transport.is_closing()):
            return False
        try:
            if can_write_direct(ws):  # the usual case: bytes written as websockets would
                write_direct(ws, data)
            elif isinstance(data, str):
                protocol.send_text(data.encode())
                ws.send_data()
            else:
                protocol.send_binary(data)
                ws.send_data()
        except Exception:  # as `ws.send` does when a write fails: the reader then ends
            log.debug("direct write failed: aborting the connection", exc_info=True)
            ws.transport.abort()
        return True
    return write


class Requests:
    """The requests of one connection running as tasks, at most `limit` at once.

    Starting one costs a task and a set entry: no semaphore coroutine and no done callback
    (a loop handle each) per frame; the reader waits only at the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running: set[asyncio.Task[None]] = set()  # strong references while they run
        self._slot: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()

    def full(self) -> bool:
        return len(self.running) >= self.limit

    async def wait_for_slot(self) -> None:
        while self.full():
            self._slot = self._loop.create_future()
            await self._slot

    def start(self, request: Coroutine[Any, Any, None]) -> None:
        self.running.add(self._loop.create_task(request))

    async def answered(self, within_s: float) -> None:
        """Return once every request running now has finished, or after `within_s`."""
        if self.running:
            await asyncio.wait(list(self.running), timeout=within_s)

    def finished(self, task: asyncio.Task[Any] | None) -> None:
        """Called by the request itself as it ends."""
        if task is not None:
            self.running.discard(task)
        slot = self._slot
        if slot is not None and not slot.done():
            slot.set_result(None)
