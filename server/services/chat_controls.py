"""Unsend and mute: what a member does to one message or one match after the fact
(docs/chat-controls.md). The gateway's `unsend` frame and the HTTP API's mute routes call
these; membership is the chat service's `open_match` rule (only the two members of an open
match, and a stranger's request answers like a missing match's)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from protocol import server_frames as sf
from protocol.errors import ErrorCode, ProtocolError
from server.backends.broker import Broker
from server.services.caller import Caller, unavailable
from storage import MatchRecord, Store, StoreUnavailable
from storage.base import MUTED_FOREVER

OpenMatch = Callable[[str, str, int | None], Awaitable[MatchRecord]]


class ChatControls:
    def __init__(self, *, store: Store, broker: Broker, open_match: OpenMatch,
                 unsend_window_s: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.broker = broker
        self.open_match = open_match
        self.unsend_window_ms = int(unsend_window_s * 1000)
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def unsend(self, caller: Caller, r: int, match_id: str, message_id: int) -> None:
        """Tombstone the caller's own message within the window, answer `ok` once that is
        durable, then tell both members' devices (`unsent`). Unsending a tombstone again
        answers `ok` and tells them again (a device that missed it learns it)."""
        user = caller.user
        match = await self.open_match(user, match_id, r)
        try:
            message = await self.store.get_message(match_id, message_id)
            if message is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, "no message with this id in the "
                                    "match", r=r)
            if message.sender != user:
                raise ProtocolError(ErrorCode.FORBIDDEN, "only the sender can unsend a "
                                    "message", r=r)
            if self.now_ms() - message.ts > self.unsend_window_ms:
                raise ProtocolError(ErrorCode.FORBIDDEN, "past the unsend window of "
                                    f"{self.unsend_window_ms // 1000} s", r=r)
            if not message.deleted:
                await self.store.tombstone_message(match_id, message_id)
        except StoreUnavailable:
            raise unavailable(r) from None
        caller.reply(sf.ok(r))
        await self.broker.publish((match.peer_of(user), user), sf.unsent(match_id, message_id),
                                  skip_session=caller.session)

    async def mute(self, user: str, match_id: str, until: int | None) -> int | None:
        """No pushes of this match for `user` until unix ms `until` (None: until unmuted).
        Returns `muted_until` as the API shows it (None for no end)."""
        await self.open_match(user, match_id, None)
        if until is not None and not self.now_ms() < until < MUTED_FOREVER:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "until must be a unix ms time in "
                                "the future (leave it out to mute with no end)")
        try:
            await self.store.put_mute(user, match_id, MUTED_FOREVER if until is None
                                      else until)
        except StoreUnavailable:
            raise unavailable(None) from None
        return until

    async def unmute(self, user: str, match_id: str) -> None:
        await self.open_match(user, match_id, None)
        try:
            await self.store.delete_mute(user, match_id)
        except StoreUnavailable:
            raise unavailable(None) from None
