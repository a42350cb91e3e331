"""Fan-out across nodes through Redis pub/sub, one channel per user.

An event for a user is published on `{prefix}u:{user}`. A node subscribes to that channel only
while it holds a connection of the user, so each event reaches exactly the nodes that can
deliver it (no firehose). On Redis Cluster the channels are sharded (SSUBSCRIBE/SPUBLISH): a
message travels only to the shard that owns its slot, and fan-out scales with the shards.

Redis being down must not fail the chat path: a publish that fails is dropped and counted
(durable state and `sync` recover it), the subscription comes back by itself with backoff,
and a canary each node sends to itself tells readiness whether events flow right now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable
from itertools import groupby
from operator import itemgetter
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from protocol.codec import Frame
from runtime.backoff import Backoff
from runtime.redis_batch import TurnBatcher
from runtime.tasks import stop_tasks, wait_event
from server.backends.broker import Control, Deliver, Reach, Undelivered
from server.backends.redis_pubsub import PubSubLink, open_link
from server.metrics import Metrics

log = logging.getLogger("rendezvous.broker")

BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
RESUBSCRIBE_TIMEOUT_S = 30.0
PUBLISH_CHUNK = 1000  # messages per batcher call when one event goes to many users


class RedisBroker:
    """The cluster `Broker` (see `server.backends.broker`) on the node's shared Redis client.

    `sharded=True` needs a `RedisCluster`. The client must not decode responses: payloads
    are msgpack bytes. Publishes go through `batcher` (the node's shared one, or one of its
    own), so they share the turn's pipeline with the limits, claims and presence writes."""

    def __init__(self, client: Redis | RedisCluster, *, node: str, prefix: str,
                 sharded: bool, metrics: Metrics, canary_interval_s: float = 1.0,
                 healthy_within_s: float = 3.0, confirm_timeout_s: float = 2.0,
                 publish_timeout_s: float = 1.0, batcher: TurnBatcher | None = None) -> None:
        if client.get_encoder().decode_responses:
            raise ValueError("RedisBroker needs a Redis client with decode_responses=False")
        if sharded != isinstance(client, RedisCluster):
            raise ValueError("RedisBroker: sharded=True goes with a RedisCluster client, "
                             "sharded=False with a Redis client")
        self.client = client
        self.node = node
        self.sharded = sharded
        self.metrics = metrics
        self.dropped = 0  # undecodable messages received and ignored
        self._user_prefix = f"{prefix}u:"
        self._control_channel = f"{prefix}control"
        self._canary_channel = f"{prefix}canary:{node}"
        self._canary_interval_s = canary_interval_s
        self._healthy_within_s = healthy_within_s
        self._confirm_timeout_s = confirm_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._batcher = batcher or TurnBatcher(client, timeout_s=publish_timeout_s)
        self._publish_command = "SPUBLISH" if sharded else "PUBLISH"
        self._deliver: Deliver | None = None
        self._undelivered: Undelivered | None = None
        self._control: Control | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Subscriptions: what this node wants, and the link that has it (None while down).
        self._users: set[str] = set()
        self._link: PubSubLink | None = None
        self._linked_at = 0.0
        self._send_lock = asyncio.Lock()  # keeps (un)subscribe commands in request order
        self._changes: list[tuple[bool, str]] = []  # this turn's (subscribe?, channel)
        self._changes_written: asyncio.Future[None] | None = None
        self._changes_task: asyncio.Task[None] | None = None
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._kick = asyncio.Event()  # the link looks dead although no error was seen
        self._last_canary = -math.inf
        self._first_canary = asyncio.Event()
        self._canary_now = asyncio.Event()  # a new link wants its canary without waiting
        self._link_failing = False
        self._publish_failing = False
        self._publish_fallbacks = metrics.redis_fallbacks.labels("publish")

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, deliver: Deliver, control: Control,
                    undelivered: Undelivered | None = None) -> None:
        """Subscribe, and wait (bounded) for this node's first canary, so that a node that
        has started is ready unless Redis is unreachable."""
        self._deliver, self._control = deliver, control
        self._undelivered = undelivered
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._keep_subscribed(), name="broker-subscriber"),
                       loop.create_task(self._canary(), name="broker-canary")]
        await wait_event(self._first_canary, self._healthy_within_s)

    async def close(self) -> None:
        """Stop reading and publishing; the shared client stays open (the node closes it)."""
        await stop_tasks([*self._tasks, *([self._changes_task] if self._changes_task else [])])
        self._tasks, self._changes_task = [], None
        if self._changes_written is not None and not self._changes_written.done():
            self._changes_written.set_result(None)
        self._changes, self._changes_written = [], None
        self._deliver = self._control = None

    def healthy(self) -> bool:
        return (self._link is not None
                and time.monotonic() - self._last_canary <= self._healthy_within_s)

    # -- subscriptions --------------------------------------------------------------------
    async def subscribe(self, user: str) -> None:
        """Wait until Redis confirms (bounded by `confirm_timeout_s`); while Redis is down,
        only remember the user: the next link subscribes to everyone remembered. The
        subscribes and unsubscribes of one loop turn are one command each (a reconnect
        storm's thousands of connects are a few writes, not one each)."""
        self._users.add(user)
        if self._link is None:
            return
        channel = self._user_prefix + user
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, []).append(confirmed)
        self._change(True, channel)
        await asyncio.wait((confirmed,), timeout=self._confirm_timeout_s)

    async def unsubscribe(self, user: str) -> None:
        """Return once the UNSUBSCRIBE is written (not confirmed)."""
        self._users.discard(user)
        if self._link is None:
            return
        await asyncio.shield(self._change(False, self._user_prefix + user))

    def _change(self, subscribe: bool, channel: str) -> asyncio.Future[None]:
        """Queue a (un)subscribe for this turn's write; the future is done once written."""
        self._changes.append((subscribe, channel))
        if self._changes_written is None:
            loop = asyncio.get_running_loop()
            self._changes_written = loop.create_future()
            self._changes_task = loop.create_task(self._write_changes(),
                                                  name="broker-subscriptions")
        return self._changes_written

    async def _write_changes(self) -> None:
        """Write the turn's changes in order, a run of subscribes (or unsubscribes) as one
        command; after the link's own resubscribe if one is under way (the lock)."""
        async with self._send_lock:
            changes, self._changes = self._changes, []
            written, self._changes_written = self._changes_written, None
            link = self._link
            try:
                if link is not None:
                    for subscribe, run in groupby(changes, key=itemgetter(0)):
                        channels = [channel for _, channel in run]
                        if subscribe:
                            await link.subscribe(channels)
                        else:
                            await link.unsubscribe(channels)
            except Exception:  # the link is failing; its successor subscribes from _users
                self._kick.set()
            finally:
                if written is not None and not written.done():
                    written.set_result(None)

    async def _keep_subscribed(self) -> None:
        """Hold a live link; when it fails, open a fresh one and subscribe everything again."""
        backoff = Backoff(BACKOFF_FIRST_S, BACKOFF_MAX_S)  # full jitter: nodes spread out
        linked_before = False
        while True:
            link = open_link(self.client, self.sharded)
            try:
                await link.connect()
                async with self._send_lock:  # (un)subscribes wait, then go to the new link
                    self._kick.clear()
                    self._link, self._linked_at = link, math.inf  # no kick while subscribing
                    channels = [self._control_channel, self._canary_channel,
                                *(self._user_prefix + user for user in self._users)]
                    async with asyncio.timeout(RESUBSCRIBE_TIMEOUT_S):
                        await link.subscribe(channels)
                    self._linked_at = time.monotonic()
                self._canary_now.set()
                if linked_before:
                    self.metrics.broker_resubscribes.inc()
                if self._link_failing:
                    log.warning("broker subscription restored (%d users)", len(channels) - 2)
                self._link_failing, linked_before = False, True
                backoff.reset()
                await self._read(link)
            except Exception as exc:
                if not self._link_failing:
                    log.warning("broker subscription lost, reconnecting: %s",
                                type(exc).__name__)
                    self._link_failing = True
            finally:
                self._link = None
                self._release_confirmations()
                with contextlib.suppress(Exception):
                    await link.close()
            await asyncio.sleep(backoff.next())

    async def _read(self, link: PubSubLink) -> None:
        """Run the link until it fails or is kicked; either way it is replaced."""
        reader = asyncio.ensure_future(link.run(self._on_event))
        kicked = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait((reader, kicked), return_when=asyncio.FIRST_COMPLETED)
        finally:
            await stop_tasks((reader, kicked))
        error = None if reader.cancelled() else reader.exception()
        raise error or ConnectionError("subscription went silent")

    def _release_confirmations(self) -> None:
        waiting, self._confirmations = self._confirmations, {}
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    # -- reading --------------------------------------------------------------------------
    def _on_event(self, kind: str, channel: str, data: Any) -> None:
        if kind == "subscribe":
            for future in self._confirmations.pop(channel, ()):
                if not future.done():
                    future.set_result(None)
        elif kind != "message":
            return
        elif channel.startswith(self._user_prefix):
            self._on_user_event(channel[len(self._user_prefix):], data)
        elif channel == self._canary_channel:
            self._last_canary = time.monotonic()
            self._first_canary.set()
        elif channel == self._control_channel:
            self._on_control(data)

    def _on_user_event(self, user: str, data: Any) -> None:
        try:
            frame, skip_session = msgpack.unpackb(data)
            if not isinstance(frame, dict) or not isinstance(skip_session, str | None):
                raise ValueError("not [frame, skip_session]")
        except Exception:
            self._drop()
            return
        if self._deliver is not None:
            try:
                if not self._deliver(user, frame, skip_session) and \
                        self._undelivered is not None and frame.get("t") == "msg" and \
                        frame.get("from") != user:
                    self._undelivered(user, frame)
            except Exception:  # a bug in the hub must not stop the reader
                log.exception("delivering a broker event failed")

    def _on_control(self, data: Any) -> None:
        try:
            message = msgpack.unpackb(data)
            if not isinstance(message, dict):
                raise ValueError("not a map")
        except Exception:
            self._drop()
            return
        if self._control is not None:
            try:
                self._control(message)
            except Exception:
                log.exception("applying a control message failed")

    def _drop(self) -> None:
        self.dropped += 1
        self.metrics.broker_dropped.inc()
        if self.dropped & (self.dropped - 1) == 0:  # 1st, 2nd, 4th, ...: visible, not a flood
            log.warning("dropped an undecodable broker message (%d so far)", self.dropped)

    # -- canary ---------------------------------------------------------------------------
    async def _canary(self) -> None:
        """Publish to ourselves every interval; readiness needs it back. A link that is up
        but no longer hears its canary is replaced (a half-open connection raises nothing)."""
        while True:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._canary_interval_s):
                    await self._publish_one(self._canary_channel, msgpack.packb(time.time()))
            silent_for = time.monotonic() - max(self._last_canary, self._linked_at)
            if self._link is not None and silent_for > self._healthy_within_s:
                self._kick.set()
            await wait_event(self._canary_now, self._canary_interval_s)
            self._canary_now.clear()

    async def _publish_one(self, channel: str, payload: bytes) -> None:
        if isinstance(self.client, RedisCluster):  # i.e. self.sharded (checked at __init__)
            await self.client.spublish(channel, payload)
        else:
            await self.client.publish(channel, payload)

    # -- publishing -----------------------------------------------------------------------
    async def publish(self, users: Iterable[str], frame: Frame,
                      skip_session: str | None = None) -> Reach:
        """Queue one message per user for the next pipeline and wait until it was sent (or
        dropped). Never raises for Redis: failures are logged once per outage and counted
        in `redis_fallbacks{what="publish"}`, one per dropped message. The reach is what
        Redis answered: the number of links (nodes) subscribed to each user's channel,
        exact for PUBLISH on one server and for SPUBLISH on a shard."""
        payload = msgpack.packb([frame, skip_session])
        channels = [self._user_prefix + user for user in users]
        if not channels:
            return []
        return await self._send(channels, payload)

    async def publish_control(self, message: Frame) -> None:
        await self._send([self._control_channel], msgpack.packb(message))

    async def _send(self, channels: list[str], payload: bytes) -> Reach:
        """Queue one PUBLISH per channel on the batcher: everything published in one loop
        turn (or during the previous batch's round trip) is one pipeline, in order."""
        started = time.perf_counter()
        command = self._publish_command
        reach: Reach = None
        try:
            if self._publish_failing and self._link is None:
                raise ConnectionError("Redis still unreachable")  # fail fast while down
            batches = [self._batcher.call_many([(command, channel, payload)
                                                for channel in channels[i:i + PUBLISH_CHUNK]])
                       for i in range(0, len(channels), PUBLISH_CHUNK)]
            replies = [await batches[0]] if len(batches) == 1 else \
                await asyncio.gather(*batches)
            counts = [r for part in replies for r in part]
            if all(isinstance(r, int) for r in counts):  # else an error answered in place
                reach = counts
        except Exception as exc:
            self._publish_fallbacks.inc(len(channels))
            if not self._publish_failing:
                self._publish_failing = True
                log.warning("broker publish failed, dropping events until Redis is "
                            "back: %s", type(exc).__name__)
        else:
            if self._publish_failing:
                self._publish_failing = False
                log.warning("broker publish recovered")
        self.metrics.broker_publish.observe(time.perf_counter() - started)
        return reach
