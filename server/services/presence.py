"""Presence, owned in one place: who of a user's matches is online, and who hears of it.

The registry (`server/backends/presence.py`: in process, or Redis for a cluster) holds sessions with
a TTL; this service decides what it means (docs/architecture.md, "Presence"): a user's first
live session announces `presence on` to their open matches and their last one's end
`on:false` with a coarse last seen, both damped so that a quick reconnect announces
nothing; a user who hides it (`show_online: false`) is left out of events and queries, and
hiding while online tells the matches `on:false`. The node's sessions are refreshed here,
and sessions of a node that died are reaped and announced here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from protocol import server_frames as sf
from server.backends.broker import Broker
from server.backends.guards import FlapMarks
from server.backends.presence import Presence
from server.services.caches import Caches
from server.services.caller import Caller, unavailable
from storage import Store, StoreUnavailable

log = logging.getLogger("rendezvous.presence")

Announce = Callable[[str, bool, "int | None"], Awaitable[None]]
REFRESH_SLICE = 200  # sessions refreshed per step of the spread-out refresh


class PresenceDamper:
    """A user who reconnects within `grace_s` never goes offline and online again for their
    matches: the offline announcement waits `grace_s`, and a flap mark (`FlapMarks`)
    decides which of the reconnect and the delayed announcement speaks, so with several
    nodes too neither or exactly one of the pair is announced."""

    def __init__(self, *, marks: FlapMarks, presence: Presence, announce: Announce,
                 grace_s: float) -> None:
        self.marks = marks
        self.presence = presence
        self.announce = announce
        self.grace_s = grace_s
        # key -> (timer, user, seen) of each offline announcement still waiting
        self._timers: dict[int, tuple[asyncio.TimerHandle, str, int | None]] = {}
        self._keys = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()

    async def online(self, user: str) -> None:
        """`user` has their first live session again (presence said so)."""
        if self.grace_s > 0 and await self.marks.take(user):
            return  # back within the grace: the offline was never announced
        await self.announce(user, True, None)

    async def offline(self, user: str, seen: int | None) -> None:
        """`user` closed their last live session; tell their matches after the grace."""
        if self.grace_s <= 0:
            await self.announce(user, False, seen)
            return
        # The mark outlives the timer: it is the timer's to take, or a reconnect's.
        await self.marks.mark(user, self.grace_s * 2 + 1)
        key = next(self._keys)
        handle = asyncio.get_running_loop().call_later(self.grace_s, self._due, key)
        self._timers[key] = (handle, user, seen)

    def _due(self, key: int) -> None:
        entry = self._timers.pop(key, None)
        if entry is not None:
            self._spawn(self._settle(entry[1], entry[2]))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, user: str, seen: int | None) -> None:
        try:
            if not await self.marks.take(user):
                return  # a reconnect took the mark: no flap
            status = (await self.presence.status([user])).get(user)
            if status is not None and status.online:
                return  # back on another node before our mark was written
            await self.announce(user, False, seen)
        except Exception:
            log.exception("a delayed offline announcement failed")

    def pending(self) -> int:
        return len(self._timers) + len(self._tasks)

    def forget(self, user: str) -> None:
        """Drop the offline announcements still waiting for `user` (an erased user's)."""
        for key, (handle, who, _) in list(self._timers.items()):
            if who == user:
                handle.cancel()
                del self._timers[key]

    async def close(self) -> None:
        """Announce what is still pending, waiting at most the grace (a drain's clients
        reconnect elsewhere meanwhile, and are then not announced at all)."""
        loop = asyncio.get_running_loop()
        last = max((h.when() for h, _, _ in self._timers.values()), default=0.0)
        if last > loop.time():
            await asyncio.sleep(min(self.grace_s, last - loop.time()))
        timers, self._timers = self._timers, {}
        for handle, user, seen in timers.values():
            handle.cancel()
            self._spawn(self._settle(user, seen))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class PresenceService:
    def __init__(self, *, registry: Presence, store: Store, caches: Caches, broker: Broker,
                 marks: FlapMarks, grace_s: float, ttl_s: float) -> None:
        self.registry = registry
        self.store = store
        self.caches = caches
        self.broker = broker
        self.ttl_s = ttl_s
        self.damper = PresenceDamper(marks=marks, presence=registry, announce=self.announce,
                                     grace_s=grace_s)

    # -- sessions of this node ------------------------------------------------------------
    async def opened(self, user: str, session_id: str) -> None:
        """A session of `user` is live here: their first anywhere announces them online."""
        if await self.registry.connect(user, session_id):
            await self.damper.online(user)

    async def closed(self, user: str, session_id: str) -> None:
        """A session of `user` ended here: their last anywhere announces them offline, once
        the grace has passed without a reconnect."""
        seen = await self.registry.disconnect(user, session_id)
        if seen is not None:
            await self.damper.offline(user, seen)

    async def keep(self, local_sessions: Callable[[], list[tuple[str, str]]]) -> None:
        """Run until cancelled: refresh the TTL of this node's (user, session) pairs, and
        reap and announce sessions whose node stopped refreshing them.

        The refresh is spread over half the interval in slices: done at once, 10,000 sessions
        held the loop for about a second every interval and connects queued behind it."""
        interval = max(0.2, self.ttl_s / 3)
        while True:
            await asyncio.sleep(interval / 2)
            try:
                sessions = local_sessions()
                slices = range(0, len(sessions), REFRESH_SLICE)
                pause = interval / 2 / max(1, len(slices))
                for start in slices:
                    await self.registry.refresh(sessions[start:start + REFRESH_SLICE])
                    await asyncio.sleep(pause)
                if not sessions:
                    await asyncio.sleep(pause)
                for user, seen in await self.registry.reap():
                    await self.announce(user, False, seen)
            except Exception:
                log.exception("presence upkeep failed")

    async def close(self) -> None:
        """Announce the offlines still waiting for their grace (before the broker goes)."""
        await self.damper.close()

    # -- who hears what -------------------------------------------------------------------
    async def query(self, caller: Caller, r: int) -> None:
        """Online state of the caller's matches, leaving out those who hide it."""
        try:
            peers = [c.peer for c in await self.store.conversations(caller.user)]
            visible = [p for p in peers if (await self.caches.settings.get(p)).show_online]
        except StoreUnavailable:
            raise unavailable(r) from None
        statuses = await self.registry.status(visible)
        users = []
        for peer in visible:
            status = statuses[peer]
            users.append(sf.presence_entry(peer, status.online,
                                           None if status.online else status.seen))
        caller.reply(sf.presence_reply(r, users))

    async def announce(self, user: str, online: bool, seen: int | None) -> None:
        """Tell the user's matches that they came online or went offline, unless hidden."""
        try:
            if not (await self.caches.settings.get(user)).show_online:
                return
            peers = [c.peer for c in await self.store.conversations(user)]
        except StoreUnavailable:
            return  # presence is best effort; a `presence` query answers later
        if peers:
            await self.broker.publish(peers, sf.presence_event(user, online,
                                                               None if online else seen))

    async def visibility_changed(self, user: str, show_online: bool) -> None:
        """`user` just showed or hid their presence: if online, their matches hear it now
        (hiding looks like going offline, without a last seen)."""
        status = (await self.registry.status([user]))[user]
        if status.online:
            peers = [c.peer for c in await self.store.conversations(user)]
            await self.broker.publish(peers, sf.presence_event(user, show_online, None))
