"""WebSocket data frames written straight to the transport, for the one common case.

A server frame is unmasked: a two-byte header (FIN and opcode, then the length, extended to
16 or 64 bits past 125 bytes) and the payload. Building that here costs one `bytes`
concatenation; going through `websockets`' Sans-I/O protocol costs a `Frame` object, its
serialisation, a list of pending writes and a generator per frame, twice per message (the
sender's ack and the recipient's msg). Only for a connection without extensions (the
gateway serves with compression off) and with nothing else pending in the protocol's
buffer, so the bytes on the wire are exactly what `websockets` would have written.
"""

from __future__ import annotations

import struct

from websockets.asyncio.server import ServerConnection

FIN_TEXT = 0x81
FIN_BINARY = 0x82
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def header(first: int, length: int) -> bytes:
    """The header of an unmasked frame whose first byte is `first` (FIN | opcode)."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _MEDIUM.pack(first, 126, length)
    return _LONG.pack(first, 127, length)


def can_write_direct(ws: ServerConnection) -> bool:
    """Whether a whole frame may bypass the protocol object: no extension transforms
    frames, no fragmented message is open, and nothing the protocol produced (a pong, a
    close) waits to be written ahead of it."""
    protocol = ws.protocol
    # getattr: a websockets release that renamed these takes the protocol's own path
    return getattr(protocol, "extensions", None) == [] and \
        getattr(protocol, "expect_continuation_frame", True) is False and \
        getattr(protocol, "writes", None) == []


def write_direct(ws: ServerConnection, data: bytes | str) -> None:
    """Write `data` as one text (str) or binary (bytes) frame to `ws`'s transport."""
    if isinstance(data, str):
        payload = data.encode()
        ws.transport.write(header(FIN_TEXT, len(payload)) + payload)
    else:
        ws.transport.write(header(FIN_BINARY, len(data)) + data)
