"""`RendezvousClient`: one authenticated WebSocket session, as tests and load tests use it.

One background task reads every frame. A frame whose `r` belongs to a pending request
resolves that request; everything else (pushed `msg`, `typing`, `presence`, errors without
`r`, late replies) goes to an event buffer that `next_event` searches without dropping what
it skips. Keeping the reader separate from the callers is what lets many requests be in
flight at once and still match replies that come back in any order.

In `rdv.v1.json` the server writes message ids as strings (JSON numbers lose precision past
2^53); the client turns them back into ints so callers see the same frames in both
subprotocols.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Any, Literal, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State
from websockets.typing import Subprotocol

from client.errors import ClientClosed, ConnectionRejected, ServerError
from client.events import EventBuffer, EventType, Predicate
from protocol.codec import ID_FIELDS, MSGPACK, Codec, Frame, codec_for
from protocol.errors import ProtocolError

log = logging.getLogger(__name__)

AuthMode = Literal["header", "frame"]
# `t` of the frame the client buffers when the server sends bytes it cannot decode.
UNDECODABLE = "_undecodable"
# How long a rejected handshake waits for the close that should follow an `error` frame.
REJECT_CLOSE_WAIT = 2.0


def ids_to_int(obj: Any) -> Any:
    """Turn decimal-string message ids (JSON subprotocol) back into ints, in place."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ID_FIELDS and type(v) is str and v.isascii() and v.isdigit():
                obj[k] = int(v)
            elif isinstance(v, dict | list):
                ids_to_int(v)
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict | list):
                ids_to_int(v)
    return obj


class RendezvousClient:
    """A connected, welcomed session. Create it with `await RendezvousClient.connect(...)`."""

    def __init__(
        self,
        ws: ClientConnection,
        codec: Codec,
        welcome: Frame,
        early: list[Frame],
        on_event: Callable[[Frame], object] | None = None,
    ) -> None:
        self._ws = ws
        self.codec = codec
        self.welcome = welcome
        self.user: str | None = welcome.get("user")
        self.subprotocol: str | None = ws.subprotocol
        self._on_event = on_event
        self._events = EventBuffer()
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._r = itertools.count(1)
        for frame in early:
            self._deliver(frame)
        self._reader = asyncio.create_task(self._read_loop(), name=f"rdv-reader-{self.user}")

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str | None = None,
        *,
        subprotocol: str | None = MSGPACK,
        auth: AuthMode = "header",
        open_timeout: float = 5,
        on_event: Callable[[Frame], object] | None = None,
        **ws_options: Any,
    ) -> RendezvousClient:
        """Open, authenticate and wait for `welcome`.

        `subprotocol=None` offers none (the server then speaks msgpack). `auth="header"` sends
        `Authorization: Bearer`, `auth="frame"` sends `{"t":"auth"}` first; with `token=None`
        nothing is sent. `on_event`, if given, receives every event frame from the reader task
        instead of the buffer (load tests: no unbounded buffer, receive-time timestamps).
        `ws_options` go to `websockets.asyncio.client.connect`.

        Raises `ConnectionRejected` if the server answers with `error` and/or a close (or an
        HTTP error status) instead of `welcome`, `TimeoutError` past `open_timeout`.
        """
        if auth not in ("header", "frame"):
            raise ValueError(f"auth must be 'header' or 'frame', got {auth!r}")
        headers = None
        if token is not None and auth == "header":
            headers = {"Authorization": f"Bearer {token}"}
        options: dict[str, Any] = {"compression": None, "open_timeout": open_timeout}
        options.update(ws_options)
        deadline = asyncio.get_running_loop().time() + open_timeout
        try:
            async with asyncio.timeout_at(deadline):
                ws = await connect(
                    url,
                    subprotocols=[Subprotocol(subprotocol)] if subprotocol else None,
                    additional_headers=headers,
                    **options,
                )
        except InvalidStatus as exc:
            raise _http_rejection(exc) from None
        codec = codec_for(ws.subprotocol)
        try:
            async with asyncio.timeout_at(deadline):
                first, early = await _first_frame(ws, codec, token if auth == "frame" else None)
            if first.get("t") == "error":
                with suppress(TimeoutError):
                    async with asyncio.timeout(REJECT_CLOSE_WAIT):
                        await ws.wait_closed()
                code = ws.close_code if ws.state is State.CLOSED else None
                raise ConnectionRejected(code, str(first.get("msg") or ws.close_reason or ""),
                                         first)
        except BaseException:
            await _shutdown(ws)
            raise
        return cls(ws, codec, first, early, on_event)

    # -- reading ---------------------------------------------------------------------------

    def _decode(self, data: bytes | str) -> Frame:
        try:
            frame = self.codec.decode(data)
        except ProtocolError:
            return {"t": UNDECODABLE, "data": data}
        if not self.codec.binary:
            ids_to_int(frame)
        return frame

    def _deliver(self, frame: Frame) -> None:
        if self._on_event is None:
            self._events.put(frame)
            return
        try:
            self._on_event(frame)
        except Exception:
            log.exception("on_event callback failed for %r", frame.get("t"))

    async def _read_loop(self) -> None:
        pending = self._pending
        try:
            async for data in self._ws:
                frame = self._decode(data)
                r = frame.get("r")
                if type(r) is int:
                    fut = pending.pop(r, None)
                    if fut is not None:
                        if not fut.done():
                            fut.set_result(frame)
                        continue
                self._deliver(frame)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("rendezvous client reader failed; closing")
            await self._ws.close(1011, "client reader failed")
        finally:
            exc = ClientClosed(self._ws.close_code, self._ws.close_reason)
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(exc)
            pending.clear()
            self._events.close(exc)

    # -- sending ---------------------------------------------------------------------------

    async def _send(self, data: bytes | str) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed:
            raise ClientClosed(self._ws.close_code, self._ws.close_reason) from None

    async def send_raw(self, frame: Frame | bytes | str) -> None:
        """Send a frame as is: a map is encoded with the session codec, bytes go as a binary
        frame and str as a text frame. No `r` is added (tests use it for malformed frames)."""
        await self._send(self.codec.encode(frame) if isinstance(frame, dict) else frame)

    async def request(
        self, frame: Frame, timeout: float = 10
    ) -> Frame:
        """Send `frame` with a fresh `r` and return the reply carrying that `r`.

        Raises `ServerError` when the reply is an `error`, `ClientClosed` if the connection
        ends first, `TimeoutError` past `timeout` (a later reply then goes to the events).
        """
        r = next(self._r)
        out = dict(frame)
        out["r"] = r
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[r] = fut
        try:
            if self._reader.done():
                raise ClientClosed(self._ws.close_code, self._ws.close_reason)
            await self._send(self.codec.encode(out))
            try:
                async with asyncio.timeout(timeout):
                    reply = await fut
            except TimeoutError:
                raise TimeoutError(
                    f"no reply to {frame.get('t')!r} (r={r}) within {timeout}s"
                ) from None
        finally:
            self._pending.pop(r, None)
        if reply.get("t") == "error":
            raise ServerError(reply)
        return reply

    # -- typed helpers ---------------------------------------------------------------------

    async def send(
        self,
        m: str,
        body: str | None = None,
        media: dict[str, Any] | None = None,
        c: str | None = None,
        *,
        timeout: float = 10,
    ) -> Frame:
        """Send a chat message; returns the `ack` (`id`, `ts`) once the server stored it."""
        frame: Frame = {"t": "send", "m": m, "c": c if c is not None else uuid.uuid4().hex}
        if body is not None:
            frame["body"] = body
        if media is not None:
            frame["media"] = media
        return await self.request(frame, timeout)

    async def typing(self, m: str, on: bool = True) -> None:
        await self.send_raw({"t": "typing", "m": m, "on": on})

    async def read(self, m: str, id: int, *, ack: bool = False) -> Frame | None:
        """Mark read up to `id`; fire-and-forget unless `ack` (then returns the `ok`)."""
        return await self._cursor("read", m, id, ack)

    async def delivered(self, m: str, id: int, *, ack: bool = False) -> Frame | None:
        """Mark delivered up to `id`; fire-and-forget unless `ack` (then returns the `ok`)."""
        return await self._cursor("delivered", m, id, ack)

    async def _cursor(self, t: str, m: str, id: int, ack: bool) -> Frame | None:
        frame: Frame = {"t": t, "m": m, "id": id}
        if ack:
            return await self.request(frame)
        await self.send_raw(frame)
        return None

    async def history(self, m: str, before: int | None = None, limit: int | None = None) -> Frame:
        frame: Frame = {"t": "history", "m": m}
        if before is not None:
            frame["before"] = before
        if limit is not None:
            frame["limit"] = limit
        return await self.request(frame)

    async def sync(self, since: str | None = None) -> Frame:
        frame: Frame = {"t": "sync"}
        if since is not None:
            frame["since"] = since
        return await self.request(frame)

    async def presence(self) -> Frame:
        return await self.request({"t": "presence"})

    async def unsend(self, m: str, id: int) -> Frame:
        """Unsend one of your own messages (within the server's window); returns the `ok`.
        Both members' other devices get `{"t": "unsent", "m", "id"}`."""
        return await self.request({"t": "unsend", "m": m, "id": id})

    async def refresh(self, token: str) -> Frame:
        return await self.request({"t": "refresh", "token": token})

    async def ping(self) -> Frame:
        return await self.request({"t": "ping"})

    # -- events ----------------------------------------------------------------------------

    async def next_event(
        self,
        t: EventType = None,
        timeout: float | None = 5,
        predicate: Predicate | None = None,
    ) -> Frame:
        """The oldest unread event of type `t` (a `t` or a set of them, None for any) that
        satisfies `predicate`. Skipped events stay buffered, in order, for later calls.

        Raises `TimeoutError` if none arrives within `timeout`, `ClientClosed` once the
        connection has ended and no buffered event matches.
        """
        return await self._events.next(t, timeout, predicate)

    def drain_events(self) -> list[Frame]:
        """Every buffered event, oldest first, removing them."""
        return self._events.drain()

    async def no_event(
        self, t: EventType = None, within: float = 0.5, predicate: Predicate | None = None
    ) -> bool:
        """True if no matching event arrives within `within` seconds; AssertionError if one
        does (so `assert await c.no_event("typing")` reads well and fails loudly)."""
        try:
            frame = await self._events.next(t, within, predicate)
        except (TimeoutError, ClientClosed):
            return True
        raise AssertionError(f"unexpected event: {frame!r}")

    # -- closing ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._ws.state is State.CLOSED

    @property
    def close_code(self) -> int | None:
        """The close code the server sent (1006 if the TCP connection just dropped)."""
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._ws.close_reason

    async def wait_closed(
        self, timeout: float | None = 5
    ) -> int | None:
        """Wait until the connection has ended; returns `close_code`."""
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._reader)
        return self.close_code

    def abort(self) -> None:
        """Drop the TCP connection at once, with no close handshake, as a phone losing its
        network does (load tests: chaos). The reader then ends with code 1006."""
        self._ws.transport.abort()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (idempotent) and wait for the reader to finish."""
        await self._ws.close(code, reason)
        with suppress(Exception):
            await self._reader

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = f"closed {self.close_code}" if self.closed else "open"
        return f"<RendezvousClient user={self.user!r} {self.subprotocol} {state}>"


async def _first_frame(
    ws: ClientConnection, codec: Codec, auth_token: str | None
) -> tuple[Frame, list[Frame]]:
    """Send the auth frame if any; return the `welcome` or `error` and frames before it."""
    if auth_token is not None:
        with suppress(ConnectionClosed):  # closed already: recv() below reports how and why
            await ws.send(codec.encode({"t": "auth", "token": auth_token}))
    early: list[Frame] = []
    while True:
        try:
            data = await ws.recv()
        except ConnectionClosed:
            raise ConnectionRejected(ws.close_code, ws.close_reason or "", None) from None
        try:
            frame = codec.decode(data)
        except ProtocolError:
            early.append({"t": UNDECODABLE, "data": data})
            continue
        if not codec.binary:
            ids_to_int(frame)
        if frame.get("t") in ("welcome", "error"):
            return frame, early
        early.append(frame)


async def _shutdown(ws: ClientConnection) -> None:
    """Close politely if the server answers within a second, else drop the connection."""
    if ws.state is State.CLOSED:
        return
    try:
        async with asyncio.timeout(1):
            await ws.close()
    except TimeoutError:
        ws.transport.abort()


def _http_rejection(exc: InvalidStatus) -> ConnectionRejected:
    """The upgrade was answered with an HTTP error: keep its status and error body."""
    response = exc.response
    error_frame: Frame | None = None
    with suppress(ValueError, TypeError, KeyError, AttributeError):
        error = json.loads(response.body or b"")["error"]
        error_frame = {"t": "error", "code": error.get("code"), "msg": error.get("msg")}
    reason = response.reason_phrase
    if error_frame and error_frame.get("msg"):
        reason = str(error_frame["msg"])
    return ConnectionRejected(None, reason, error_frame, status=response.status_code)
