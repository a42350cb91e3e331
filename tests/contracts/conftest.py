"""Fixtures that run every backend contract test against every implementation: in-process
("memory", the embedded default), one real redis-server and the session's real 3-master Redis
Cluster ("redis", "redis-cluster").

A contract suite per interface (Broker, Presence, Limiter, SendClaims, SendGate, the guards
ConnectionCap, AuthThrottle and FlapMarks, PushQueue, PushGates)
knows only the interface; what holds for one implementation alone (outages, Lua scripts,
cluster slots, take-overs) is in that implementation's own tests (tests/redis/,
tests/push/test_push_queue_redis.py). To add an implementation, add it to `IMPLEMENTATIONS`
and a branch to each suite's factory fixture.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from runtime.redis_batch import TurnBatcher
from tests.conftest import redis_client_maker

IMPLEMENTATIONS = ["memory", "redis", "redis-cluster"]
_REDIS_KINDS = {"redis": "standalone", "redis-cluster": "cluster"}


@dataclass(frozen=True)
class Backing:
    """Where a test's implementations keep their state.

    `clients()` gives each simulated node a Redis client of its own (None for memory: one
    process, one state); `prefix` keeps the test's keys apart on the shared cluster."""

    name: str
    clients: Callable[[], Any] | None
    prefix: str

    @property
    def shared(self) -> bool:
        """State every node of a cluster sees (Redis), not one process's (memory)."""
        return self.clients is not None

    @property
    def sharded(self) -> bool:
        return self.name == "redis-cluster"

    async def client(self) -> Any:
        """A new node's client, connected (on a cluster, with the slots read): timing
        assertions measure the calls, not the connect."""
        assert self.clients is not None, "memory implementations have no Redis client"
        client = self.clients()
        await client.ping()
        return client


@pytest.fixture(params=IMPLEMENTATIONS)
async def backing(request: pytest.FixtureRequest) -> AsyncIterator[Backing]:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    name = str(request.param)
    if name == "memory":
        yield Backing(name, None, prefix)
        return
    async with redis_client_maker(_REDIS_KINDS[name], request) as clients:
        yield Backing(name, clients, prefix)


MakeBatcher = Callable[[], Awaitable[TurnBatcher]]


@pytest.fixture
async def batchers(backing: Backing) -> AsyncIterator[MakeBatcher]:
    """A new node's turn batcher on its own Redis client (Redis backings only); closed at
    teardown."""
    made: list[TurnBatcher] = []

    async def make() -> TurnBatcher:
        made.append(TurnBatcher(await backing.client()))
        return made[-1]

    yield make
    for batcher in made:
        await batcher.close()
