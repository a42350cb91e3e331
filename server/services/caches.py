"""Read-through caches of match membership and user settings, on the hot path of every frame.

Concurrent misses for one key share one store read, so frames that arrive in order are
answered in order (a send's id is assigned after its membership check). Writers through this
node update or drop entries at once; entries also expire so a change made elsewhere is seen
within the TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from storage import MatchRecord, Settings, Store

K = TypeVar("K")
V = TypeVar("V")


class ReadThroughCache(Generic[K, V]):
    """LRU with TTL whose misses call `load` once per key however many callers wait."""

    def __init__(self, load: Callable[[K], Awaitable[V]], *, ttl_s: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            self._entries.move_to_end(key)
            return entry[1]
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[key] = pending
            try:
                value = await self._load(key)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved: waiters re-raise it, no "never retrieved"
                raise
            else:
                self.put(key, value)
                pending.set_result(value)
            finally:
                self._loading.pop(key, None)
            return value
        return await asyncio.shield(pending)

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def invalidate(self, key: K) -> None:
        self._entries.pop(key, None)


class Caches:
    """The node's caches over one store."""

    def __init__(self, store: Store, *, ttl_s: float = 30.0, max_entries: int = 200_000) -> None:
        self.matches: ReadThroughCache[str, MatchRecord | None] = ReadThroughCache(
            store.get_match, ttl_s=ttl_s, max_entries=max_entries)
        self.settings: ReadThroughCache[str, Settings] = ReadThroughCache(
            store.get_settings, ttl_s=ttl_s, max_entries=max_entries)

    def on_control(self, message: dict[str, Any]) -> None:
        """Apply a control message from any node (see `server.services.matching`)."""
        kind = message.get("k")
        if kind == "match" and isinstance(message.get("id"), str):
            self.matches.invalidate(message["id"])
        elif kind == "settings" and isinstance(message.get("u"), str):
            self.settings.invalidate(message["u"])
