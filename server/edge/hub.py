"""The local hub: which users have which connections on this node, and their send queues.

Every frame to a client goes through its session's bounded queue, drained by one writer task.
A client that reads too slowly fills its queue and is closed with 4009 (it reconnects and
syncs); nothing else waits for it and its memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from protocol.codec import Codec, Frame
from protocol.errors import CloseCode
from server.metrics import Metrics

log = logging.getLogger("rendezvous.hub")

_CLOSE = object()  # queue sentinel: close after what was queued before it


class FrameSink(Protocol):
    """What a session writes to: a `websockets` connection satisfies it."""

    async def send(self, message: bytes | str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


WriteNow = Callable[[bytes | str], bool]  # writes a frame at once if nothing must wait


class Session:
    """One authenticated connection of a user.

    A frame goes straight to the socket when nothing is queued before it and the socket
    takes it without waiting (`write_now`); otherwise into the bounded queue that the
    writer task drains. Most frames so cost no task wake-up (docs/architecture.md)."""

    def __init__(self, user: str, session_id: str, codec: Codec, sink: FrameSink, exp: int,
                 queue_frames: int, metrics: Metrics, write_now: WriteNow | None = None, *,
                 drop: Callable[[], None] | None = None, close_timeout_s: float = 2.0) -> None:
        self.user = user
        self.id = session_id
        self.codec = codec
        self.sink = sink
        self.exp = exp
        self.iat: float | None = None  # of the token in force: set by the gateway (revocation)
        self.metrics = metrics
        self.closing = False
        self._queue: deque[Any] = deque()
        self._max_queued = queue_frames
        self._wake: asyncio.Future[None] | None = None  # set while the writer waits
        self._write_now = write_now
        # the writer task is in the middle of a send; True until `start`, so that frames
        # pushed before it (the session is in the hub before `welcome`) wait in the queue
        self._sending = True
        self._writer: asyncio.Task[None] | None = None
        self._close_code: tuple[int, str] | None = None
        self._aborted = False
        self._drop = drop  # aborts the transport: a close frame the client never took
        self._close_timeout_s = close_timeout_s
        # set by the gateway: waits (bounded) until the requests already read have answered
        self.answered: Callable[[], Awaitable[None]] | None = None
        self.refusing = False  # closing once answered: frames read from now on are dropped
        self._closer: asyncio.Task[None] | None = None

    def start(self, first: Frame | None = None) -> None:
        """Start writing: `first` (the `welcome`), then whatever was pushed since the session
        was made. The gateway adds the session to the hub before its broker subscription is
        confirmed, and events may arrive meanwhile; they must not go out before `welcome`."""
        if first is not None:
            self._queue.appendleft(self.codec.encode(first))
            self.metrics.frames_out_by[first.get("t", "?")].inc()
        self._sending = False
        if not self._aborted:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def push(self, frame: Frame, encoded: bytes | str | None = None) -> bool:
        """Queue a frame without waiting; close the session with 4009 if its queue is full."""
        if self.closing:
            return False
        data = encoded if encoded is not None else self.codec.encode(frame)
        queue = self._queue
        if queue or self._sending or self._write_now is None or not self._write_now(data):
            if len(queue) >= self._max_queued:
                self.metrics.slow_consumers.inc()
                log.info("closing a slow reader",
                         extra={"user_hash": hash(self.user) & 0xFFFF})
                self.close_now(CloseCode.TOO_SLOW, "too slow to read: reconnect and sync")
                return False
            queue.append(data)
            self._wake_writer()
        self.metrics.frames_out_by[frame.get("t", "?")].inc()
        return True

    def _wake_writer(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def queued(self) -> int:
        return len(self._queue)

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close once the frames queued so far are written (an error, then the close)."""
        if self.closing:
            return
        self.closing = True
        self._close_code = (code, reason)
        if len(self._queue) >= self._max_queued:
            self._abort(code, reason)
            return
        self._queue.append(_CLOSE)
        self._wake_writer()

    def close_when_answered(self, code: int, reason: str) -> None:
        """Close as `close_after_flush` does, but only once every request already read has
        sent its answer (bounded by the gateway): a frame with `r` gets exactly one answer
        even when the server ends the connection (drain, token expiry, connection cap).
        Frames read meanwhile are not served."""
        if self.closing or self.refusing:
            return
        if self.answered is None:
            self.close_after_flush(code, reason)
            return
        self.refusing = True
        answered = self.answered

        async def close() -> None:
            await answered()
            self.close_after_flush(code, reason)
        self._closer = asyncio.get_running_loop().create_task(close())

    def close_now(self, code: int, reason: str) -> None:
        """Close without writing what is still queued."""
        if self._aborted:
            return
        self.closing = True
        self._close_code = (code, reason)
        self._abort(code, reason)

    def _abort(self, code: int, reason: str) -> None:
        self._aborted = True
        if self._writer is not None:
            self._writer.cancel()
        self.metrics.closes_by[str(code)].inc()
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        """Close, but never wait longer than the close timeout: a client that does not read
        leaves the close frame behind a full pipe (and `close` waiting for it to drain), so
        then the transport is dropped and its buffers freed. That client sees 1006, not our
        code (docs/protocol.md, close codes)."""
        try:
            async with asyncio.timeout(self._close_timeout_s):
                await self.sink.close(code, reason)
        except TimeoutError:
            self.metrics.close_timeouts.inc()
            log.info("close timed out: dropping the connection", extra={"close_code": code})
            if self._drop is not None:
                self._drop()
        except Exception:  # the peer may be gone already
            log.debug("close failed", exc_info=True)

    async def _write_loop(self) -> None:
        queue = self._queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not queue:
                    self._wake = loop.create_future()
                    try:
                        await self._wake
                    finally:
                        self._wake = None
                data = queue.popleft()
                if data is _CLOSE:
                    code, reason = self._close_code or (1000, "")
                    self.metrics.closes_by[str(code)].inc()
                    await self._close(code, reason)
                    return
                self._sending = True  # `push` writes nothing past a frame being written
                try:
                    await self.sink.send(data)
                finally:
                    self._sending = False
        except asyncio.CancelledError:
            raise
        except Exception:  # connection closed under us: the reader side cleans up
            return

    async def stop(self) -> None:
        """Stop the writer (the connection is gone)."""
        self.closing = True
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer


UNSENT_KEPT = 10_000  # unsent (match, id) pairs a node remembers to drop a late `msg` of
UNSENT_KEPT_S = 60.0  # and for how long: a `msg` is published just after its ack


class UnsentIds:
    """Messages this node saw an `unsent` for lately. A `msg` for one of them that arrives
    after it (another node's publish overtaken by the unsend's) is dropped, so a device
    never gets a body after its `unsent` (docs/chat-controls.md, "Unsend and delivery")."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[tuple[Any, Any], float] = {}  # insertion order is time order

    def __bool__(self) -> bool:
        return bool(self._seen)

    def add(self, m: Any, message_id: Any) -> None:
        now = self.clock()
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if len(seen) < UNSENT_KEPT and now - seen[oldest] < UNSENT_KEPT_S:
                break
            del seen[oldest]
        seen.pop((m, message_id), None)
        seen[(m, message_id)] = now

    def __contains__(self, key: tuple[Any, Any]) -> bool:
        at = self._seen.get(key)
        return at is not None and self.clock() - at < UNSENT_KEPT_S


class Hub:
    """user -> sessions on this node."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._by_user: dict[str, dict[str, Session]] = {}
        self.unsent = UnsentIds()
        self._delivery = metrics.delivery if metrics is not None else None
        if metrics is not None:  # computed at scrape time: nothing on the hot path
            metrics.send_queue.set_function(self.queued_frames)
            metrics.send_queue_max.set_function(self.max_queued_frames)

    def add(self, session: Session) -> bool:
        """Register a session; True if it is the user's first on this node."""
        sessions = self._by_user.setdefault(session.user, {})
        sessions[session.id] = session
        return len(sessions) == 1

    def remove(self, session: Session) -> bool:
        """Forget a session; True if the user has none left on this node."""
        sessions = self._by_user.get(session.user)
        if not sessions or sessions.pop(session.id, None) is None:
            return False
        if sessions:
            return False
        del self._by_user[session.user]
        return True

    def deliver(self, user: str, frame: Frame, skip_session: str | None = None) -> int:
        """Queue `frame` on every session of `user` here; encode once per subprotocol.

        A `msg` of a message unsent meanwhile goes to no one but counts as taken (no push:
        it is gone)."""
        sessions = self._by_user.get(user)
        t = frame.get("t")
        if t == "unsent":
            self.unsent.add(frame.get("m"), frame.get("id"))
        elif t == "msg" and self.unsent and (frame.get("m"), frame.get("id")) in self.unsent:
            return len(sessions) if sessions else 0
        if not sessions:
            return 0
        encoded: dict[str, bytes | str] = {}
        count = 0
        for session in list(sessions.values()):
            if session.id == skip_session:
                continue
            data = encoded.get(session.codec.name)
            if data is None:
                data = encoded[session.codec.name] = session.codec.encode(frame)
            count += session.push(frame, data)
        if count and self._delivery is not None and t == "msg":
            ts = frame.get("ts")
            if isinstance(ts, int):
                self._delivery.observe(max(0.0, time.time() - ts / 1000))
        return count

    def queued_frames(self) -> int:
        """Frames waiting in all send queues here (for the queue depth gauge)."""
        return sum(s.queued() for s in self.sessions())

    def max_queued_frames(self) -> int:
        return max((s.queued() for s in self.sessions()), default=0)

    def sessions_of(self, user: str) -> list[Session]:
        return list(self._by_user.get(user, {}).values())

    def has_user(self, user: str) -> bool:
        return user in self._by_user

    def users(self) -> list[str]:
        return list(self._by_user)

    def sessions(self) -> Iterator[Session]:
        for sessions in list(self._by_user.values()):
            yield from list(sessions.values())

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_user.values())
