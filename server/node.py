"""A node composed once from its config: store, broker, presence, push, gateway, HTTP API.

`Node.start()` brings the parts up in dependency order and `Node.stop()` takes them down in
reverse: stop accepting, tell clients to reconnect (1012), let in-flight requests finish,
flush pushes, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn

from protocol.ids import IdGenerator
from push.dispatcher import PushDispatcher
from push.recorder import RecorderPusher
from server.auth import Authenticator
from server.broker import Broker, MemoryBroker
from server.caches import Caches
from server.chat import ChatService
from server.config import Config
from server.gateway import Gateway
from server.http_api import create_app
from server.hub import Hub
from server.matching import MatchService
from server.metrics import Metrics
from server.presence import MemoryPresence, Presence
from server.ratelimit import RateLimiter
from storage import Store, StoreUnavailable
from storage.sqlite import SqliteStore

log = logging.getLogger("rendezvous.node")


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our loop: the node, not uvicorn, owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Node:
    def __init__(self, config: Config, *, store: Store | None = None,
                 broker: Broker | None = None, presence: Presence | None = None,
                 pushers: dict[str, Any] | None = None) -> None:
        self.config = config.validate()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = Metrics()
        self.store = store or SqliteStore(config.data_dir / "rendezvous.db",
                                          synchronous=config.sqlite_synchronous)
        self.broker = broker or MemoryBroker()
        self.presence = presence or MemoryPresence(ttl_s=config.presence_ttl_s)
        if pushers is None:
            recorder = RecorderPusher(config.data_dir / "pushes.jsonl")
            pushers = {"apns": recorder, "fcm": recorder}
        self.hub = Hub()
        self.caches = Caches(self.store)
        self.pushes = PushDispatcher(store=self.store, presence=self.presence, pushers=pushers,
                                     metrics=self.metrics)
        self.auth = Authenticator(config.jwt_keys, issuer=config.jwt_issuer,
                                  audience=config.jwt_audience, leeway_s=config.jwt_leeway_s,
                                  max_user_chars=config.limits.max_user_id_chars)
        self.chat = ChatService(store=self.store, broker=self.broker, presence=self.presence,
                                hub=self.hub, caches=self.caches,
                                ids=IdGenerator(config.node_id), limits=config.limits,
                                metrics=self.metrics, pushes=self.pushes,
                                send_limiter=RateLimiter(config.sends_per_s,
                                                         config.send_burst))
        self.matches = MatchService(store=self.store, broker=self.broker, caches=self.caches,
                                    chat=self.chat, pushes=self.pushes, metrics=self.metrics)
        self.gateway = Gateway(config=config, auth=self.auth, hub=self.hub, broker=self.broker,
                               presence=self.presence, chat=self.chat, metrics=self.metrics)
        app = create_app(auth=self.auth, matches=self.matches, store=self.store,
                         metrics=self.metrics,
                         swipe_limiter=RateLimiter(config.swipes_per_s, config.swipe_burst),
                         max_body_bytes=config.max_http_body_bytes, ready=self.readiness)
        self.http = _EmbeddedUvicorn(uvicorn.Config(
            app, host=config.host, port=config.http_port, log_config=None, access_log=False,
            lifespan="off", server_header=False, timeout_graceful_shutdown=5))
        self._tasks: list[asyncio.Task[Any]] = []
        self.started = False

    @property
    def ws_port(self) -> int:
        return self.gateway.port

    @property
    def http_port(self) -> int:
        return int(self.http.servers[0].sockets[0].getsockname()[1])

    async def start(self) -> None:
        await self.store.start()
        await self.presence.start()
        await self.broker.start(self.hub.deliver)
        await self.pushes.start()
        await self.gateway.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.http.serve(), name="http"))
        while not self.http.started:
            if self._tasks[0].done():  # uvicorn failed to bind
                await self._tasks[0]
                raise OSError(f"HTTP API could not listen on port {self.config.http_port}")
            await asyncio.sleep(0.01)
        self._tasks.append(loop.create_task(self._refresh_presence(), name="presence"))
        self.started = True

    async def stop(self) -> None:
        """Graceful stop: clients are told to reconnect (1012); queued work is flushed."""
        await self.gateway.close()
        self.http.should_exit = True
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pushes.close()
        await self.broker.close()
        await self.presence.close()
        await self.store.close()
        self.started = False

    async def _refresh_presence(self) -> None:
        interval = max(1.0, self.config.presence_ttl_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.presence.refresh((s.user, s.id) for s in self.hub.sessions())
            except Exception:
                log.exception("presence refresh failed")

    async def readiness(self) -> dict[str, bool]:
        try:
            await asyncio.wait_for(self.store.ping(), 2)
            store_ok = True
        except (StoreUnavailable, TimeoutError):
            store_ok = False
        return {"store": store_ok, "broker": self.broker.healthy(), "started": self.started}
