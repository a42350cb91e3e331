"""Frames written straight to the transport are byte for byte what websockets writes."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from server.ws_frames import FIN_BINARY, FIN_TEXT, header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize(("first", "opcode"),
                         [(FIN_BINARY, Opcode.BINARY), (FIN_TEXT, Opcode.TEXT)])
def test_header_and_payload_match_websockets(length: int, first: int, opcode: Opcode) -> None:
    payload = bytes(i % 251 for i in range(length))
    expected = Frame(opcode, payload).serialize(mask=False, extensions=[])
    assert header(first, length) + payload == expected
