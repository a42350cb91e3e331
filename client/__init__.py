"""Python asyncio client SDK for the Rendezvous protocol (WebSocket and HTTP API).

Used by the test suite, the load tester and users' backend tests; see docs/protocol.md.
"""

from __future__ import annotations

from client.errors import ClientClosed, ConnectionRejected, HttpError, ServerError
from client.http import RendezvousHttp
from client.tokens import mint_token
from client.ws import RendezvousClient

__all__ = [
    "ClientClosed",
    "ConnectionRejected",
    "HttpError",
    "RendezvousClient",
    "RendezvousHttp",
    "ServerError",
    "mint_token",
]
