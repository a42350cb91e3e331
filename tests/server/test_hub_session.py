"""A session's two ways to the socket: written at once when nothing waits before the frame,
else queued in order behind what is queued; the queue stays bounded (4009)."""

from __future__ import annotations

import asyncio

from protocol.codec import codec_for
from protocol.errors import CloseCode
from server.edge.hub import Session
from server.metrics import Metrics


class Sink:
    """A socket that takes frames at once (`write_now`) only while `open_now` is set."""

    def __init__(self) -> None:
        self.written: list[bytes | str] = []
        self.open_now = True
        self.unblocked = asyncio.Event()
        self.unblocked.set()
        self.closed: tuple[int, str] | None = None

    def write_now(self, data: bytes | str) -> bool:
        if not self.open_now:
            return False
        self.written.append(data)
        return True

    async def send(self, message: bytes | str) -> None:
        await self.unblocked.wait()
        self.written.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


def session(sink: Sink, queue_frames: int = 4) -> Session:
    s = Session("ann", "s1", codec_for(None), sink, 0, queue_frames, Metrics(), sink.write_now)
    s.start()
    return s


def frames(sink: Sink) -> list[int]:
    codec = codec_for(None)
    return [codec.decode(data)["n"] for data in sink.written]


async def test_a_frame_goes_straight_to_a_socket_that_takes_it() -> None:
    sink = Sink()
    s = session(sink)
    assert s.push({"t": "msg", "n": 1})
    assert frames(sink) == [1] and s.queued() == 0  # written before push returned
    await s.stop()


async def test_frames_queue_in_order_behind_one_the_socket_refused() -> None:
    sink = Sink()
    s = session(sink)
    sink.open_now, sink.unblocked = False, asyncio.Event()  # paused: the writer must wait
    assert s.push({"t": "msg", "n": 1})
    sink.open_now = True  # the socket would take one now, but 1 is still ahead of it
    assert s.push({"t": "msg", "n": 2})
    assert frames(sink) == []
    sink.unblocked.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert frames(sink) == [1, 2] and s.queued() == 0
    assert s.push({"t": "msg", "n": 3})  # nothing queued any more: straight through
    assert frames(sink) == [1, 2, 3]
    await s.stop()


async def test_a_full_queue_closes_the_session_4009() -> None:
    sink = Sink()
    s = session(sink, queue_frames=2)
    sink.open_now, sink.unblocked = False, asyncio.Event()
    assert s.push({"t": "msg", "n": 1})
    await asyncio.sleep(0)  # the writer takes 1 and waits on the socket
    assert s.push({"t": "msg", "n": 2}) and s.push({"t": "msg", "n": 3})
    assert not s.push({"t": "msg", "n": 4})
    assert s.closing
    for _ in range(5):
        await asyncio.sleep(0)
    assert sink.closed is not None and sink.closed[0] == CloseCode.TOO_SLOW
    await s.stop()
