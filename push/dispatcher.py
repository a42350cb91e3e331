"""Decides who gets a push and hands it to the provider, off the hot path.

The chat path only enqueues (never awaits a provider). A worker pool takes jobs from a
bounded queue, skips users who are online or whose device just confirmed delivery, renders
a discreet notification per device and acts on the provider's answer: dead tokens are
pruned, temporary failures retried with backoff, configuration errors counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from push.base import Notification, Outcome, Pusher, PushResult
from push.payload import match_notification, message_notification
from push.recorder import token_id
from storage import Device, MatchRecord, Message, Store, StoreUnavailable

log = logging.getLogger("rendezvous.push")


class OnlineCheck(Protocol):
    async def status(self, users: Any) -> Mapping[str, Any]: ...


class PushMetrics(Protocol):
    pushes: Any
    push_queue: Any


@dataclass(frozen=True, slots=True)
class Job:
    user: str
    message: Message | None = None
    match: MatchRecord | None = None


class PushDispatcher:
    def __init__(self, *, store: Store, presence: OnlineCheck, pushers: Mapping[str, Pusher],
                 metrics: PushMetrics, max_queue: int = 10_000, workers: int = 4,
                 max_attempts: int = 3, base_delay_s: float = 0.5,
                 delivered_window_s: float = 10.0) -> None:
        self.store = store
        self.presence = presence
        self.pushers = pushers
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.delivered_window_s = delivered_window_s
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self._workers_wanted = workers
        self._workers: list[asyncio.Task[None]] = []
        self._delivered: dict[tuple[str, str], float] = {}

    async def start(self) -> None:
        for pusher in set(self.pushers.values()):
            await pusher.start()
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work()) for _ in range(self._workers_wanted)]

    async def close(self, drain_s: float = 2.0) -> None:
        """Give queued pushes a moment, then stop."""
        try:
            await asyncio.wait_for(self._queue.join(), drain_s)
        except TimeoutError:
            log.warning("push queue not drained at stop", extra={"left": self._queue.qsize()})
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for pusher in set(self.pushers.values()):
            await pusher.close()

    # -- called from the chat and match paths: never wait -------------------------------
    async def message(self, user: str, message: Message) -> None:
        self._enqueue(Job(user, message=message))

    async def match(self, user: str, match: MatchRecord) -> None:
        self._enqueue(Job(user, match=match))

    def delivered(self, user: str, match_id: str) -> None:
        """A device of `user` confirmed delivery in `match_id`: no push for a short while."""
        self._delivered[(user, match_id)] = time.monotonic()
        if len(self._delivered) > 100_000:
            self._delivered.clear()

    def _enqueue(self, job: Job) -> None:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.pushes.labels("any", "shed").inc()
            return
        self.metrics.push_queue.set(self._queue.qsize())

    # -- workers --------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._handle(job)
            except StoreUnavailable:
                self.metrics.pushes.labels("any", "store_unavailable").inc()
            except Exception:
                log.exception("push job failed")
            finally:
                self._queue.task_done()
                self.metrics.push_queue.set(self._queue.qsize())

    async def _handle(self, job: Job) -> None:
        status = (await self.presence.status([job.user]))[job.user]
        if status.online:
            return  # a live socket got the frame
        match_id = job.message.match_id if job.message else None
        if match_id is not None:
            stamp = self._delivered.get((job.user, match_id))
            if stamp is not None and time.monotonic() - stamp < self.delivered_window_s:
                return
        devices = await self.store.devices(job.user)
        if not devices:
            return
        previews = (await self.store.get_settings(job.user)).push_previews
        for device in devices:
            pusher = self.pushers.get(device.platform)
            if pusher is None:
                continue
            notification = self._render(job, device, previews)
            await self._deliver(pusher, device, notification)

    @staticmethod
    def _render(job: Job, device: Device, previews: bool) -> Notification:
        if job.message is not None:
            return message_notification(job.message, token_id(device.token), previews)
        assert job.match is not None
        return match_notification(job.match, token_id(device.token))

    async def _deliver(self, pusher: Pusher, device: Device,
                       notification: Notification) -> PushResult:
        result = PushResult(Outcome.RETRY, "not attempted")
        for attempt in range(self.max_attempts):
            result = await pusher.send(device, notification)
            self.metrics.pushes.labels(pusher.provider, result.outcome.value).inc()
            if result.outcome is not Outcome.RETRY or attempt + 1 == self.max_attempts:
                break  # no sleep after the last attempt: it would only hold the worker
            delay = result.retry_after_s or self.base_delay_s * (2 ** attempt)
            await asyncio.sleep(delay)
        if result.outcome is Outcome.DEAD_TOKEN:
            await self.store.delete_device(device.user, device.token)
        elif result.outcome is Outcome.CONFIG_ERROR:
            log.error("push provider configuration error",
                      extra={"provider": pusher.provider, "reason": result.reason})
        return result
