"""Decides who gets a push and hands it to the provider, off the hot path.

The chat and match paths only queue a small job (`PushJob`) and never wait on a provider.
Workers take jobs from the `PushQueue` (in memory, or a Redis Stream in a cluster) and:

1. skip a user who is online (a live socket got the frame), or whose device confirmed
   delivery in the match a moment ago, who turned this kind of push off (`push_kinds`)
   or muted the match; and a message unsent since it was queued (read again just before
   the send: docs/chat-controls.md);
2. coalesce a burst: the first message job of (user, match) in `coalesce_s` notifies, the
   rest of the burst does not (the notification carries a collapse id per match anyway);
3. render one discreet notification per registered device, with the unread badge, and send
   to every device of the user at once, each provider behind its own in-flight cap;
4. act on the answer: a dead token is pruned, a temporary failure is queued again with a
   due time (exponential backoff with full jitter, or the provider's Retry-After) instead
   of holding a worker, a configuration error is counted and logged with the token kept.

A push id is claimed before the send and marked sent after (`PushGates`), so a job that a
durable queue hands out twice sends each notification once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from push.badge import BADGE_CONVERSATIONS, unread_badge
from push.base import BatchPusher, Notification, Outcome, Pusher, PushResult
from push.gates import Claim, MemoryPushGates, PushGates
from push.payload import (
    like_notification,
    match_notification,
    message_notification,
    superlike_notification,
)
from push.queue import MemoryPushQueue, PushJob, PushQueue
from push.recorder import token_id
from runtime.backoff import full_jitter
from runtime.tasks import stop_tasks
from storage import Device, MatchRecord, Message, Store, StoreUnavailable

log = logging.getLogger("rendezvous.push")

CONFIG_ERROR_LOG_EVERY_S = 60.0  # a wrong key fails every push: one line a minute is enough
# The `push_kinds` switch (storage.base.PUSH_KINDS) that governs each job kind: a super
# like that made a match is a match push; any other kind (a `like`) is its own switch.
PUSH_KIND_OF = {"message": "message", "match": "match", "superlike": "match"}


class OnlineCheck(Protocol):
    async def status(self, users: Any) -> Mapping[str, Any]: ...


class PushMetrics(Protocol):
    pushes: Any
    push_queue: Any
    push_shed: Any
    push_skipped_by: Any  # push_skipped's children by reason, resolved once each
    push_send_seconds: Any
    push_config_errors: Any
    push_failures: Any


@dataclass(frozen=True, slots=True)
class PushPolicy:
    """The dispatcher's knobs (config keys `push_*`)."""

    workers: int = 4
    max_in_flight: int = 100  # sends in flight per provider
    max_waiting: int = 1000  # sends waiting for a slot per provider; past it they are shed
    coalesce_s: float = 15.0  # one notification per (user, match) per this window
    delivered_window_s: float = 10.0  # no push after a device confirmed delivery
    max_attempts: int = 5
    retry_base_s: float = 1.0  # first backoff without Retry-After; doubles per attempt
    retry_max_s: float = 300.0
    send_timeout_s: float = 10.0
    claim_s: float = 60.0  # a dead node's claims and queued jobs lapse after this
    badge_conversations: int = BADGE_CONVERSATIONS


def reason_label(reason: str) -> str:
    """A provider's reason as a metric label: its code only ("invalid message: <details>"
    -> "invalid message"), so details can neither blow up the label set nor leak a value."""
    code = re.split(r"[:(\n]", reason, maxsplit=1)[0].strip()
    return code[:40] or "unknown"


async def _until(condition: Callable[[], bool], deadline: float) -> None:
    """Poll `condition` until it holds or the monotonic `deadline` passes (drain only)."""
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)


class _Delivery(NamedTuple):
    """One device's notification within a job."""

    device: Device
    device_id: str  # token_id(device.token), computed once
    notification: Notification


class ProviderSlots:
    """At most `max_in_flight` sends to one provider and `max_waiting` waiting for a slot.

    A batch (the FCM devices of one job) takes one slot per message, all at once, so two
    batches can never each hold part of what they need; waiters are served in order."""

    def __init__(self, max_in_flight: int, max_waiting: int) -> None:
        self.max_in_flight = max(1, max_in_flight)
        self.max_waiting = max_waiting
        self.in_flight = 0
        self.waiting = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def full(self) -> bool:
        return self.in_flight >= self.max_in_flight and self.waiting >= self.max_waiting

    @contextlib.asynccontextmanager
    async def slot(self, n: int = 1) -> AsyncIterator[None]:
        n = min(max(1, n), self.max_in_flight)
        if self._waiters or self.in_flight + n > self.max_in_flight:
            await self._wait(n)
        else:
            self.in_flight += n
        try:
            yield
        finally:
            self.in_flight -= n
            self._wake()

    async def _wait(self, n: int) -> None:
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, granted)
        self._waiters.append(entry)
        self.waiting += n
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # granted as it was cancelled
                self.in_flight -= n
            else:
                self._waiters.remove(entry)
            self._wake()
            raise
        finally:
            self.waiting -= n

    def _wake(self) -> None:
        while self._waiters and self.in_flight + self._waiters[0][0] <= self.max_in_flight:
            n, granted = self._waiters.popleft()
            self.in_flight += n
            granted.set_result(None)


class PushDispatcher:
    def __init__(self, *, store: Store, presence: OnlineCheck, pushers: Mapping[str, Pusher],
                 metrics: PushMetrics, queue: PushQueue | None = None,
                 gates: PushGates | None = None, policy: PushPolicy | None = None,
                 rng: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock  # wall clock, for mutes (unix ms)
        self._rng = rng  # the backoff's jitter
        self.presence = presence
        self.pushers = pushers
        self.metrics = metrics
        self.queue: PushQueue = queue if queue is not None else MemoryPushQueue()
        self.gates: PushGates = gates if gates is not None else MemoryPushGates()
        self.policy = policy or PushPolicy()
        self._slots = {p.provider: ProviderSlots(self.policy.max_in_flight,
                                                 self.policy.max_waiting)
                       for p in pushers.values()}
        self._workers: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._in_flight: set[str] = set()  # push ids being sent: their claims are kept alive
        self._busy = 0
        self._stopping = False
        self._config_logged: dict[tuple[str, str], float] = {}
        # jobs to or about an erased user, dropped when taken (set by the node's erasure
        # service; docs/privacy.md)
        self.drops: Callable[[PushJob], bool] = lambda job: False

    async def start(self) -> None:
        for pusher in self._unique_pushers():
            await pusher.start()
        await self.queue.start()
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(), name=f"push-worker-{i}")
                         for i in range(self.policy.workers)]
        self._spawn(self._keep_claims())

    async def close(self, drain_s: float = 2.0) -> None:
        """Let running jobs (and, in memory, queued ones) finish for up to `drain_s`; a
        durable queue keeps the rest for the other nodes."""
        deadline = time.monotonic() + drain_s
        idle = getattr(self.queue, "idle", None)
        if callable(idle):
            await _until(idle, deadline)
        self._stopping = True
        await _until(lambda: not self._busy, deadline)
        left_here = callable(idle) and not idle()  # a durable queue's jobs are not ours
        if left_here or self._busy:
            log.warning("pushes not finished at stop",
                        extra={"left": self.queue.depth(), "running": self._busy})
        await stop_tasks([*self._workers, *self._background])
        await self.queue.close()
        for pusher in self._unique_pushers():
            await pusher.close()

    def _unique_pushers(self) -> list[Pusher]:
        return list({id(p): p for p in self.pushers.values()}.values())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- called from the chat and match paths: a queue put, never a provider ----------------
    async def message(self, user: str, message: Message) -> None:
        await self._enqueue(PushJob.for_message(user, message))

    def message_soon(self, user: str, message: Message) -> None:
        """`message` from a task of its own, for callers that cannot wait (a broker event)."""
        self._spawn(self.message(user, message))

    async def match(self, user: str, match: MatchRecord, superlike: bool = False) -> None:
        """`superlike`: `user` received the super like that made this match."""
        await self._enqueue(PushJob.for_match(user, match, superlike))

    async def like(self, user: str, liker: str, ts: int) -> None:
        """`liker` super liked `user` (kind `like`, discreet: push/payload.py)."""
        await self._enqueue(PushJob.for_like(user, liker, ts))

    def skip_online(self) -> None:
        """The recipient has a live session on this node, which got the frame: no job is
        queued at all (a worker would only find them online), only its skip is counted."""
        self._skip("online")

    def delivered(self, user: str, match_id: str) -> None:
        """A device of `user` confirmed delivery in `match_id`: no push for a short while."""
        self._spawn(self.gates.mark_delivered(user, match_id, self.policy.delivered_window_s))

    async def _enqueue(self, job: PushJob, delay_s: float = 0.0,
                       provider: str = "queue") -> None:
        if not await self.queue.put(job, delay_s):
            self.metrics.push_shed.labels(provider).inc()
            return
        self.metrics.push_queue.set(self.queue.depth())

    # -- workers --------------------------------------------------------------------------
    async def _work(self) -> None:
        while not self._stopping:
            taken = await self.queue.take()
            self._busy += 1
            try:
                await self._run(taken.job)
            except StoreUnavailable:
                self.metrics.pushes.labels("any", "store_unavailable").inc()
                if taken.job.attempt + 1 < self.policy.max_attempts:
                    await self._enqueue(taken.job.retry(taken.job.devices),
                                        self._backoff(taken.job.attempt, None))
            except Exception:
                log.exception("push job failed")
            finally:
                self._busy -= 1
            await self.queue.done(taken)  # not when cancelled: a durable queue keeps it
            self.metrics.push_queue.set(self.queue.depth())

    async def _run(self, job: PushJob) -> None:
        if self.drops(job):
            return self._skip("erased")
        # a like has no live frame: an open app gets the push too
        if job.kind != "like" and (await self.presence.status([job.user]))[job.user].online:
            return self._skip("online")
        message_job = job.kind == "message"
        if message_job and await self.gates.recently_delivered(job.user, job.match_id):
            return self._skip("delivered")
        # before the burst's slot is taken: a muted or switched-off job must not use it up
        settings = await self.store.get_settings(job.user)
        if not settings.wants_push(PUSH_KIND_OF.get(job.kind, job.kind)):
            return self._skip("kind_off")
        if message_job:
            if await self.store.mute_until(job.user, job.match_id) > self._clock() * 1000:
                return self._skip("muted")
            first_try = job.attempt == 0 and not job.devices
            if first_try and not await self.gates.first_in_burst(job.user, job.match_id,
                                                                 self.policy.coalesce_s):
                return self._skip("coalesced")
        devices = await self.store.devices(job.user)
        if job.devices:
            devices = [d for d in devices if token_id(d.token) in job.devices]
        if not devices:
            return self._skip("no_device")
        previews = message_job and settings.push_previews
        message = job.message()
        badge = await unread_badge(self.store, job.user,
                                   conversations=self.policy.badge_conversations)
        if message_job:  # last, nearest the send: it may have been unsent
            stored = await self.store.get_message(job.match_id, job.message_id)
            if stored is not None and stored.deleted:  # (a row not found is no unsend)
                return self._skip("unsent")
            if previews and stored is not None:
                message = stored
        # Every device of the user at once: one batch per provider that takes batches
        # (FCM's send_each_async), one send each otherwise (APNS).
        batches: dict[int, tuple[Pusher, list[_Delivery]]] = {}
        for device in devices:
            pusher = self.pushers.get(device.platform)
            if pusher is None:
                self._skip("no_provider")
                continue
            device_id = token_id(device.token)  # once per device: it is a SHA-256
            delivery = _Delivery(device, device_id,
                                 self._render(job, device_id, message, previews, badge))
            batches.setdefault(id(pusher), (pusher, []))[1].append(delivery)
        sends: list[Awaitable[None]] = []
        for pusher, group in batches.values():
            if len(group) > 1 and isinstance(pusher, BatchPusher):
                sends.append(self._deliver_many(job, pusher, group))
            else:
                sends += [self._deliver_many(job, pusher, [one]) for one in group]
        await asyncio.gather(*sends)
        return None

    def _skip(self, reason: str) -> None:
        self.metrics.push_skipped_by[reason].inc()

    @staticmethod
    def _render(job: PushJob, device_id: str, message: Message, previews: bool,
                badge: int) -> Notification:
        if job.kind == "message":
            return message_notification(message, device_id, previews, badge)
        if job.kind == "superlike":
            return superlike_notification(job.match(), device_id, badge)
        if job.kind == "like":
            return like_notification(job.peer, job.ts, device_id, badge)
        return match_notification(job.match(), device_id, badge)

    async def _deliver_many(self, job: PushJob, pusher: Pusher,
                            group: list[_Delivery]) -> None:
        """Claim each push id, send the claimed ones (one batch, or one send), act on each
        answer. A push already sent is skipped; one another worker holds is looked at again
        once its claim may have lapsed."""
        provider = pusher.provider
        claims = await asyncio.gather(*(self._claim(job, provider, d) for d in group))
        claimed = [d for d, ok in zip(group, claims, strict=True) if ok]
        if not claimed:
            return
        slots = self._slots[provider]
        if slots.full():
            self.metrics.push_shed.labels(provider).inc(len(claimed))
            await asyncio.gather(*(self.gates.finish(d.notification.push_id, final=False)
                                   for d in claimed))
            return
        push_ids = [d.notification.push_id for d in claimed]
        self._in_flight.update(push_ids)
        try:
            results = await self._send(pusher, slots, claimed)
        finally:
            self._in_flight.difference_update(push_ids)
        await asyncio.gather(*(self._settle(job, provider, d, result)
                               for d, result in zip(claimed, results, strict=True)))

    async def _claim(self, job: PushJob, provider: str, delivery: _Delivery) -> bool:
        claim, left_s = await self.gates.claim(delivery.notification.push_id,
                                               self.policy.claim_s)
        if claim is Claim.SENT:
            self._skip("duplicate")
            return False
        if claim is Claim.BUSY:  # another worker holds it; look again once it may be free
            await self._enqueue(job.retry((delivery.device_id,), job.attempt), left_s + 0.1,
                                provider)
            return False
        return True

    async def _settle(self, job: PushJob, provider: str, delivery: _Delivery,
                      result: PushResult) -> None:
        device, device_id, notification = delivery
        self.metrics.pushes.labels(provider, result.outcome.value).inc()
        if result.outcome is not Outcome.SENT:
            self.metrics.push_failures.labels(provider, reason_label(result.reason)).inc()
        await self.gates.finish(notification.push_id, final=result.outcome is not Outcome.RETRY)
        if result.outcome is Outcome.RETRY:
            if job.attempt + 1 < self.policy.max_attempts:
                await self._enqueue(job.retry((device_id,)),
                                    self._backoff(job.attempt, result.retry_after_s), provider)
            else:
                self.metrics.pushes.labels(provider, "gave_up").inc()
        elif result.outcome is Outcome.DEAD_TOKEN:
            await self.store.delete_device(device.user, device.token)
            log.info("pruned a dead push token",
                     extra={"provider": provider, "device": device_id, "reason": result.reason})
        elif result.outcome is Outcome.CONFIG_ERROR:
            self._config_error(provider, result.reason, device_id)
        elif result.outcome is Outcome.REJECTED:
            log.warning("push rejected by the provider",
                        extra={"provider": provider, "device": device_id,
                               "reason": result.reason, "kind": notification.kind})

    async def _send(self, pusher: Pusher, slots: ProviderSlots,
                    group: list[_Delivery]) -> list[PushResult]:
        """One send, or one batch (`send_many`) for several devices; a result each."""
        async with slots.slot(len(group)):
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.policy.send_timeout_s + 1):
                    if len(group) == 1:
                        return [await pusher.send(group[0].device, group[0].notification)]
                    assert isinstance(pusher, BatchPusher)
                    results = await pusher.send_many([d.device for d in group],
                                                     group[0].notification)
                    if len(results) != len(group):
                        raise RuntimeError("send_many answered for another number of devices")
                    return results
            except TimeoutError:
                return [PushResult(Outcome.RETRY, "timeout")] * len(group)
            except Exception:  # an adapter must not raise; if it does, retry later
                log.exception("push adapter raised", extra={"provider": pusher.provider})
                return [PushResult(Outcome.RETRY, "adapter error")] * len(group)
            finally:
                self.metrics.push_send_seconds.labels(pusher.provider).observe(
                    time.perf_counter() - started)

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """The provider's Retry-After when given, else exponential backoff from the base
        with full jitter: retries of a burst that failed together spread out instead of
        hitting the provider again all at the same instant."""
        if retry_after_s is not None:
            return max(0.0, retry_after_s)
        return full_jitter(attempt, self.policy.retry_base_s, self.policy.retry_max_s,
                           self._rng)

    def _config_error(self, provider: str, reason: str, device_id: str) -> None:
        self.metrics.push_config_errors.labels(provider, reason_label(reason)).inc()
        now = time.monotonic()
        key = (provider, reason)
        if now - self._config_logged.get(key, -CONFIG_ERROR_LOG_EVERY_S) >= \
                CONFIG_ERROR_LOG_EVERY_S:
            self._config_logged[key] = now
            log.error("push provider configuration error: check the %s credentials and "
                      "topic (token kept)", provider,
                      extra={"provider": provider, "reason": reason, "device": device_id})

    async def _keep_claims(self) -> None:
        """Extend the send claims of pushes in flight, so a slow provider on a living node
        is not mistaken for a dead node."""
        interval = max(0.1, self.policy.claim_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.gates.refresh(list(self._in_flight), self.policy.claim_s)
            except Exception:
                log.exception("push claim refresh failed")
