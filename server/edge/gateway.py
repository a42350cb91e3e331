"""The WebSocket gateway: a thin adapter between a `websockets` connection and a session.

It negotiates the subprotocol, authenticates (header or first frame), registers the session
with the hub, broker and presence, then reads frames, validates them and runs each request
as a task so that a slow store call does not stall the socket. Each request goes to one
service method (the handler table below) with the session's `Caller`; replies and events
all go through the session: straight to the socket, or its bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any, TypeVar, cast

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from protocol import server_frames as sf
from protocol.codec import SUBPROTOCOLS, Codec, codec_for
from protocol.errors import CloseCode, ErrorCode, ProtocolError
from protocol.frames import (
    Auth,
    ClientFrame,
    Delivered,
    History,
    Ping,
    PresenceQuery,
    Read,
    Refresh,
    Send,
    Sync,
    Typing,
    Unsend,
    parse_client_frame,
    request_id,
)
from server.backends.broker import Broker
from server.backends.ratelimit import TokenBucket
from server.config import Config
from server.edge.auth import REVOKED_MSG, Authenticator, AuthError, Claims, unrevoked
from server.edge.connection_guard import ConnectionGuard
from server.edge.connection_io import Requests, write_now
from server.edge.hub import Hub, Session
from server.logs import new_connection_id
from server.metrics import Metrics
from server.services.accounts import NotBefore, revoked
from server.services.caller import Caller, Reply
from server.services.chat import ChatService
from server.services.chat_controls import ChatControls
from server.services.presence import PresenceService
from storage import StoreUnavailable

log = logging.getLogger("rendezvous.gateway")
# a connection that ends waits at most this long for the requests it read to answer
ANSWER_WAIT_S = 10.0

PATH = "/v1/ws"
MAX_STRIKES = 50  # rate-limited frames in a row before a connection is closed with 4008
# Closes the websockets library starts by itself: a frame over max_size (1009), a text frame
# that is not UTF-8 (1007), a protocol violation (1002), a keepalive timeout or an internal
# error (1011). Those we start are counted where we start them.
LIBRARY_CLOSES = frozenset({1002, 1007, 1009, 1011})


def select_subprotocol(connection: ServerConnection,
                       offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The first offered subprotocol we speak; None (msgpack by default) if none."""
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    return None


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?", 1)[0] != PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, f"WebSocket endpoint is {PATH}\n")
    return None


def bearer(headers: Headers) -> str | None:
    value = headers.get("Authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


# The frames that become a service call, each run as a task of its own.
RequestFrame = Send | Typing | Read | Delivered | History | Sync | PresenceQuery | Unsend
RequestT = TypeVar("RequestT", Send, Typing, Read, Delivered, History, Sync, PresenceQuery,
                   Unsend)
Handler = Callable[[Caller, RequestFrame], Awaitable[None]]


def handler(kind: type[RequestT], call: Callable[[Caller, RequestT], Awaitable[None]]
            ) -> tuple[type[RequestFrame], Handler]:
    """One entry of the handler table. mypy checks here that `call` takes a `kind`; the
    table looks handlers up by `type(frame)`, so each is only ever given its own kind."""
    return kind, cast(Handler, call)


def handler_table(chat: ChatService, presence: PresenceService,
                  controls: ChatControls) -> dict[type[RequestFrame], Handler]:
    """Frame type -> the service call it makes: the frame's fields as plain arguments, the
    coroutine of the service method itself (no coroutine of our own in between)."""
    return dict([
        handler(Send, lambda c, f: chat.send(c, f.r, f.m, f.c, f.body, f.media)),
        handler(Typing, lambda c, f: chat.typing(c, f.r, f.m, f.on)),
        handler(Read, lambda c, f: chat.receipt(c, f.r, "read", f.m, f.id)),
        handler(Delivered, lambda c, f: chat.receipt(c, f.r, "delivered", f.m, f.id)),
        handler(History, lambda c, f: chat.history(c, f.r, f.m, f.before, f.limit)),
        handler(Sync, lambda c, f: chat.sync(c, f.r, f.since)),
        handler(PresenceQuery, lambda c, f: presence.query(c, f.r)),
        handler(Unsend, lambda c, f: controls.unsend(c, f.r, f.m, f.id)),
    ])


# Connections the kernel queues before the loop accepts them. asyncio listens again with its
# default of 100 when it starts serving a socket; a reconnect storm overflowed that and turned
# connects into 1 s and 3 s SYN retries (capped by net.core.somaxconn).
LISTEN_BACKLOG = 2048


class Gateway:
    def __init__(self, *, config: Config, auth: Authenticator, hub: Hub, broker: Broker,
                 presence: PresenceService, chat: ChatService, controls: ChatControls,
                 metrics: Metrics, guard: ConnectionGuard, not_before: NotBefore) -> None:
        self.config = config
        self.not_before = not_before  # token revocations, checked at auth and refresh
        self.guard = guard  # connection cap, failed-auth throttle
        self.limits = config.limits
        self.auth = auth
        self.hub = hub
        self.broker = broker
        self.presence = presence
        self.chat = chat
        self.metrics = metrics
        self.server: Server | None = None
        self._handlers = handler_table(chat, presence, controls)

    async def start(self, sock: Any) -> None:
        """Serve on a bound, listening socket (the node creates it, with SO_REUSEPORT for
        workers)."""
        self.server = await serve(
            self.handle, sock=sock, subprotocols=[Subprotocol(p) for p in SUBPROTOCOLS],
            select_subprotocol=select_subprotocol, process_request=self._process_request,
            compression=None, max_size=self.limits.max_frame_bytes, max_queue=32,
            ping_interval=self.config.heartbeat_s, ping_timeout=self.config.heartbeat_s,
            close_timeout=self.config.close_timeout_s, server_header="rendezvous",
            backlog=LISTEN_BACKLOG)

    def _process_request(self, connection: ServerConnection,
                         request: Request) -> Response | None:
        """The path check, then the failed-auth throttle: a blocked client IP gets 429."""
        refused = process_request(connection, request)
        if refused is not None:
            return refused
        wait = self.guard.refused(self._client_ip(connection, request.headers))
        if not wait:
            return None
        response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS,
                                      "too many failed authentications from this address\n")
        response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        return response

    def _client_ip(self, ws: ServerConnection, headers: Headers | None) -> str:
        peer = ws.remote_address[0] if ws.remote_address else None
        return self.guard.client_ip(peer, headers.get if headers is not None else
                                    lambda _name: None)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close(close_connections=False)

    async def wait_closed(self, within_s: float) -> None:
        """Wait until every connection handler has finished, at most `within_s` seconds;
        then close whatever is left with 1012."""
        if self.server is None:
            return
        try:
            async with asyncio.timeout(within_s):
                await asyncio.shield(self.server.wait_closed())
        except TimeoutError:
            log.warning("connections still open after the drain timeout: closing them")
            for session in self.hub.sessions():
                session.close_now(CloseCode.RESTART, "node stopping")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.server.wait_closed()

    # -- one connection -------------------------------------------------------------------
    async def handle(self, ws: ServerConnection) -> None:
        try:
            await self._serve(ws)
        finally:
            self._count_library_close(ws)

    def _count_library_close(self, ws: ServerConnection) -> None:
        """Count a close the websockets library sent on its own (see LIBRARY_CLOSES)."""
        protocol = ws.protocol
        sent = protocol.close_sent
        if (sent is not None and protocol.close_rcvd_then_sent is not True
                and sent.code in LIBRARY_CLOSES):
            self.metrics.closes_by[str(sent.code)].inc()

    async def _serve(self, ws: ServerConnection) -> None:
        conn_id = new_connection_id()  # in this handler's context: on its log lines
        codec = codec_for(ws.subprotocol)
        claims = await self._authenticate(ws, codec)
        if claims is None:
            return
        log.debug("connection authenticated", extra={"subprotocol": codec.name})
        session = Session(claims.user, conn_id, codec, ws, claims.exp,
                          self.config.send_queue_frames, self.metrics, write_now(ws),
                          drop=ws.transport.abort, close_timeout_s=self.config.close_timeout_s)
        session.iat = claims.iat
        expiry = self._expire_at(session)
        first_here = self.hub.add(session)  # events pushed from now on wait for the welcome
        if revoked(session.iat, self.not_before.known(session.user)):
            # revoked while this auth was checked, and its closes passed the hub before this
            # session was in it: it closes as they did (from here on they find it)
            session.close_when_answered(CloseCode.UNAUTHORIZED, REVOKED_MSG)
        self.guard.opened(session)
        self.metrics.connections.inc()
        try:
            if first_here:
                await self.broker.subscribe(session.user)
            session.start(sf.welcome(session.user, session.id, self.config.node,
                                     self.config.heartbeat_s, session.exp,
                                     self.limits.for_client()))
            await self.presence.opened(session.user, session.id)
            await self._read_loop(ws, session, Caller(session.user, session.id, session.push),
                                  expiry)
        finally:
            expiry[0].cancel()
            self.metrics.connections.dec()
            await self._leave(session)
            log.debug("connection closed", extra={"close_code": ws.close_code})

    async def _leave(self, session: Session) -> None:
        await session.stop()
        self.guard.closed(session)
        if self.hub.remove(session):
            await self.broker.unsubscribe(session.user)
        await self.presence.closed(session.user, session.id)

    async def _authenticate(self, ws: ServerConnection, codec: Codec) -> Claims | None:
        """Claims from the header or the first frame (within the auth timeout), or None after
        telling the client why and closing with 4001."""
        token = bearer(ws.request.headers) if ws.request is not None else None
        r = None
        if token is None:
            try:
                # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation
                # (a drain) that lands as recv() completes
                async with asyncio.timeout(self.limits.auth_timeout_s):
                    data = await ws.recv()
            except TimeoutError:
                await self._refuse(ws, codec, "no auth frame within "
                                   f"{self.limits.auth_timeout_s:g} s", None, "timeout")
                return None
            except ConnectionClosed:
                return None
            try:
                raw = codec.decode(data)
                r = request_id(raw)
                frame = parse_client_frame(raw, self.limits)
            except ProtocolError as exc:
                await self._refuse(ws, codec, f"the first frame must be auth ({exc.msg})",
                                   exc.r, "bad_frame")
                return None
            if not isinstance(frame, Auth):
                await self._refuse(ws, codec, "the first frame must be auth", r, "no_auth")
                return None
            token = frame.token
        try:
            return await unrevoked(self.auth.verify(token, now=time.time()), self.not_before)
        except AuthError as exc:
            await self._refuse(ws, codec, exc.msg, r, exc.reason)
            return None
        except StoreUnavailable:
            await self._unavailable(ws, codec, r)
            return None

    async def _refuse(self, ws: ServerConnection, codec: Codec, msg: str, r: int | None,
                      reason: str) -> None:
        self.metrics.auth_failures.labels(reason).inc()
        await self.guard.auth_failed(self._client_ip(ws, ws.request.headers
                                                     if ws.request is not None else None))
        self.metrics.closes_by[str(int(CloseCode.UNAUTHORIZED))].inc()
        self.metrics.frames_out_by["error"].inc()
        log.info("refused a connection", extra={"reason": reason})
        try:
            await ws.send(codec.encode(sf.error(ErrorCode.UNAUTHORIZED, msg, r)))
            await ws.close(CloseCode.UNAUTHORIZED, "unauthorized")
        except ConnectionClosed:
            pass

    async def _unavailable(self, ws: ServerConnection, codec: Codec, r: int | None) -> None:
        """The token's revocation cannot be checked (the store is down and this node has not
        seen the user lately): no admission unchecked; the client tries again later."""
        self.metrics.closes_by[str(int(CloseCode.TRY_AGAIN_LATER))].inc()
        self.metrics.errors_by[str(ErrorCode.UNAVAILABLE)].inc()
        self.metrics.frames_out_by["error"].inc()
        log.info("refused a connection: revocations unreadable")
        try:
            await ws.send(codec.encode(sf.error(
                ErrorCode.UNAVAILABLE, "storage is unavailable: reconnect later", r,
                retry_ms=1000)))
            await ws.close(CloseCode.TRY_AGAIN_LATER, "storage unavailable")
        except ConnectionClosed:
            pass

    def _expire_at(self, session: Session) -> list[asyncio.TimerHandle]:
        """A timer that closes the session with 4002 when its token expires (a one-item
        list so that `refresh` can replace it)."""
        loop = asyncio.get_running_loop()
        delay = max(0.0, session.exp - time.time())
        return [loop.call_later(delay, session.close_when_answered, CloseCode.TOKEN_EXPIRED,
                                "token expired")]

    async def _read_loop(self, ws: ServerConnection, session: Session, caller: Caller,
                         expiry: list[asyncio.TimerHandle]) -> None:
        requests = Requests(self.config.inflight_per_connection)
        clock = time.monotonic
        # every frame after auth counts, whatever it is (docs/protocol.md, "Limits"); one
        # bucket per connection, so no lookup per frame
        take_frame = TokenBucket(self.config.frames_per_s, self.config.frame_burst,
                                 clock()).take
        refreshes = TokenBucket(self.config.refreshes_per_s, self.config.refresh_burst, clock())
        strikes = 0
        session.answered = lambda: requests.answered(ANSWER_WAIT_S)
        try:
            async for data in ws:
                if session.closing or session.refusing:
                    # discard, but keep reading: breaking out would leave the transport
                    # paused (max_queue) so the client's close frame is never read, and
                    # _leave would cancel the writer in the middle of the close handshake
                    continue
                wait = take_frame(clock())
                if wait:
                    strikes += 1
                    if self._rate_limited(session, data, wait, strikes):
                        session.close_when_answered(CloseCode.POLICY, "rate limit exceeded")
                    continue
                strikes = 0
                frame = self._decode(session, data)
                if frame is None:
                    continue
                if isinstance(frame, Ping):
                    session.push(sf.pong(frame.r))
                elif isinstance(frame, Refresh):
                    wait = refreshes.take(clock())
                    if wait:
                        self.metrics.rate_limited_by["refresh"].inc()
                        self._reply_error(session.push, ProtocolError(
                            ErrorCode.RATE_LIMITED, "too many refreshes", r=frame.r,
                            retry_ms=max(1, int(wait * 1000))))
                    else:
                        if requests.full():
                            await requests.wait_for_slot()
                        requests.start(self._refresh(session, frame, expiry, requests))
                elif isinstance(frame, Auth):
                    self._reply_error(session.push, ProtocolError(
                        ErrorCode.BAD_REQUEST, "already authenticated", r=frame.r))
                else:
                    if requests.full():
                        await requests.wait_for_slot()
                    requests.start(self._run(caller, frame, requests))
        except ConnectionClosed:
            pass
        finally:
            # let requests already read finish: writes may be committing
            await requests.answered(ANSWER_WAIT_S)

    def _decode(self, session: Session, data: bytes | str) -> ClientFrame | None:
        """The frame, or None after answering why not (every frame gets its answer)."""
        raw: Any = None
        try:
            raw = session.codec.decode(data)
            frame = parse_client_frame(raw, self.limits)
        except ProtocolError as exc:
            self.metrics.frames_in_by["invalid"].inc()
            self._reply_error(session.push, exc)
            return None
        except Exception:  # a validation bug: answer it, and keep the connection
            log.exception("frame validation failed")
            self.metrics.frames_in_by["invalid"].inc()
            self._reply_error(session.push, ProtocolError(
                ErrorCode.INTERNAL, "internal error",
                r=request_id(raw) if isinstance(raw, dict) else None))
            return None
        self.metrics.frames_in_by[type(frame).__name__.lower()].inc()
        return frame

    def _rate_limited(self, session: Session, data: bytes | str, wait: float,
                      strikes: int) -> bool:
        """Answer a frame over the frame limit: `rate_limited` (with its `r`, if it has a
        readable one), except a `typing` without `r`, which needs no answer. True at
        MAX_STRIKES in a row: the connection is to be closed with 4008."""
        self.metrics.frames_in_by["rate_limited"].inc()
        self.metrics.rate_limited_by["frames"].inc()
        try:
            raw: Any = session.codec.decode(data)
        except ProtocolError:
            raw = None
        r = request_id(raw) if isinstance(raw, dict) else None
        closing = strikes >= MAX_STRIKES
        if r is not None or closing or not (isinstance(raw, dict) and raw.get("t") == "typing"):
            self._reply_error(session.push, ProtocolError(
                ErrorCode.RATE_LIMITED, "too many frames", r=r,
                retry_ms=max(1, int(wait * 1000))))
        return closing

    async def _run(self, caller: Caller, frame: RequestFrame, requests: Requests) -> None:
        """One request: its service answers through `caller.reply`, or raises."""
        try:
            await self._handlers[type(frame)](caller, frame)
        except ProtocolError as exc:
            if exc.r is None:  # the answer must carry the request's r to be one
                exc.r = frame.r
            self._reply_error(caller.reply, exc)
        except Exception:
            log.exception("request failed", extra={"type": type(frame).__name__})
            self._reply_error(caller.reply, ProtocolError(
                ErrorCode.INTERNAL, "internal error", r=frame.r))
        finally:
            requests.finished(asyncio.current_task())

    async def _refresh(self, session: Session, frame: Refresh,
                       expiry: list[asyncio.TimerHandle], requests: Requests) -> None:
        """A request task of its own: the revocation check may read the store."""
        try:
            await self._refreshed(session, frame, expiry)
        except Exception:
            log.exception("refresh failed")
            self._reply_error(session.push, ProtocolError(ErrorCode.INTERNAL, "internal error",
                                                          r=frame.r))
        finally:
            requests.finished(asyncio.current_task())

    async def _refreshed(self, session: Session, frame: Refresh,
                         expiry: list[asyncio.TimerHandle]) -> None:
        try:
            claims = await unrevoked(self.auth.verify(frame.token, now=time.time()),
                                     self.not_before)
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.reason).inc()
            self._reply_error(session.push, ProtocolError(ErrorCode.UNAUTHORIZED, exc.msg,
                                                     r=frame.r))
            return
        except StoreUnavailable:
            self._reply_error(session.push, ProtocolError(
                ErrorCode.UNAVAILABLE, "storage is unavailable: retry", r=frame.r,
                retry_ms=1000))
            return
        if claims.user != session.user:
            self._reply_error(session.push, ProtocolError(
                ErrorCode.UNAUTHORIZED, "the new token is for another user", r=frame.r))
            return
        session.exp = claims.exp
        session.iat = claims.iat
        expiry[0].cancel()
        expiry[0] = self._expire_at(session)[0]
        session.push(sf.ok(frame.r, exp=claims.exp))

    def _reply_error(self, reply: Reply, exc: ProtocolError) -> None:
        self.metrics.errors_by[str(exc.code)].inc()
        reply(sf.error_from(exc))
