"""A node's lifecycle: start, drain and stop of the parts server/compose.py puts together.

`Node.start()` brings the parts up in dependency order. `Node.stop()` drains: it stops
accepting, fails readiness, tells clients in jittered batches to reconnect elsewhere (a
`reconnect` frame, then close 1012), lets in-flight requests finish, flushes pushes and
closes the store, all within `drain_timeout_s`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import time
from collections.abc import Mapping
from typing import Any

from protocol import server_frames as sf
from protocol.errors import CloseCode
from push.base import Pusher
from runtime.tasks import stop_tasks
from server.compose import Backends, Services, compose_backends, compose_services
from server.config import Config
from server.edge.gateway import LISTEN_BACKLOG
from server.edge.hub import Hub
from server.loop_metrics import watch_loop_lag
from server.metrics import Metrics, package_version
from server.startup import redis_down, wait_for_redis, with_retries
from storage import Store, StoreUnavailable

log = logging.getLogger("rendezvous.node")


class ListenError(OSError):
    """A port could not be bound; the message names the port, its setting and its flag."""


def listening_socket(host: str, port: int, reuse_port: bool, setting: str) -> socket.socket:
    """A bound, listening TCP socket; with `reuse_port` several processes share the port.

    A bind that fails raises `ListenError` naming `setting` (`ws_port`, `http_port`) and its
    flag, so an operator knows which port to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        error = ListenError(_bind_failure(host, port, setting, exc))
        error.errno = exc.errno
        raise error from None
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def _bind_failure(host: str, port: int, setting: str, exc: OSError) -> str:
    where = f"{setting} {port} (--{setting.replace('_', '-')})"
    if exc.errno == errno.EADDRINUSE:
        return (f"{where} is already in use on {host}: another process listens there; stop "
                f"it or choose another {setting}")
    if exc.errno == errno.EACCES:
        return f"{where}: not allowed to listen on {host}:{port} ({exc.strerror})"
    return f"{where}: cannot listen on {host}:{port}: {exc.strerror or exc}"


class Node:
    """A node's lifecycle. What it is made of is decided in server/compose.py: the backends
    when the node is made (a bad setting fails here), the services in `start` once the node
    id is known."""

    def __init__(self, config: Config, *, store: Store | None = None,
                 pushers: Mapping[str, Pusher] | None = None) -> None:
        self.config = config.validate()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = Metrics()
        self.backends: Backends = compose_backends(config, self.metrics, store=store,
                                                   pushers=pushers)
        self.store = self.backends.store
        self.broker = self.backends.broker
        self.metrics.watch_broker(self.broker.healthy)
        self.metrics.initialise_providers(p.provider for p in self.backends.pushers.values())
        self.hub = Hub(self.metrics)
        self._services: Services | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.node_id: int | None = None
        self.started = False
        self.draining = False

    @property
    def services(self) -> Services:
        """The chat, match and push services, the gateway and the HTTP API (from `start`)."""
        if self._services is None:
            raise RuntimeError("the node has no services before start()")
        return self._services

    async def start(self) -> None:
        config = self.config
        backends = self.backends
        await self.store.start()  # a locked SQLite file is waited for (startup_wait_s)
        if backends.redis is not None:
            await wait_for_redis(backends.redis, config.startup_wait_s)
        self.node_id = await with_retries("Redis (node id lease)", backends.node_ids.acquire,
                                          config.startup_wait_s, redis_down)
        services = self._services = compose_services(
            config, backends, metrics=self.metrics, hub=self.hub, node_id=self.node_id,
            ready=self.readiness)
        await backends.presence.start()
        await self.broker.start(self.hub.deliver, self._on_control, services.chat.undelivered)
        await services.pushes.start()
        reuse = config.workers > 1
        await services.gateway.start(listening_socket(config.host, config.ws_port, reuse,
                                                       "ws_port"))
        http_socket = listening_socket(config.host, config.http_port, reuse, "http_port")
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(services.http.serve([http_socket]), name="http"))
        while not services.http.started:
            if self._tasks[0].done():  # uvicorn failed to start
                await self._tasks[0]
                raise OSError(f"HTTP API could not start on port {config.http_port}")
            await asyncio.sleep(0.01)
        self._tasks.append(loop.create_task(services.presence.keep(self._local_sessions),
                                            name="presence"))
        self._tasks.append(loop.create_task(watch_loop_lag(self.metrics.loop_lag),
                                            name="loop-lag"))
        # erasures a failure or a stop left unfinished: at once, then every erasure_resume_s
        self._tasks.append(loop.create_task(services.erasure.keep_resuming(),
                                            name="erasure-resume"))
        self._tasks.append(loop.create_task(services.reports.keep_purging(),
                                            name="report-purge"))
        self.started = True
        self.metrics.set_build(package_version(), config.node, self.node_id)
        log.info("node started", extra={"node": config.node, "node_id": self.node_id})

    @property
    def ws_port(self) -> int:
        return self.services.gateway.port

    @property
    def http_port(self) -> int:
        return int(self.services.http.servers[0].sockets[0].getsockname()[1])

    async def abandon(self) -> None:
        """Take down whatever a failed `start()` brought up, so the process can exit (a
        subscriber or lease task left running keeps the loop from ever finishing)."""
        services = self._services
        closes = [self.broker.close, self.backends.presence.close,
                  self.backends.node_ids.release, self.backends.close, self.store.close]
        if services is not None:
            if services.gateway.server is not None:
                services.gateway.server.close()
            services.http.should_exit = True
            closes.insert(0, services.pushes.close)
        await stop_tasks(self._tasks)
        for close in closes:
            try:
                async with asyncio.timeout(5):
                    await close()
            except Exception:
                log.debug("closing after a failed start", exc_info=True)

    async def stop(self) -> None:
        """Drain, then take the parts down in reverse order."""
        services = self.services
        await self.drain()
        services.http.should_exit = True
        await stop_tasks(self._tasks[1:])  # the HTTP task ends by itself, once it is drained
        await asyncio.gather(self._tasks[0], return_exceptions=True)
        await services.erasure.close()
        await services.presence.close()  # delayed offlines announced, before the broker goes
        await services.guard.close()
        await services.reports.close()  # running report hooks, briefly
        await services.pushes.close()
        await self.broker.close()
        await self.backends.presence.close()
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
        gateway = self.services.gateway
        gateway.stop_accepting()
        sessions = list(self.hub.sessions())
        lo, hi = config.reconnect_jitter_ms
        for start in range(0, len(sessions), config.drain_batch):
            for session in sessions[start:start + config.drain_batch]:
                session.push(sf.reconnect(random.randint(lo, hi)))
                session.close_when_answered(CloseCode.RESTART, "node draining: reconnect")
            self.metrics.drain_sessions.set(len(self.hub))
            if start + config.drain_batch < len(sessions):
                await asyncio.sleep(config.drain_interval_s)
        await gateway.wait_closed(max(0.1, deadline - time.monotonic()))
        self.metrics.drain_sessions.set(len(self.hub))
        log.info("drained", extra={"sessions": len(sessions), "sessions_left": len(self.hub)})

    def _local_sessions(self) -> list[tuple[str, str]]:
        """(user, session id) of every session on this node, for the presence refresh."""
        return [(s.user, s.id) for s in self.hub.sessions()]

    def _on_control(self, message: dict[str, Any]) -> None:
        """A control message from any node: cache invalidations, evictions, IP blocks,
        token revocations."""
        services = self.services
        services.caches.on_control(message)
        services.guard.on_control(message)
        services.accounts.on_control(message)
        services.erasure.on_control(message)

    async def readiness(self) -> dict[str, bool]:
        try:
            async with asyncio.timeout(2):
                await self.store.ping()
            store_ok = True
        except (StoreUnavailable, TimeoutError):
            store_ok = False
        return {"store": store_ok, "broker": self.broker.healthy(),
                "accepting": self.started and not self.draining}
