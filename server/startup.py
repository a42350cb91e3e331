"""Start-up that waits for its backing services instead of exiting at the first refusal.

Nodes, Redis and the store are often started together (a compose file, a rolling deploy, a
freshly created Redis Cluster still assigning slots). A node that exits because Redis did
not answer yet, or a SQLite file was locked for a moment, only gets restarted by its
supervisor into the same race. So start-up retries, with full-jitter backoff and a log line
per failure, for at most `startup_wait_s`; then it fails with a message naming what it
waited for (docs/operations.md, "Start-up"). The SQLite lock is waited for in
`storage/sqlite_engine.py`, which owns the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from runtime.backoff import Backoff
from runtime.redis_calls import REDIS_ERRORS, RedisClient

log = logging.getLogger("rendezvous.node")
T = TypeVar("T")


async def with_retries(what: str, attempt: Callable[[], Awaitable[T]], within_s: float,
                       temporary: Callable[[BaseException], bool],
                       backoff: Backoff | None = None) -> T:
    """`attempt()`'s result, retrying failures that `temporary` accepts for `within_s`."""
    backoff = backoff or Backoff(0.1, 2.0)
    deadline = time.monotonic() + within_s
    tries = 0
    while True:
        try:
            return await attempt()
        except Exception as error:
            tries += 1
            left = deadline - time.monotonic()
            if not temporary(error):
                raise
            if left <= 0:
                raise RuntimeError(f"{what} did not answer within {within_s:g} s "
                                   f"(startup_wait_s), {tries} tries: {error!r}") from error
            log.warning("waiting for %s at start-up: %r (try %d, %.0f s left)", what, error,
                        tries, left)
            await asyncio.sleep(min(left, backoff.next()))


def redis_down(error: BaseException) -> bool:
    """A Redis error, or our RuntimeError wrapping one (the node-id lease raises that)."""
    return isinstance(error, REDIS_ERRORS) or isinstance(error.__cause__, REDIS_ERRORS)


async def redis_ready(client: RedisClient) -> None:
    """Raise unless Redis answers, and a Redis Cluster has every slot served."""
    await client.ping()
    info: Any = getattr(client, "cluster_info", None)
    if info is not None and hasattr(client, "get_nodes"):
        state = await info()
        value = state.get("cluster_state") if isinstance(state, dict) else None
        if value not in (None, "ok", b"ok"):
            from redis.exceptions import RedisClusterException

            raise RedisClusterException(f"cluster_state is {value!r}, not ok yet")


async def wait_for_redis(client: RedisClient, within_s: float) -> None:
    await with_retries("Redis", lambda: redis_ready(client), within_s, redis_down)
