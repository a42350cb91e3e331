"""The HTTP/2 server side both look-alikes share: an h2 state machine fed from an asyncio
transport, requests collected per stream and answered when the stream ends.

A look-alike subclasses `H2ServerProtocol` with `respond` (one complete request) and, where it
reads the TLS handshake (ALPN, a client certificate), `tls_established`."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import ProtocolError


@dataclass
class H2Stream:
    """One request: its headers (names lower-cased) and the body read so far."""

    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)


class H2ServerProtocol(asyncio.Protocol):
    """One client connection. `connections` is the look-alike's set of open ones, so that
    stopping it can close them."""

    def __init__(self, connections: set[H2ServerProtocol]) -> None:
        self.connections = connections
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2Stream] = {}

    def tls_established(self, ssl_object: ssl.SSLObject | None) -> None:
        """What the look-alike reads from the handshake (nothing by default)."""

    def respond(self, stream_id: int, stream: H2Stream) -> None:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.tls_established(transport.get_extra_info("ssl_object"))
        self.connections.add(self)
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.conn.close_connection()
            self.flush()
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = H2Stream(
                    {str(k).lower(): str(v) for k, v in event.headers or []})
            elif isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None and event.data:
                    stream.body.extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                    event.stream_id)
            elif isinstance(event, StreamEnded):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    self.respond(event.stream_id, stream)
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
