"""Log out everywhere: each user's "tokens not before", and the sockets it ends.

The not-before (unix ms) is kept in the store (`Store.revoke_tokens`), so neither a Redis
restart nor a node that missed the news undoes it. It is checked whenever a token is
presented: the WebSocket auth, a `refresh` and every authenticated HTTP request, never per
frame. Each node keeps the values it read in a small LRU for `revocation_cache_s`, so a hot
HTTP path does not read the store per request; a revocation reaches every node's cache at
once as a control message (and a node that missed it reads the store again once its entry
expires). The same message closes the user's open sockets on every node with 4001.

`AccountService.revoke_tokens` is the one operation, used by `POST /v1/me/logout-all` with
the time of the call and by account erasure with its own time (docs/protocol.md, "Log out
everywhere").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from protocol.errors import CloseCode, ErrorCode, ProtocolError
from storage import Store, StoreUnavailable

log = logging.getLogger("rendezvous.accounts")

REVOKE = "revoke"  # control kind: {"k": "revoke", "u": user, "nb": not-before, unix ms}
REVOKED_REASON = "tokens revoked (log out everywhere): get a new token"


def revoked(iat: float | None, not_before: int | None) -> bool:
    """The rule: a token issued (`iat`, unix s) at or before the user's not-before (unix ms)
    is refused. A token without `iat` cannot be dated: refused once the user has one."""
    if not_before is None:
        return False
    return iat is None or iat * 1000 <= not_before


class NotBefore:
    """Each user's not-before as this node last knew it: a bounded LRU whose entries expire
    after `ttl_s`, filled from the store on a miss (concurrent misses share one read).

    Values only ever rise (the store max-merges them), so every update here is a max-merge
    too: a store read that started before a revocation and ends after it cannot lower what
    the revocation's message put here."""

    def __init__(self, load: Callable[[str], Awaitable[int | None]], *, ttl_s: float,
                 max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, int | None]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[int | None]] = {}

    async def get(self, user: str) -> int | None:
        """The user's not-before, from the cache while fresh, else from the store. When the
        store is unavailable an expired entry is used; without one `StoreUnavailable`
        is raised (the caller refuses rather than admit a token it cannot check)."""
        entry = self._entries.get(user)
        if entry is not None and entry[0] > self._clock():
            self._entries.move_to_end(user)
            return entry[1]
        pending = self._loading.get(user)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._loading[user] = asyncio.get_running_loop().create_future()
        try:
            value = self.raised(user, await self._load(user))
        except StoreUnavailable as exc:
            stale = self._entries.get(user)  # a revocation's message may have come meanwhile
            if stale is None:
                pending.set_exception(exc)
                pending.exception()  # retrieved: waiters re-raise it
                raise
            value = stale[1]  # the best known; not refreshed, so the next call reads again
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()
            raise
        finally:
            self._loading.pop(user, None)
        if not pending.done():
            pending.set_result(value)
        return value

    def raised(self, user: str, value: int | None) -> int | None:
        """Merge `value` (from the store or a control message) into the entry; fresh for
        `ttl_s` from now. Returns the merged value."""
        entry = self._entries.get(user)
        known = entry[1] if entry is not None else None
        merged = value if known is None else known if value is None else max(known, value)
        self._entries[user] = (self._clock() + self._ttl, merged)
        self._entries.move_to_end(user)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return merged

    def known(self, user: str) -> int | None:
        """What this node knows now, fresh or not, without reading the store."""
        entry = self._entries.get(user)
        return entry[1] if entry is not None else None

    async def is_revoked(self, user: str, iat: float | None) -> bool:
        return revoked(iat, await self.get(user))


class UserSession(Protocol):
    """The part of a hub session revocation needs: who, since when, and how to end it."""

    user: str
    iat: float | None
    closing: bool  # closing already (this revocation's message comes back to its node too)
    refusing: bool

    def close_when_answered(self, code: int, reason: str) -> None: ...


class ControlBus(Protocol):
    """The part of the broker revocation needs."""

    async def publish_control(self, message: dict[str, Any]) -> None: ...

    def healthy(self) -> bool: ...


class AccountService:
    """Token revocation for one node: the store write, the broadcast, and the closes."""

    def __init__(self, *, store: Store, broker: ControlBus, not_before: NotBefore,
                 sessions_of: Callable[[str], Iterable[UserSession]],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.broker = broker
        self.not_before = not_before
        self._sessions_of = sessions_of
        self._clock = clock
        self.closed = 0  # sockets closed by revocations on this node

    async def logout_all(self, user: str) -> int:
        """Refuse every token of `user` issued until now and close their sockets everywhere;
        the not-before stored (unix ms)."""
        return await self.revoke_tokens(user, int(self._clock() * 1000))

    async def revoke_tokens(self, user: str, ts: int) -> int:
        """Refuse `user`'s tokens issued at or before `ts` (unix ms) on every node, and close
        the sockets they opened, on every node, with 4001. Returns the not-before stored (at
        least `ts`). Idempotent, and safe to retry with the same or a later `ts`.

        The store write comes first: once it returned, no node admits such a token after at
        most `revocation_cache_s`. Then this node's sockets close and every node is told.
        Raises `StoreUnavailable` if the write may not have happened, and `unavailable` if
        it did but the other nodes could not be told (the broker is down): their open
        sockets stay until they reconnect, so retry."""
        stored = await self.store.revoke_tokens(user, ts)
        self.apply(user, stored)
        if not self.broker.healthy():
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the tokens are revoked, but the other "
                                "nodes could not be told to close the sockets: retry",
                                retry_ms=1000)
        await self.broker.publish_control({"k": REVOKE, "u": user, "nb": stored})
        return stored

    def apply(self, user: str, not_before: int) -> int:
        """Know the new not-before and close this node's sockets it revokes (how many)."""
        self.not_before.raised(user, not_before)
        closing = [s for s in self._sessions_of(user) if revoked(s.iat, not_before)
                   and not (s.closing or s.refusing)]
        for session in closing:
            session.close_when_answered(CloseCode.UNAUTHORIZED, REVOKED_REASON)
        self.closed += len(closing)
        if closing:
            log.info("closed revoked sessions", extra={"sessions": len(closing)})
        return len(closing)

    def on_control(self, message: dict[str, Any]) -> None:
        """A revocation published by any node (this one included)."""
        if message.get("k") != REVOKE:
            return
        user, not_before = message.get("u"), message.get("nb")
        if isinstance(user, str) and type(not_before) is int and not_before >= 0:
            self.apply(user, not_before)
