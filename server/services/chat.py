"""The chat service: what each chat request does, whichever door it came through.

The gateway decodes and validates a frame, then calls one method here with its `Caller`
(server/services/caller.py) and the frame's fields; the HTTP API calls the same methods. Every
method checks membership first (only the two members of an open match may touch it) and
answers through `caller.reply`; a send is acknowledged only after the store has made it
durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from protocol import server_frames as sf
from protocol.codec import Frame
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import Media
from protocol.ids import MAX_ID, IdGenerator, ms_of
from protocol.limits import Limits
from push.dispatcher import PushDispatcher
from server.backends.broker import Broker
from server.backends.cluster_state import SendClaims, SendGate
from server.metrics import Metrics
from server.services.caches import Caches
from server.services.caller import Caller, unavailable
from server.services.openers import OpenerGate
from storage import Conversation, MatchRecord, Message, Store, StoreUnavailable
from storage.base import CursorKind


def message_entry(message: Message) -> Frame:
    return sf.message_entry(message.match_id, message.id, message.sender, message.ts,
                            message.client_id, message.body, message.media)


def encode_cursor(message_id: int) -> str:
    return f"v1.{message_id:x}"


def decode_cursor(cursor: str | None, r: int) -> int:
    if cursor is None:
        return 0
    try:
        version, value = cursor.split(".", 1)
        if version != "v1":
            raise ValueError(version)
        # only what encode_cursor writes: int() alone takes "-1", "0x5", "1_0" and ids past
        # 2^63, which the store cannot bind (an internal error instead of bad_request)
        if not 0 < len(value) <= 16 or value.strip("0123456789abcdef"):
            raise ValueError(value)
        after = int(value, 16)
        if after > MAX_ID:
            raise ValueError(value)
        return after
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "since is not a cursor from sync",
                            r=r) from None


NEWEST_IDS_KEPT = 100_000  # matches whose newest message id a node remembers
SYNC_MATCHES_AT_ONCE = 16  # matches one sync reads concurrently
UNREAD_CAP = 999  # the most unread messages a sync counts per match


class ChatService:
    def __init__(self, *, store: Store, broker: Broker, caches: Caches, ids: IdGenerator,
                 limits: Limits, metrics: Metrics, pushes: PushDispatcher,
                 claims: SendClaims, send_gate: SendGate, held_here: Callable[[str], bool],
                 openers: OpenerGate | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.broker = broker
        self.caches = caches
        self.ids = ids  # this node's: ids carry the (leased) node id
        self.limits = limits
        self.metrics = metrics
        self.pushes = pushes
        self.claims = claims
        self.send_gate = send_gate  # the per-user send limit and the claim of `c`, together
        self.held_here = held_here  # whether a user has a live session on this node
        self.openers = openers  # None unless an opener rule is on (server/services/openers.py)
        self.clock = clock
        self._typing: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # newest message id this node has stored or read per match: a receipt at or below it
        # names a real message without a store read (ids only grow, so it never over-accepts)
        self._newest: dict[str, int] = {}
        # whether a closed match stays readable for the user: closed by the erasure of the
        # peer (set by the node's erasure service; docs/privacy.md, "Erasure")
        self.readable_closed: Callable[[MatchRecord, str], Awaitable[bool]] = _never

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def open_match(self, user: str, match_id: str, r: int | None) -> MatchRecord:
        """The match if `user` is a member and it is open; `forbidden` otherwise.

        No such match and someone else's match answer alike, so match ids reveal nothing."""
        try:
            match = await self.caches.matches.get(match_id)
        except StoreUnavailable:
            raise unavailable(r) from None
        if match is None or not match.has(user) or not match.is_open:
            raise ProtocolError(ErrorCode.FORBIDDEN, "not a member of an open match with "
                                "this id", r=r)
        return match

    # -- messages -------------------------------------------------------------------------
    async def send(self, caller: Caller, r: int, match_id: str, client_id: str,
                   body: str | None, media: Media | None) -> None:
        """Store the message, ack it (as soon as it is durable), then fan it out."""
        started = time.perf_counter()
        user = caller.user
        match = await self.open_match(user, match_id, r)
        wait, claim = await self.send_gate.admit(user, match_id, client_id)
        if wait:
            self.metrics.rate_limited_by["send"].inc()
            raise ProtocolError(ErrorCode.RATE_LIMITED, "too many messages",
                                r=r, retry_ms=max(1, int(wait * 1000)))
        if claim.state == "done":
            caller.reply(sf.ack(r, match_id, client_id, claim.id, claim.ts))
            return
        if claim.state == "pending":
            raise ProtocolError(ErrorCode.UNAVAILABLE, "this message is being stored; resend",
                                r=r, retry_ms=250)
        gate, opener = self.openers, None
        if gate is not None:
            try:
                opener = await gate.check(user, match_id, body, r)
            except ProtocolError:
                await self.claims.release(match_id, user, client_id)  # nothing was stored
                raise
        now = self.now_ms()
        message = Message(match_id=match_id, id=self.ids.next(now), sender=user,
                          client_id=client_id, ts=now, body=body,
                          media=media.to_wire() if media is not None else None)
        try:
            stored, created = await self.store.save_message(
                message, claimed=claim.exclusive, members=match.users)
        except StoreUnavailable:
            await self.claims.release(match_id, user, client_id)
            if gate is not None and opener is not None:
                await gate.release(opener)
            raise unavailable(r) from None
        caller.reply(sf.ack(r, match_id, client_id, stored.id, stored.ts))  # durable: at once
        if gate is not None and opener is not None:
            gate.stored(opener)
        self._saw_message(match_id, stored.id)
        self.metrics.send_to_ack.observe(time.perf_counter() - started)
        self.claims.confirm(match_id, user, client_id, stored.id, stored.ts)  # before publish
        if created:
            peer = match.peer_of(user)
            if (match_id, user) in self._typing:
                await self._stop_typing(match_id, user, peer)
            reach = await self.broker.publish((peer, user), sf.msg(
                stored.match_id, stored.id, stored.sender, stored.ts, stored.client_id,
                stored.body, stored.media), skip_session=caller.session)
            if self.held_here(peer) or (reach and reach[0]):
                # a node holding a live session of the peer took it: no push work at all
                # (if that session closed meanwhile, that node pushes: `undelivered`)
                self.pushes.skip_online()
            else:
                await self.pushes.message(peer, stored)

    def undelivered(self, user: str, frame: Frame) -> None:
        """A `msg` for `user` from another node's publish, which counted this node as
        taking it and so queued no push, found no session of theirs here: push it as the
        sending node would have."""
        try:
            message = Message(match_id=frame["m"], id=frame["id"], sender=frame["from"],
                              client_id=frame["c"], ts=frame["ts"], body=frame.get("body"),
                              media=frame.get("media"))
        except KeyError:
            return
        self.pushes.message_soon(user, message)

    async def history(self, caller: Caller, r: int | None, match_id: str, before: int | None,
                      limit: int) -> None:
        """A page of the match's messages, newest first (`r` is None over HTTP). A match
        closed by the erasure of the peer stays readable (`readable_closed`)."""
        try:
            await self.open_match(caller.user, match_id, r)
        except ProtocolError:
            try:
                match = await self.caches.matches.get(match_id)
                readable = match is not None and await self.readable_closed(match, caller.user)
            except StoreUnavailable:
                raise unavailable(r) from None
            if not readable:
                raise
        try:
            messages, more = await self.store.history(match_id, before, limit)
        except StoreUnavailable:
            raise unavailable(r) from None
        caller.reply(sf.history_reply(r, match_id, [message_entry(m) for m in messages], more))

    # -- typing ---------------------------------------------------------------------------
    async def typing(self, caller: Caller, r: int | None, match_id: str, on: bool) -> None:
        """Forward typing transitions to the peer; an `on` not refreshed in time expires."""
        user = caller.user
        match = await self.open_match(user, match_id, r)
        key = (match_id, user)
        peer = match.peer_of(user)
        timer = self._typing.pop(key, None)
        if timer is not None:
            timer.cancel()
        if on:
            loop = asyncio.get_running_loop()
            self._typing[key] = loop.call_later(self.limits.typing_ttl_s, self._typing_expired,
                                                key, peer)
            if timer is None:
                await self.broker.publish((peer,), sf.typing(match_id, user, True))
        elif timer is not None:
            await self.broker.publish((peer,), sf.typing(match_id, user, False))
        if r is not None:
            caller.reply(sf.ok(r))

    def _typing_expired(self, key: tuple[str, str], peer: str) -> None:
        if self._typing.pop(key, None) is not None:
            match_id, user = key
            asyncio.get_running_loop().create_task(
                self.broker.publish((peer,), sf.typing(match_id, user, False)))

    async def _stop_typing(self, match_id: str, user: str, peer: str) -> None:
        timer = self._typing.pop((match_id, user), None)
        if timer is not None:
            timer.cancel()
            await self.broker.publish((peer,), sf.typing(match_id, user, False))

    def forget_typing(self, match_id: str) -> None:
        """Drop typing state of a closed match without telling anyone."""
        for key in [k for k in self._typing if k[0] == match_id]:
            self._typing.pop(key).cancel()

    # -- receipts -------------------------------------------------------------------------
    async def receipt(self, caller: Caller, r: int | None, kind: CursorKind, match_id: str,
                      message_id: int) -> None:
        """Advance the `read` or `delivered` cursor; tell the peer (read receipts only if
        both allow them) and the user's other devices."""
        user = caller.user
        match = await self.open_match(user, match_id, r)
        try:
            if message_id > self._newest.get(match_id, 0):
                newest, _ = await self.store.history(match_id, None, 1)
                if not newest or message_id > newest[0].id:
                    raise ProtocolError(ErrorCode.NOT_FOUND, "no message with this id in the "
                                        "match", r=r)
                self._saw_message(match_id, newest[0].id)
            moved = await self.store.advance_cursor(match_id, user, kind, message_id)
            peer = match.peer_of(user)
            share = kind == "delivered" or await self.receipts_shared(user, peer)
        except StoreUnavailable:
            raise unavailable(r) from None
        if moved:
            event = sf.receipt(kind, match_id, user, message_id)
            await self.broker.publish((peer, user) if share else (user,), event,
                                      skip_session=caller.session)
            if kind == "delivered":
                self.pushes.delivered(user, match_id)
        if r is not None:
            caller.reply(sf.ok(r))

    def _saw_message(self, match_id: str, message_id: int) -> None:
        if message_id > self._newest.get(match_id, 0):
            if len(self._newest) >= NEWEST_IDS_KEPT and match_id not in self._newest:
                self._newest.clear()  # rare and cheap: the next receipts read the store again
            self._newest[match_id] = message_id

    async def receipts_shared(self, a: str, b: str) -> bool:
        """Read receipts are reciprocal: both users must have them on."""
        sa = await self.caches.settings.get(a)
        sb = await self.caches.settings.get(b)
        return sa.read_receipts and sb.read_receipts

    # -- sync -----------------------------------------------------------------------------
    async def sync(self, caller: Caller, r: int, since: str | None) -> None:
        """Every message of the user's open matches after the cursor, oldest first, at most
        `sync_max_msgs` a call; `more` says to call again with the new cursor.

        The matches are read concurrently, at most `SYNC_MATCHES_AT_ONCE` at a time (each
        is two or three store reads); docs/storage.md has what a sync costs."""
        after = decode_cursor(since, r)
        cap = self.limits.sync_max_msgs
        user = caller.user
        try:
            convs = await self.store.conversations(user)
            since_ms = ms_of(after) if after else 0
            changed = [c for c in convs if c.last_id > after or c.match_ts >= since_ms]
            gate = asyncio.Semaphore(SYNC_MATCHES_AT_ONCE)
            done = await asyncio.gather(*(self._sync_match(user, c, after, cap, gate)
                                          for c in changed))
        except StoreUnavailable:
            raise unavailable(r) from None
        merged = sorted((m for _, page in done for m in page), key=lambda m: m.id)
        more = len(merged) > cap
        msgs = merged[:cap]
        cursor = msgs[-1].id if more else max([after, *(c.last_id for c in convs)])
        caller.reply(sf.sync_reply(r, [entry for entry, _ in done],
                                   [message_entry(m) for m in msgs], encode_cursor(cursor), more))

    async def _sync_match(self, user: str, conv: Conversation, after: int, cap: int,
                          gate: asyncio.Semaphore) -> tuple[Frame, list[Message]]:
        """One changed match of a sync: its entry and its messages after the cursor.

        The messages are read only up to the conversation row's newest id (which every
        acknowledged message is at or below), next to the cursors. The unread count comes
        from that page when it holds every message past the user's read cursor; else it is
        one more read."""
        async with gate:
            page: list[Message] = []
            if conv.last_id > after:
                cursors, page = await asyncio.gather(
                    self.store.cursors(conv.match_id),
                    self.store.messages_after(conv.match_id, after, cap + 1,
                                              newest=conv.last_id))
            else:
                cursors = await self.store.cursors(conv.match_id)
            mine = cursors.get(user)
            theirs = cursors.get(conv.peer)
            read_id = mine.read_id if mine else 0
            if conv.last_id <= read_id:
                unread = 0
            elif read_id >= after and len(page) <= cap:  # the page is all of (after, last]
                unread = min(UNREAD_CAP, sum(1 for m in page
                                             if m.id > read_id and m.sender != user))
            else:
                unread = await self.store.count_unread(conv.match_id, user, read_id,
                                                       UNREAD_CAP, newest=conv.last_id)
            peer_read = 0
            if theirs and await self.receipts_shared(user, conv.peer):
                peer_read = theirs.read_id
        return sf.sync_conversation(conv.match_id, conv.peer, conv.last_id, unread,
                                    peer_read), page


async def _never(match: MatchRecord, user: str) -> bool:
    return False
