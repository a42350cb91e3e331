"""Python asyncio client SDK for the Rendezvous protocol (WebSocket and HTTP API).

Used by the test suite, the load tester and users' backend tests; see docs/protocol.md.
`RendezvousClient` is one socket; `ReconnectingClient` keeps a session across sockets
(reconnect with full-jitter backoff, `sync` from the cursor, messages once each).
"""

from __future__ import annotations

from client.errors import ClientClosed, ConnectionRejected, HttpError, ServerError
from client.http import RendezvousHttp
from client.reconnecting import GaveUp, Listener, ReconnectingClient
from client.tokens import mint_token
from client.ws import RendezvousClient

__all__ = [
    "ClientClosed",
    "ConnectionRejected",
    "GaveUp",
    "HttpError",
    "Listener",
    "ReconnectingClient",
    "RendezvousClient",
    "RendezvousHttp",
    "ServerError",
    "mint_token",
]
