"""Fixtures of the push tests: the FCM look-alike that firebase-admin talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.push_servers.fcm import FcmLookalike


@pytest.fixture
async def fcm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FcmLookalike]:
    """A started FCM v1 (HTTP/2 over TLS) + OAuth (HTTP, threads) look-alike, its CA
    trusted by the httpx clients made from now on (firebase-admin's: `SSL_CERT_FILE`)."""
    server = FcmLookalike()
    await server.start()
    for name, value in server.client_env().items():
        monkeypatch.setenv(name, value)
    yield server
    await server.stop()
