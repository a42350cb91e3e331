"""Account erasure (`DELETE /v1/me`): a durable, resumable job of idempotent steps.

The erasure is recorded first (`Store.begin_erasure`: the user and `erased_at`), then the
steps of `ErasureService.steps` run in order, each idempotent, and the record notes how
many are done. A step that fails (the store or Redis unavailable) stops the run: the
request answers 503 `unavailable`, and the erasure is finished by whichever comes first,
a retry of the request or this node's resumer (at start-up and every `erasure_resume_s`,
it runs the unfinished erasures of the store's small pending list). A finished erasure
stays recorded, so a second request answers its first `erased_at` and does nothing.

What each step removes and what stays, and why: docs/privacy.md, "Erasure". To erase a
new kind of per-user data, add one step to `steps` (a store kind to `ERASABLE_KINDS`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from protocol.errors import ErrorCode, ProtocolError
from push.queue import PushJob
from server.backends.presence import Presence
from server.backends.traces import TracesUnavailable, UserTraces
from server.services.matching import MatchService, settings_changed
from storage import MatchRecord, Store, StoreUnavailable
from storage.base import ErasableKind, Erasure

log = logging.getLogger("rendezvous.erasure")

ERASED = "erased"  # control kind: {"k": "erased", "u": user}, once an erasure is done
SESSIONS_GONE_WAIT_S = 5.0  # how long the sessions step waits for the sockets to close
RESUME_BATCH = 100  # pending erasures read per resumer round
REMEMBERED = 100_000  # erased users this node keeps in memory (push jobs to them dropped)

Step = Callable[[Erasure], Awaitable[None]]


class TokenRevoker(Protocol):
    """Log out everywhere (server/services/accounts.py): refuse the user's tokens issued at
    or before `ts` on every node and close their sockets with 4001."""

    async def revoke_tokens(self, user: str, ts: int) -> int: ...


class ControlBus(Protocol):
    async def publish_control(self, message: dict[str, Any]) -> None: ...


class PresenceForget(Protocol):
    def forget(self, user: str) -> None: ...


class ErasureService:
    def __init__(self, *, store: Store, matches: MatchService, traces: UserTraces,
                 revoker: TokenRevoker, broker: ControlBus, presence: Presence,
                 damper: PresenceForget, held_here: Callable[[str], bool],
                 resume_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.matches = matches
        self.traces = traces
        self.revoker = revoker
        self.broker = broker
        self.presence = presence
        self.damper = damper
        self.held_here = held_here  # does this node hold a session of the user
        self.resume_s = resume_s
        self.clock = clock
        self._running: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # lock, users of it
        self._erased: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.completed = 0  # erasures finished on this node (for tests and logs)
        # The steps, in order. Each is idempotent and may run again after a failure. A
        # match leaves `matches_ever` once `matches` erased it (`Store.erase_in_match`).
        self.steps: tuple[tuple[str, Step], ...] = (
            ("tokens", self._tokens),
            ("pushes", self._pushes),  # before `matches`, which unlists them one by one
            ("matches", self._matches),
            *((kind, self._user_data(kind)) for kind in ("swipes", "blocks", "devices",
                                                         "settings")),
            ("sessions", self._sessions),
            ("limits", self._limits),
            ("matches_index", self._user_data("matches_index")),
        )

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- the request and the resumer ------------------------------------------------------
    async def erase(self, user: str, issued_at: float | None = None) -> int:
        """Erase `user` (or finish or repeat an erasure of them): its `erased_at`.
        `issued_at` is the caller's token `iat` (unix s): a token issued after a finished
        erasure belongs to the account as used since, and erases it again; an older one
        (or none) repeats the call and gets the first `erased_at`, changing nothing.
        Raises `StoreUnavailable` or `unavailable` when a step fails; the erasure is
        recorded by then and is resumed (docs/privacy.md, "How an erasure finishes")."""
        again_after = None if issued_at is None else int(issued_at * 1000)
        erasure = await self.store.begin_erasure(user, self.now_ms(),
                                                 again_after=again_after)
        self._remember(user)
        if not erasure.done:
            await self.run(erasure)
        return erasure.erased_at

    async def erased_at(self, user: str) -> int | None:
        """When `user` was erased (pending or done), None if never."""
        erasure = await self.store.get_erasure(user)
        return None if erasure is None else erasure.erased_at

    async def run(self, erasure: Erasure) -> None:
        """Run the steps not yet done, in order; the record notes each one."""
        user = erasure.user
        lock, users = self._running.setdefault(user, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:  # the request and the resumer take turns on one user
                current = await self.store.get_erasure(user) or erasure
                if current.done:
                    return
                for index, (name, step) in enumerate(self.steps):
                    if index < current.step:
                        continue
                    try:
                        await step(current)
                    except TracesUnavailable as exc:
                        raise ProtocolError(ErrorCode.UNAVAILABLE, "the erasure is recorded "
                                            "and resumes by itself; retry to follow it",
                                            retry_ms=1000) from exc
                    except (StoreUnavailable, ProtocolError):
                        log.warning("erasure step failed; it resumes",
                                    extra={"step": name, "erasure_step": index})
                        raise
                    await self.store.erasure_progress(user, index + 1)
                await self.store.finish_erasure(user, self.now_ms())
                self.completed += 1
                log.info("account erased", extra={"steps": len(self.steps)})
                await self.broker.publish_control({"k": ERASED, "u": user})
        finally:
            users[0] -= 1
            if not users[0]:
                del self._running[user]

    async def resume_pending(self) -> int:
        """One round of the resumer: run every unfinished erasure; how many finished."""
        finished = 0
        for erasure in await self.store.pending_erasures(RESUME_BATCH):
            self._remember(erasure.user)
            try:
                await self.run(erasure)
                finished += 1
            except (StoreUnavailable, ProtocolError):
                pass  # logged by `run`; the next round tries again
        return finished

    async def keep_resuming(self) -> None:
        """Run until cancelled: resume at once (a node that stopped mid-erasure finishes it
        on start), then every `resume_s`."""
        while True:
            try:
                await self.resume_pending()
            except (StoreUnavailable, ProtocolError):
                log.warning("cannot read the pending erasures; trying again later")
            except Exception:
                log.exception("erasure resumer failed")
            await asyncio.sleep(self.resume_s)

    # -- what other parts ask -------------------------------------------------------------
    def drops(self, job: PushJob) -> bool:
        """A push job to or about a user erased here or announced by another node."""
        return any(u in self._erased for u in (job.user, job.sender, job.peer) if u)

    async def closed_by_erasure(self, match: MatchRecord, user: str) -> bool:
        """The match was closed by the erasure of `user`'s peer: `user` may still read its
        history (their own messages, and the peer's as tombstones)."""
        if match.is_open or not match.has(user):
            return False
        peer = match.peer_of(user)
        if match.closed_by != peer:
            return False
        erased = await self.erased_at(peer)
        return erased is not None and (match.closed_ts or 0) >= erased

    def on_control(self, message: dict[str, Any]) -> None:
        """An erasure finished on some node: forget what this node holds of the user."""
        user = message.get("u")
        if message.get("k") != ERASED or not isinstance(user, str):
            return
        self._remember(user)
        task = asyncio.get_running_loop().create_task(self._forget_here(user))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _remember(self, user: str) -> None:
        self._erased[user] = None
        self._erased.move_to_end(user)
        while len(self._erased) > REMEMBERED:
            self._erased.popitem(last=False)

    async def _forget_here(self, user: str) -> None:
        """This node's own traces of a user erased elsewhere: its sockets' closes may have
        written presence after the erasing node cleaned it."""
        try:
            await self._sessions_gone(user)
            self.damper.forget(user)
            await self.traces.forget_sessions(user)
        except Exception:
            log.warning("forgetting an erased user's sessions failed", exc_info=True)

    # -- the steps ------------------------------------------------------------------------
    async def _tokens(self, erasure: Erasure) -> None:
        """Tokens issued at or before `erased_at` refused, open sockets closed with 4001."""
        await self.revoker.revoke_tokens(erasure.user, erasure.erased_at)

    async def _matches(self, erasure: Erasure) -> None:
        """Every match the user was ever in: closed (the peer gets `unmatch`), the send
        claims of their messages dropped, their messages tombstoned, their rows of it gone."""
        user = erasure.user
        for match in await self.store.matches_ever(user):
            if match.is_open:
                await self.matches.close(match, user, erasure.erased_at)
            sent = await self.store.sent_in_match(user, match.id)
            await self.traces.forget_claims(user, match.id, [c for _, c in sent])
            await self.store.erase_in_match(user, match)

    async def _pushes(self, erasure: Erasure) -> None:
        ids = [m.id for m in await self.store.matches_ever(erasure.user)]
        await self.traces.forget_pushes(erasure.user, ids)

    def _user_data(self, kind: ErasableKind) -> Step:
        async def step(erasure: Erasure) -> None:
            await self.store.erase_user_data(erasure.user, kind)
        return step

    async def _sessions(self, erasure: Erasure) -> None:
        """Presence, last seen, connection-cap entries and flap marks, once the sockets the
        tokens step closed are gone (their closes write a last seen)."""
        await self._sessions_gone(erasure.user)
        self.damper.forget(erasure.user)
        await self.traces.forget_sessions(erasure.user)
        self.matches.caches.settings.invalidate(erasure.user)
        await self.broker.publish_control(settings_changed(erasure.user))

    async def _limits(self, erasure: Erasure) -> None:
        await self.traces.forget_limits(erasure.user)

    async def _sessions_gone(self, user: str) -> None:
        deadline = time.monotonic() + SESSIONS_GONE_WAIT_S
        while time.monotonic() < deadline:
            if not self.held_here(user):
                status = (await self.presence.status([user]))[user]
                if not status.online:
                    return
            await asyncio.sleep(0.05)
        log.warning("an erased user's sessions did not close in time; forgetting them anyway")
