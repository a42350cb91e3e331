"""Swipes, matches, unmatch, blocks, devices and settings: the HTTP side of the product.

Every rule of these is here, whoever calls (the HTTP API today): the swipe rate limit too.
A mutual like creates exactly one match: both likes are stored before either side looks for
the other's, so at least one of two racing swipes sees the other, and the match is an
insert-if-absent on a key derived from the pair, so only one creation wins.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from protocol import server_frames as sf
from protocol.errors import ErrorCode, ProtocolError
from push.dispatcher import PushDispatcher
from server.backends.broker import Broker
from server.backends.cluster_state import Limiter
from server.metrics import Metrics
from server.services.caches import Caches
from server.services.presence import PresenceService
from server.services.quotas import QuotaService
from storage import Device, MatchRecord, Settings, Store, match_id_for
from storage.base import MUTED_FOREVER, Platform, Swipe, SwipeAction

LIKES = ("like", "superlike")


def match_changed(match_id: str) -> dict[str, Any]:
    """Control message: drop this match from every node's membership cache."""
    return {"k": "match", "id": match_id}


def settings_changed(user: str) -> dict[str, Any]:
    """Control message: drop this user's settings from every node's cache."""
    return {"k": "settings", "u": user}


def match_summary(match: MatchRecord, user: str) -> dict[str, Any]:
    return {"id": match.id, "peer": match.peer_of(user), "ts": match.ts}


class MatchService:
    def __init__(self, *, store: Store, broker: Broker, caches: Caches,
                 presence: PresenceService, pushes: PushDispatcher, metrics: Metrics,
                 swipe_limiter: Limiter, forget_typing: Callable[[str], None],
                 clock: Callable[[], float] = time.time,
                 quotas: QuotaService | None = None) -> None:
        self.store = store
        self.broker = broker
        self.caches = caches
        self.presence = presence
        self.swipe_limiter = swipe_limiter  # per user, across the cluster where it is Redis
        self.forget_typing = forget_typing  # drops a closed match's typing state (chat's)
        self.pushes = pushes
        self.metrics = metrics
        self.clock = clock
        self.quotas = quotas  # daily like quotas; None: unlimited

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def swipe(self, user: str, target: str, action: SwipeAction,
                    tier: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """Record a swipe; the match (as seen by `user`) if it made or found a mutual like.

        A like or super like spends the day's quota (server/services/quotas.py) unless the
        same swipe already stands (a repeat spends nothing); a swipe that fails to store
        gives its unit back. A super like that makes no match tells the target by a
        discreet push of kind `like`."""
        wait = await self.swipe_limiter.take(user)
        if wait:
            self.metrics.rate_limited_by["swipe"].inc()
            raise ProtocolError(ErrorCode.RATE_LIMITED, "too many swipes",
                                retry_ms=int(wait * 1000) + 1)
        if target == user:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "you cannot swipe on yourself")
        repeat = False
        spent = None
        if action == "superlike" or (self.quotas and self.quotas.metered(action, tier)):
            repeat = await self.store.get_swipe(user, target) == action
        if self.quotas is not None and not repeat:
            try:
                spent = await self.quotas.spend(user, action, tier)
            except ProtocolError:
                self.metrics.rate_limited_by["quota"].inc()
                raise
        ts = self.now_ms()
        try:  # both writes at once: one commit group on SQLite, parallel on Cassandra
            for outcome in await asyncio.gather(
                    self.store.record_swipe(user, target, action, ts),
                    self.store.index_swipe(Swipe(user, target, action, ts)),
                    return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            if spent is not None and self.quotas is not None:
                await self.quotas.refund(user, spent, f"{target}:{ts}")
            raise
        summary = await self.match_if_mutual(user, target, action)
        if action == "superlike" and summary is None and not repeat \
                and not await self.store.is_blocked(user, target):
            await self.pushes.like(target, user, ts)
        return summary

    async def match_if_mutual(self, user: str, target: str,
                              action: SwipeAction) -> dict[str, Any] | None:
        """After `user`'s like of `target` is stored: make (or find) the match if `target`
        likes `user` too; the match as `user` sees it, or None."""
        if action not in LIKES or await self.store.is_blocked(user, target):
            return None
        theirs = await self.store.get_swipe(target, user)
        if theirs not in LIKES:
            return None
        candidate = MatchRecord(id=match_id_for(user, target),
                                users=tuple(sorted((user, target))),  # type: ignore[arg-type]
                                ts=self.now_ms(),
                                superlike="superlike" in (action, theirs))
        match, created = await self.store.create_match(candidate)
        self.caches.matches.put(match.id, match)
        if created:
            await self.broker.publish_control(match_changed(match.id))
        if not match.is_open:
            return None  # unmatched or blocked before: a match is not reopened
        if created:
            self.metrics.matches_created.inc()
            # who received a super like: the target of this one, or this user of theirs
            superliked = {target} if action == "superlike" else set()
            if theirs == "superlike":
                superliked.add(user)
            for member in match.users:
                peer = match.peer_of(member)
                await self.broker.publish((member,), sf.match(match.id, peer, match.ts,
                                                              match.superlike))
                await self.pushes.match(member, match, superlike=member in superliked)
        return match_summary(match, user)

    async def member_match(self, user: str, match_id: str) -> MatchRecord:
        """The match if `user` is in it (open or closed), else `forbidden`."""
        match = await self.caches.matches.get(match_id)
        if match is None or not match.has(user):
            raise ProtocolError(ErrorCode.FORBIDDEN, "not a member of a match with this id")
        return match

    async def list_matches(self, user: str, limit: int,
                           cursor: str | None) -> dict[str, Any]:
        try:
            page = await self.store.matches_for_user(user, limit, cursor)
        except ValueError:  # the store could not decode the cursor
            raise ProtocolError(ErrorCode.BAD_REQUEST, "cursor is not one from this API") from None
        convs = {c.match_id: c for c in await self.store.conversations(user)}
        mutes = await self.store.mutes(user)
        now = self.now_ms()
        out = []
        for match in page.items:
            entry = match_summary(match, user)
            muted = mutes.get(match.id, 0)
            if muted > now:  # docs/chat-controls.md, "Mute": null is "until unmuted"
                entry["muted_until"] = None if muted == MUTED_FOREVER else muted
            conv = convs.get(match.id)
            unread = 0
            if conv is not None and conv.last_id:
                entry["last"] = {"id": conv.last_id, "from": conv.last_from, "ts": conv.last_ts}
                mine = (await self.store.cursors(match.id)).get(user)
                unread = await self.store.count_unread(match.id, user,
                                                       mine.read_id if mine else 0,
                                                       newest=conv.last_id)
            entry["unread"] = unread
            out.append(entry)
        result: dict[str, Any] = {"matches": out}
        if page.next is not None:
            result["next"] = page.next
        return result

    async def unmatch(self, user: str, match_id: str) -> None:
        match = await self.member_match(user, match_id)
        if match.is_open:
            await self._close(match, user)

    async def block(self, user: str, target: str) -> None:
        """Block `target`: close any match between them; nothing passes between them after."""
        if target == user:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "you cannot block yourself")
        await self.store.add_block(user, target, self.now_ms())
        match = await self.store.get_match(match_id_for(user, target))
        if match is not None and match.is_open:
            await self._close(match, user)

    async def close(self, match: MatchRecord, by_user: str, ts: int) -> None:
        """Close `match` as of `ts` (account erasure): both users get `unmatch`."""
        await self._close(match, by_user, ts)

    async def _close(self, match: MatchRecord, by_user: str, ts: int | None = None) -> None:
        closed = await self.store.close_match(match.id, by_user,
                                              self.now_ms() if ts is None else ts)
        self.caches.matches.put(match.id, closed)
        await self.broker.publish_control(match_changed(match.id))
        self.forget_typing(match.id)
        await self.broker.publish(match.users, sf.unmatch(match.id))

    async def put_device(self, user: str, token: str, platform: Platform, app: str | None,
                         locale: str | None) -> None:
        await self.store.put_device(Device(user=user, token=token, platform=platform, app=app,
                                           locale=locale, updated_ts=self.now_ms()))

    async def delete_device(self, user: str, token: str) -> None:
        await self.store.delete_device(user, token)

    async def get_settings(self, user: str) -> Settings:
        return await self.store.get_settings(user)

    async def put_settings(self, user: str, changes: dict[str, bool]) -> Settings:
        """Save settings; showing or hiding presence tells matches at once if online."""
        before = await self.store.get_settings(user)
        after = await self.store.put_settings(user, changes)
        self.caches.settings.put(user, after)
        await self.broker.publish_control(settings_changed(user))
        if before.show_online != after.show_online:
            await self.presence.visibility_changed(user, after.show_online)
        return after
