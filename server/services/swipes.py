"""Undo the latest swipe, and "who liked me": the swipe economy's reads and take-backs.

Undo never undoes a match, even when the peer's like races it. The peer's swipe stores its
like, then reads ours; undo removes ours, then reads theirs. Of two such write-then-read
sequences at least one sees the other's write: either the peer saw our like (and makes the
match, which our read of their like then finds: we put our like back and refuse), or the
peer's like landed after our read and its read finds our like gone (no match). When undo
sees the peer's like it restores ours and makes the match itself, since the peer's read
may have missed ours (docs/protocol.md, "Undo").
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Any

from protocol.errors import ErrorCode, ProtocolError
from server.services.matching import LIKES, MatchService
from server.services.quotas import QuotaService
from storage import Store, match_id_for
from storage.base import Swipe

LIKES_PAGE_ROUNDS = 5  # store pages one `likes` call reads past filtered-out entries


def encode_likes_cursor(last: Swipe) -> str:
    return base64.urlsafe_b64encode(f"{last.ts}:{last.swiper}".encode()).decode()


def decode_likes_cursor(cursor: str) -> tuple[int, str]:
    try:
        ts, swiper = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        return int(ts), swiper
    except (binascii.Error, UnicodeError, ValueError):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "cursor is not one from this API") from None


class SwipeService:
    def __init__(self, *, store: Store, matches: MatchService, quotas: QuotaService | None,
                 undo_window_s: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.matches = matches
        self.quotas = quotas
        self.undo_window_ms = int(undo_window_s * 1000)
        self.clock = clock

    async def undo(self, user: str, tier: tuple[str, ...] = ()) -> dict[str, Any]:
        """Take back the caller's latest swipe if it is recent and made no match:
        `{"target", "action", "ts"}`; `not_found` otherwise. Its quota unit comes back."""
        now = int(self.clock() * 1000)
        last = await self.store.last_swipe(user)
        if last is None or now - last.ts > self.undo_window_ms:
            raise ProtocolError(ErrorCode.NOT_FOUND, "nothing to undo: no swipe in the last "
                                f"{self.undo_window_ms // 1000} s")
        liked = last.action in LIKES
        if liked and await self.store.get_match(match_id_for(user, last.target)) is not None:
            raise _made_a_match()
        if not await self.store.undo_swipe(last):
            raise ProtocolError(ErrorCode.NOT_FOUND, "nothing to undo: that swipe was "
                                "already undone or swiped again")
        if liked and await self.store.get_swipe(last.target, user) in LIKES \
                and not await self.store.is_blocked(user, last.target):
            # the peer likes us: their swipe may have raced this undo and missed our like,
            # so ours goes back (stamped after the undo's deletes) and the match is made here
            await self.store.record_swipe(user, last.target, last.action, max(now, last.ts + 1))
            await self.matches.match_if_mutual(user, last.target, last.action)
            raise _made_a_match()
        if self.quotas is not None:
            await self.quotas.give_back(user, last.action, last.ts,
                                        f"{last.target}:{last.ts}", tier)
        return {"target": last.target, "action": last.action, "ts": last.ts}

    async def likes(self, user: str, limit: int, cursor: str | None) -> dict[str, Any]:
        """Who liked `user` and is still waiting: not swiped back, no block either way;
        newest first. A page may hold fewer than `limit` with a `next` when many entries
        in a row were filtered out; the last page has no `next`."""
        before = decode_likes_cursor(cursor) if cursor else None
        out: list[Swipe] = []
        exhausted = False
        for _ in range(LIKES_PAGE_ROUNDS):
            want = limit + 1 - len(out)
            page = await self.store.likes_received(user, want, before)
            if page:
                excluded = await self.store.deck_exclusions(user, [p.swiper for p in page])
                out += [p for p in page if p.swiper not in excluded]
                before = (page[-1].ts, page[-1].swiper)
            if len(page) < want:
                exhausted = True
                break
            if len(out) > limit:
                break
        result: dict[str, Any] = {"likes": [{"user": p.swiper, "action": p.action, "ts": p.ts}
                                            for p in out[:limit]]}
        if len(out) > limit:
            result["next"] = encode_likes_cursor(out[limit - 1])
        elif not exhausted and before is not None:  # a short page: go on from where it stopped
            result["next"] = encode_likes_cursor(Swipe(before[1], user, "like", before[0]))
        return result


def _made_a_match() -> ProtocolError:
    return ProtocolError(ErrorCode.NOT_FOUND, "nothing to undo: your latest swipe made a "
                         "match (unmatch instead)")
