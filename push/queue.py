"""Push jobs and the queue they wait in: in memory on one machine, a Redis Stream in a cluster.

A job names who to notify about what (a message, a match, a super like), never a device
token and never a message body: the worker reads devices and, only when the user wants
previews, the message from the store. So a job is small, serialisable (msgpack) and safe to
keep in Redis.

The queue is at-least-once: `take()` hands out a job that stays owned until `done()`; a
retry is a new job `put()` with a delay. The Redis queue may hand a job out again after a
crash, so the dispatcher deduplicates sends by push id (`PushGates.claim`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import msgpack

from runtime.tasks import wait_event
from storage import MatchRecord, Message

JobKind = Literal["message", "match", "superlike", "like"]
JOB_KINDS = ("message", "match", "superlike", "like")


@dataclass(frozen=True, slots=True)
class PushJob:
    """Notify `user` about one message or match. `devices` (token ids) narrows a retry to
    the devices that asked for one; empty means every registered device."""

    user: str
    kind: JobKind
    match_id: str
    message_id: int = 0
    sender: str = ""
    ts: int = 0
    peer: str = ""  # the other member of a match
    attempt: int = 0
    devices: tuple[str, ...] = ()

    @classmethod
    def for_message(cls, user: str, message: Message) -> PushJob:
        return cls(user=user, kind="message", match_id=message.match_id,
                   message_id=message.id, sender=message.sender, ts=message.ts)

    @classmethod
    def for_match(cls, user: str, match: MatchRecord, superlike: bool = False) -> PushJob:
        return cls(user=user, kind="superlike" if superlike else "match", match_id=match.id,
                   ts=match.ts, peer=match.peer_of(user))

    @classmethod
    def for_like(cls, user: str, liker: str, ts: int) -> PushJob:
        """`liker` super liked `user` at `ts` (no match yet): the liker stays in the job,
        never in the notification."""
        return cls(user=user, kind="like", match_id="", ts=ts, peer=liker)

    def retry(self, devices: tuple[str, ...], attempt: int | None = None) -> PushJob:
        """The same notification again, for `devices` only (attempt counted by default)."""
        return replace(self, devices=devices,
                       attempt=self.attempt + 1 if attempt is None else attempt)

    def message(self) -> Message:
        """The message as far as the job knows it (no body: read from the store if needed)."""
        return Message(match_id=self.match_id, id=self.message_id, sender=self.sender,
                       client_id="", ts=self.ts)

    def match(self) -> MatchRecord:
        users = tuple(sorted((self.user, self.peer)))
        return MatchRecord(id=self.match_id, users=users, ts=self.ts,  # type: ignore[arg-type]
                           superlike=self.kind == "superlike")


_FIELDS = ("user", "kind", "match_id", "message_id", "sender", "ts", "peer", "attempt",
           "devices")


def names(job: PushJob, user: str) -> bool:
    """The job is to `user` or about them (their message, their match): an erased user's
    jobs, which erasure removes and the dispatcher drops."""
    return user in (job.user, job.sender, job.peer)


def pack_job(job: PushJob) -> bytes:
    """The job as msgpack (a short list, in `_FIELDS` order)."""
    out: bytes = msgpack.packb([getattr(job, name) for name in _FIELDS[:-1]]
                               + [list(job.devices)], use_bin_type=True)
    return out


def unpack_job(data: bytes) -> PushJob:
    """A job from `pack_job`; ValueError if `data` is not one."""
    try:
        values = msgpack.unpackb(data, raw=False)
        if not isinstance(values, list) or len(values) != len(_FIELDS):
            raise ValueError("not a push job")
        fields: dict[str, Any] = dict(zip(_FIELDS, values, strict=True))
        fields["devices"] = tuple(fields["devices"])
        if fields["kind"] not in JOB_KINDS:
            raise ValueError(f"unknown push job kind {fields['kind']!r}")
        return PushJob(**fields)
    except (TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a push job: {exc}") from None


@dataclass(frozen=True, slots=True)
class Taken:
    """A job handed out by `take()`, with the queue's own handle for `done()`."""

    job: PushJob
    handle: Any = None


class PushQueue(Protocol):
    """Where push jobs wait for a worker. Bounded: past `max_jobs` a put is refused."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop handing out jobs. Jobs not `done()` stay queued where the queue is durable."""

    async def put(self, job: PushJob, delay_s: float = 0.0) -> bool:
        """Queue `job`, to be taken no earlier than `delay_s` from now. False if the queue
        is full or unreachable (the caller counts the shed push)."""

    async def take(self) -> Taken:
        """Wait for a due job. It is owned by the caller until `done()`; a durable queue
        hands it to another consumer if the owner stops without calling `done()`."""

    async def done(self, taken: Taken) -> None:
        """The job is finished (sent, given up, or re-queued as a retry)."""

    def depth(self) -> int:
        """Jobs waiting, as last known (for the queue-depth gauge)."""


class MemoryPushQueue:
    """The embedded default: a deque of due jobs and a heap of delayed ones, in-process.
    Jobs do not survive the process; nothing else could take them over anyway."""

    def __init__(self, max_jobs: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_jobs = max_jobs
        self.clock = clock
        self._ready: deque[PushJob] = deque()
        self._delayed: list[tuple[float, int, PushJob]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._owned = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def put(self, job: PushJob, delay_s: float = 0.0) -> bool:
        if self.depth() + self._owned >= self.max_jobs:
            return False
        if delay_s > 0:
            heapq.heappush(self._delayed, (self.clock() + delay_s, next(self._seq), job))
        else:
            self._ready.append(job)
        self._changed.set()
        return True

    async def take(self) -> Taken:
        while True:
            now = self.clock()
            while self._delayed and self._delayed[0][0] <= now:
                self._ready.append(heapq.heappop(self._delayed)[2])
            if self._ready:
                self._owned += 1
                return Taken(self._ready.popleft())
            self._changed.clear()
            wait = self._delayed[0][0] - now if self._delayed else None
            await wait_event(self._changed, wait)

    async def done(self, taken: Taken) -> None:
        self._owned -= 1
        self._changed.set()

    def depth(self) -> int:
        return len(self._ready) + len(self._delayed)

    async def forget(self, drop: Callable[[PushJob], bool]) -> int:
        """Remove the waiting jobs `drop` picks (an erased user's); how many."""
        before = self.depth()
        self._ready = deque(job for job in self._ready if not drop(job))
        self._delayed = [entry for entry in self._delayed if not drop(entry[2])]
        heapq.heapify(self._delayed)
        return before - self.depth()

    def idle(self) -> bool:
        """Nothing waiting and nothing owned (for a drain at stop)."""
        return self.depth() == 0 and self._owned == 0

