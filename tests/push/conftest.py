"""Fixtures of the push tests: the FCM look-alike that firebase-admin talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.push_servers.fcm import FcmLookalike


@pytest.fixture
async def fcm() -> AsyncIterator[FcmLookalike]:
    """A started FCM v1 + OAuth look-alike (threads: the token fetch is synchronous)."""
    server = FcmLookalike()
    await server.start()
    yield server
    await server.stop()
