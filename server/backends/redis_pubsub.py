"""A disposable pub/sub link to Redis: SUBSCRIBE on a standalone server, SSUBSCRIBE per shard
on a Redis Cluster.

The broker owns what should be subscribed and replaces a link wholesale when it fails, instead
of trusting redis-py's silent reconnects: a silent reconnect re-subscribes only what that
connection had confirmed, losing subscriptions asked for while it was down. So a link never
retries, and every connection error ends it. Both kinds report the same events to the
broker: `(kind, channel, data)` with kind "message", "subscribe" or "unsubscribe".
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from runtime.redis_batch import pack_commands
from runtime.tasks import stop_tasks

OnEvent = Callable[[str, str, Any], None]

_KINDS = {"message": "message", "smessage": "message", "subscribe": "subscribe",
          "ssubscribe": "subscribe", "unsubscribe": "unsubscribe",
          "sunsubscribe": "unsubscribe"}
_RAW_KINDS = {name.encode(): kind for name, kind in _KINDS.items()}
_CHUNK = 500  # channels per SUBSCRIBE command when a whole node re-subscribes
_POLL_S = 1.0  # how often a shard reader looks whether its shard link was dropped


class PubSubLink(Protocol):
    async def connect(self) -> None:
        """Open the connection(s); raises if Redis cannot be reached."""

    async def subscribe(self, channels: Sequence[str]) -> None:
        """Send the subscription; Redis confirms later with a "subscribe" event per channel."""

    async def unsubscribe(self, channels: Sequence[str]) -> None: ...

    async def run(self, on_event: OnEvent) -> None:
        """Read and report events until a connection fails (raises) or the task is cancelled.
        `on_event` is called synchronously, in the order Redis sent the events."""

    async def close(self) -> None: ...


def open_link(client: Redis | RedisCluster, sharded: bool) -> PubSubLink:
    if sharded:
        assert isinstance(client, RedisCluster), "sharded pub/sub needs a RedisCluster client"
        return ShardedLink(client)
    assert isinstance(client, Redis), "plain pub/sub needs a Redis client"
    return PlainLink(client)


def _report(message: dict[str, Any] | None, on_event: OnEvent) -> None:
    if message is None:
        return
    kind = _KINDS.get(str(message["type"]))
    channel = message["channel"]
    if kind is None or channel is None:
        return
    if isinstance(channel, bytes):
        channel = channel.decode("utf-8", "replace")
    on_event(kind, str(channel), message["data"])


class PlainLink:
    """One dedicated connection to a standalone server, read without redis-py's PubSub:
    each reply is parsed once (hiredis) into `[kind, channel, data]` and reported as it is,
    with none of PubSub's per-message bookkeeping, health checks or dict building."""

    def __init__(self, client: Redis) -> None:
        pool = client.connection_pool
        # RESP2: a message is a plain array. Under RESP3 (redis-py's default) each is a push
        # that the parser hands to a handler logging str(message) at debug level first.
        self._conn: Any = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})

    async def connect(self) -> None:
        await self._conn.connect()
        # The connection is ours until close(): make it fail fast instead of reconnecting.
        self._conn.retry = Retry(NoBackoff(), 0)

    async def subscribe(self, channels: Sequence[str]) -> None:
        for start in range(0, len(channels), _CHUNK):
            await self._send(("SUBSCRIBE", *channels[start:start + _CHUNK]))

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        if channels:  # no arguments would mean "all channels"
            await self._send(("UNSUBSCRIBE", *channels))

    async def _send(self, command: tuple[str, ...]) -> None:
        # No health check: its PING reply would be read by run(), not by us.
        await self._conn.send_packed_command(pack_commands([command]), check_health=False)

    async def run(self, on_event: OnEvent) -> None:
        conn = self._conn
        kinds = _RAW_KINDS
        while True:
            reply = await conn.read_response(timeout=math.inf)  # the canary watches it
            kind = kinds.get(reply[0]) if isinstance(reply, list) and len(reply) == 3 else None
            if kind is not None:
                channel = reply[1]
                on_event(kind, channel.decode("utf-8", "replace")
                         if isinstance(channel, bytes) else str(channel), reply[2])

    async def close(self) -> None:
        await self._conn.disconnect()


class ShardedLink:
    """SSUBSCRIBE through redis-py's ClusterPubSub, which holds one connection per shard
    node that has subscriptions (created on a node's first channel, dropped after its last);
    one reader task per node connection, so a quiet shard never delays a busy one."""

    def __init__(self, client: RedisCluster) -> None:
        self._cluster = client
        self._pubsub: ClusterPubSub = client.pubsub()
        self._readers: dict[str, tuple[PubSub, asyncio.Task[None]]] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    async def connect(self) -> None:
        await self._cluster.initialize()  # the slot map, to route each channel to its shard

    async def subscribe(self, channels: Sequence[str]) -> None:
        if channels:
            await self._pubsub.ssubscribe(*channels)
            self._changed.set()

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        if channels:
            await self._pubsub.sunsubscribe(*channels)

    async def run(self, on_event: OnEvent) -> None:
        try:
            while True:
                self._changed.clear()
                self._start_readers(on_event)
                changed = asyncio.ensure_future(self._changed.wait())
                tasks = {task for _, task in self._readers.values()}
                try:  # also wake up now and then: slot migrations add connections too
                    await asyncio.wait({changed, *tasks}, timeout=_POLL_S,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                for name, (_, task) in list(self._readers.items()):
                    if task.done():
                        del self._readers[name]
                        task.result()  # a failed shard connection ends the link
        finally:
            await self._stop_readers()

    def _start_readers(self, on_event: OnEvent) -> None:
        for name, pubsub in list(self._pubsub.node_pubsub_mapping.items()):
            current = self._readers.get(name)
            if current is not None and current[0] is pubsub:
                continue
            if current is not None:  # the node's connection was replaced: one reader each
                current[1].cancel()
                self._retired.add(current[1])
                current[1].add_done_callback(self._forget)
            task = asyncio.ensure_future(self._read(name, pubsub, on_event))
            self._readers[name] = (pubsub, task)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._retired.discard(task)
        if not task.cancelled():
            task.exception()  # a replaced connection's last error is of no interest

    async def _read(self, name: str, pubsub: PubSub, on_event: OnEvent) -> None:
        node = self._cluster.get_node(node_name=name)
        if node is None:
            raise ConnectionError(f"shard {name} left the cluster")
        # get_sharded_message keeps ClusterPubSub's bookkeeping (and closes the node's
        # connection after its last SUNSUBSCRIBE is confirmed), so read through it.
        while self._pubsub.node_pubsub_mapping.get(name) is pubsub:
            if pubsub.connection is None:  # created by a slot migration, not connected yet
                await asyncio.sleep(0.05)
                continue
            message = await self._pubsub.get_sharded_message(target_node=node,
                                                              timeout=_POLL_S)
            _report(message, on_event)

    async def _stop_readers(self) -> None:
        tasks = [*(task for _, task in self._readers.values()), *self._retired]
        self._readers.clear()
        await stop_tasks(tasks)

    async def close(self) -> None:
        await self._stop_readers()
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
