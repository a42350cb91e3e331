"""Test helpers shared by test modules: HTTP clients on one transport, and polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from client import RendezvousHttp
from tests.conftest import Harness


class Apis:
    """One HTTP client per user and test, all on one transport: `rdv.http` makes a new httpx
    client on every call, and each loads its own TLS context (~50 ms)."""

    def __init__(self) -> None:
        self._transport: httpx.AsyncHTTPTransport | None = None
        self._clients: dict[tuple[int, str | None], RendezvousHttp] = {}

    def __call__(self, rdv: Harness, user: str | None) -> RendezvousHttp:
        key = (id(rdv), user)
        if key not in self._clients:
            if self._transport is None:
                self._transport = httpx.AsyncHTTPTransport()
            token = rdv.token(user) if user is not None else None
            self._clients[key] = RendezvousHttp(rdv.http_url, token, transport=self._transport)
        return self._clients[key]

    async def pair(self, rdv: Harness, a: str, b: str) -> str:
        """`rdv.pair` on these clients: the id of the new match of `a` and `b`."""
        await self(rdv, a).swipe(b, "like")
        result = await self(rdv, b).swipe(a, "like")
        assert result["match"] is not None, result
        match_id: str = result["match"]["id"]
        return match_id

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        if self._transport is not None:
            await self._transport.aclose()


async def wait_until(condition: Callable[[], Any], timeout: float = 3.0,
                     interval: float = 0.01) -> Any:
    """Poll `condition` (sync or async) until it is truthy; its value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def stays(condition: Callable[[], bool], within: float = 0.3) -> bool:
    """True if `condition` holds throughout `within` seconds (for "nothing else happens")."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert condition()
        await asyncio.sleep(0.01)
    return condition()
