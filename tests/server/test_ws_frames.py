"""Frames written straight to the transport are byte for byte what websockets writes."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.frames import Frame, Opcode

from server.edge.ws_frames import FIN_BINARY, FIN_TEXT, header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize(("first", "opcode"),
                         [(FIN_BINARY, Opcode.BINARY), (FIN_TEXT, Opcode.TEXT)])
def test_header_and_payload_match_websockets(length: int, first: int, opcode: Opcode) -> None:
    payload = bytes(i % 251 for i in range(length))
    expected = Frame(opcode, payload).serialize(mask=False, extensions=[])
    assert header(first, length) + payload == expected


def test_direct_writes_only_when_nothing_is_in_the_way() -> None:
    from types import SimpleNamespace

    from websockets.protocol import SERVER, Protocol

    from server.edge.ws_frames import can_write_direct

    protocol = Protocol(SERVER)
    ws: Any = SimpleNamespace(protocol=protocol)
    assert can_write_direct(ws)
    protocol.writes.append(b"\x8a\x00")  # a pong the protocol has not handed out yet
    assert not can_write_direct(ws)
    protocol.writes.clear()
    protocol.expect_continuation_frame = True  # a fragmented message is open
    assert not can_write_direct(ws)
    protocol.expect_continuation_frame = False
    protocol.extensions = [object()]  # type: ignore[list-item]  # e.g. permessage-deflate
    assert not can_write_direct(ws)
    assert not can_write_direct(SimpleNamespace(protocol=object()))  # type: ignore[arg-type]
