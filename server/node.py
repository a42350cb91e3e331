"""A node composed once from its config: store, broker, presence, push, gateway, HTTP API.

`Node.start()` brings the parts up in dependency order. `Node.stop()` drains: it stops
accepting, fails readiness, tells clients in jittered batches to reconnect elsewhere (a
`reconnect` frame, then close 1012), lets in-flight requests finish, flushes pushes and
closes the store, all within `drain_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from protocol import server_frames as sf
from protocol.errors import CloseCode
from protocol.ids import IdGenerator
from push.dispatcher import PushDispatcher
from runtime.tasks import stop_tasks
from server.auth import Authenticator
from server.backends import Backends, build_backends
from server.caches import Caches
from server.chat import ChatService
from server.config import Config
from server.connection_guard import ConnectionGuard, PresenceDamper
from server.gateway import LISTEN_BACKLOG, Gateway
from server.http_api import create_app
from server.hub import Hub
from server.matching import MatchService
from server.metrics import Metrics, package_version, timed_store
from server.push_setup import build_push_queue, build_pushers, push_policy
from server.startup import redis_down, wait_for_redis, with_retries
from storage import Store, StoreUnavailable
from storage.sqlite import SqliteStore

log = logging.getLogger("rendezvous.node")


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our loop: the node, not uvicorn, owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


PRESENCE_REFRESH_SLICE = 200  # sessions refreshed per step of the spread-out refresh


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; with `reuse_port` several processes share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def build_store(config: Config) -> Store:
    """Cassandra when contact points are configured, else the SQLite file of the data dir."""
    if config.cassandra_contact_points:
        from storage.cassandra import CassandraStore

        dc = config.cassandra_datacenter
        replication: dict[str, object] = (
            {"class": "NetworkTopologyStrategy", dc: config.cassandra_replication_factor}
            if dc else {"class": "SimpleStrategy",
                        "replication_factor": config.cassandra_replication_factor})
        return CassandraStore(list(config.cassandra_contact_points),
                              keyspace=config.cassandra_keyspace, replication=replication,
                              consistency=config.cassandra_consistency, local_dc=dc)
    return SqliteStore(config.data_dir / "rendezvous.db", synchronous=config.sqlite_synchronous,
                       lock_wait_s=config.startup_wait_s)


class Node:
    def __init__(self, config: Config, *, store: Store | None = None,
                 backends: Backends | None = None,
                 pushers: dict[str, Any] | None = None) -> None:
        self.config = config.validate()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = Metrics()
        self.store = timed_store(store or build_store(config), self.metrics)
        self.backends = backends or build_backends(config, self.metrics)
        self.broker = self.backends.broker
        self.presence = self.backends.presence
        if pushers is None:
            pushers = build_pushers(config)  # reads key files: fails here, naming the key
        self.hub = Hub(self.metrics)
        self.caches = Caches(self.store)
        push_queue, push_gates = build_push_queue(config, self.backends.redis, self.metrics,
                                                 self.backends.batcher)
        self.pushes = PushDispatcher(store=self.store, presence=self.presence, pushers=pushers,
                                     metrics=self.metrics, queue=push_queue, gates=push_gates,
                                     policy=push_policy(config))
        self.auth = Authenticator(config.jwt_keys, issuer=config.jwt_issuer,
                                  audience=config.jwt_audience, leeway_s=config.jwt_leeway_s,
                                  max_user_chars=config.limits.max_user_id_chars)
        self.chat = ChatService(store=self.store, broker=self.broker, presence=self.presence,
                                hub=self.hub, caches=self.caches,
                                ids=IdGenerator(config.node_id or 0), limits=config.limits,
                                metrics=self.metrics, pushes=self.pushes,
                                send_limiter=self.backends.send_limiter,
                                claims=self.backends.claims,
                                send_gate=self.backends.send_gate)
        self.matches = MatchService(store=self.store, broker=self.broker, caches=self.caches,
                                    chat=self.chat, pushes=self.pushes, metrics=self.metrics)
        damper = PresenceDamper(marks=self.backends.flap_marks, presence=self.presence,
                                announce=self.chat.announce_presence,
                                grace_s=config.presence_grace_s)
        self.guard = ConnectionGuard(
            node=config.node, cap=self.backends.connection_cap,
            max_per_user=config.max_connections_per_user,
            throttle=self.backends.auth_throttle, damper=damper, broker=self.broker,
            metrics=self.metrics, ip_header=config.client_ip_header)
        self.gateway = Gateway(config=config, auth=self.auth, hub=self.hub, broker=self.broker,
                               presence=self.presence, chat=self.chat, metrics=self.metrics,
                               guard=self.guard)
        app = create_app(auth=self.auth, matches=self.matches, store=self.store,
                         metrics=self.metrics, swipe_limiter=self.backends.swipe_limiter,
                         max_body_bytes=config.max_http_body_bytes, ready=self.readiness,
                         guard=self.guard)
        self.http = _EmbeddedUvicorn(uvicorn.Config(
            app, host=config.host, port=config.http_port, log_config=None, access_log=False,
            lifespan="off", server_header=False, timeout_graceful_shutdown=5))
        self._tasks: list[asyncio.Task[Any]] = []
        self.node_id: int | None = None
        self.started = False
        self.draining = False

    @property
    def ws_port(self) -> int:
        return self.gateway.port

    @property
    def http_port(self) -> int:
        return int(self.http.servers[0].sockets[0].getsockname()[1])

    async def start(self) -> None:
        config = self.config
        await self.store.start()  # a locked SQLite file is waited for (startup_wait_s)
        if self.backends.redis is not None:
            await wait_for_redis(self.backends.redis, config.startup_wait_s)
        self.node_id = await with_retries("Redis (node id lease)",
                                          self.backends.node_ids.acquire,
                                          config.startup_wait_s, redis_down)
        self.chat.ids = IdGenerator(self.node_id)
        await self.presence.start()
        await self.broker.start(self.hub.deliver, self._on_control, self.chat.undelivered)
        await self.pushes.start()
        reuse = config.workers > 1
        await self.gateway.start(listening_socket(config.host, config.ws_port, reuse))
        http_socket = listening_socket(config.host, config.http_port, reuse)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.http.serve([http_socket]), name="http"))
        while not self.http.started:
            if self._tasks[0].done():  # uvicorn failed to start
                await self._tasks[0]
                raise OSError(f"HTTP API could not start on port {config.http_port}")
            await asyncio.sleep(0.01)
        self._tasks.append(loop.create_task(self._keep_presence(), name="presence"))
        self.started = True
        self.metrics.set_build(package_version(), config.node, self.node_id)
        log.info("node started", extra={"node": config.node, "node_id": self.node_id})

    async def abandon(self) -> None:
        """Take down whatever a failed `start()` brought up, so the process can exit (a
        subscriber or lease task left running keeps the loop from ever finishing)."""
        if self.gateway.server is not None:
            self.gateway.server.close()
        self.http.should_exit = True
        await stop_tasks(self._tasks)
        for close in (self.pushes.close, self.broker.close, self.presence.close,
                      self.backends.node_ids.release, self.backends.close, self.store.close):
            try:
                async with asyncio.timeout(5):
                    await close()
            except Exception:
                log.debug("closing after a failed start", exc_info=True)

    async def stop(self) -> None:
        """Drain, then take the parts down in reverse order."""
        await self.drain()
        self.http.should_exit = True
        await stop_tasks(self._tasks[1:])  # the HTTP task ends by itself, once it is drained
        await asyncio.gather(self._tasks[0], return_exceptions=True)
        await self.guard.close()  # delayed offline announcements, before the broker goes
        await self.pushes.close()
        await self.broker.close()
        await self.presence.close()
        await self.backends.node_ids.release()
        await self.backends.close()
        await self.store.close()
        self.started = False

    async def drain(self) -> None:
        """Stop accepting and move every client elsewhere, in jittered batches."""
        if self.draining:
            return
        self.draining = True
        self.metrics.draining.set(1)
        config = self.config
        deadline = time.monotonic() + config.drain_timeout_s
        self.gateway.stop_accepting()
        sessions = list(self.hub.sessions())
        lo, hi = config.reconnect_jitter_ms
        for start in range(0, len(sessions), config.drain_batch):
            for session in sessions[start:start + config.drain_batch]:
                session.push(sf.reconnect(random.randint(lo, hi)))
                session.close_when_answered(CloseCode.RESTART, "node draining: reconnect")
            self.metrics.drain_sessions.set(len(self.hub))
            if start + config.drain_batch < len(sessions):
                await asyncio.sleep(config.drain_interval_s)
        await self.gateway.wait_closed(max(0.1, deadline - time.monotonic()))
        self.metrics.drain_sessions.set(len(self.hub))
        log.info("drained", extra={"sessions": len(sessions), "sessions_left": len(self.hub)})

    async def _keep_presence(self) -> None:
        """Refresh our sessions' TTL and reap sessions whose node stopped refreshing.

        The refresh is spread over half the interval in slices: done at once, 10,000 sessions
        held the loop for about a second every interval and connects queued behind it."""
        interval = max(0.2, self.config.presence_ttl_s / 3)
        while True:
            await asyncio.sleep(interval / 2)
            try:
                sessions = [(s.user, s.id) for s in self.hub.sessions()]
                slices = range(0, len(sessions), PRESENCE_REFRESH_SLICE)
                pause = interval / 2 / max(1, len(slices))
                for start in slices:
                    await self.presence.refresh(sessions[start:start + PRESENCE_REFRESH_SLICE])
                    await asyncio.sleep(pause)
                if not sessions:
                    await asyncio.sleep(pause)
                for user, seen in await self.presence.reap():
                    await self.chat.announce_presence(user, False, seen)
            except Exception:
                log.exception("presence upkeep failed")

    def _on_control(self, message: dict[str, Any]) -> None:
        """A control message from any node: cache invalidations, evictions, IP blocks."""
        self.caches.on_control(message)
        self.guard.on_control(message)

    async def readiness(self) -> dict[str, bool]:
        try:
            async with asyncio.timeout(2):
                await self.store.ping()
            store_ok = True
        except (StoreUnavailable, TimeoutError):
            store_ok = False
        return {"store": store_ok, "broker": self.broker.healthy(),
                "accepting": self.started and not self.draining}
