"""What every caller of Redis needs around a call: the errors that mean "Redis is down",
the reply as text, and an outage logged once rather than once per failed call.

Callers fall back instead of waiting when Redis fails (docs/cluster.md, "When things fail");
each of them keeps one `Outage` per thing it does with Redis.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

log = logging.getLogger("rendezvous.redis")

RedisClient: TypeAlias = Redis | RedisCluster

# What a Redis call can raise when Redis is down, slow or being resharded.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


class Counter(Protocol):
    def inc(self) -> None: ...


class LabelledCounter(Protocol):
    """A counter with one label (prometheus_client's `Counter` is one)."""

    def labels(self, value: str, /) -> Counter: ...


def text(value: Any) -> str:
    """A reply as str (the shared client does not decode: the broker carries bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Outage:
    """Counts every call that failed (in `fallbacks`, labelled `what`, when given), but
    logs an outage once: when it starts and when it ends."""

    def __init__(self, what: str, fallbacks: LabelledCounter | None = None, *,
                 logger: logging.Logger = log) -> None:
        self.what = what
        self._fallbacks = fallbacks.labels(what) if fallbacks is not None else None
        self._log = logger
        self.down = False

    def failed(self, error: BaseException) -> None:
        if self._fallbacks is not None:
            self._fallbacks.inc()
        if not self.down:
            self.down = True
            self._log.warning("redis unavailable for %s, falling back until it answers: %r",
                              self.what, error)

    def ok(self) -> None:
        if self.down:
            self.down = False
            self._log.warning("redis answers again for %s", self.what)
