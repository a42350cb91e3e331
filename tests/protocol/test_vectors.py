"""Golden vectors, both ways: the code must reproduce the committed bytes exactly.

Server frames: builder -> codec must equal `msgpack_hex` / `json_text` byte for byte.
Client frames: the committed bytes/text -> codec -> `parse_client_frame` must give the
expected dataclass. The file is never regenerated here (see `make_vectors.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

from protocol import server_frames as sf
from protocol.codec import ID_FIELDS, JsonCodec, MsgpackCodec
from protocol.frames import CLIENT_TYPES, parse_client_frame
from protocol.limits import DEFAULT_LIMITS
from tests.protocol.cases import CLIENT_CASES, SERVER_CASES

VECTORS: dict[str, list[dict[str, Any]]] = json.loads(
    Path(__file__).with_name("vectors.json").read_text(encoding="utf-8"))
SERVER = {v["name"]: v for v in VECTORS["server"]}
CLIENT = {v["name"]: v for v in VECTORS["client"]}


def _ids_as_strings(obj: Any) -> Any:
    """What a JSON frame looks like on the wire: every id field a decimal string."""
    if isinstance(obj, dict):
        return {k: str(v) if k in ID_FIELDS and type(v) is int else _ids_as_strings(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_ids_as_strings(v) for v in obj]
    return obj


def test_file_and_cases_name_the_same_vectors() -> None:
    assert list(SERVER) == list(SERVER_CASES)
    assert list(CLIENT) == list(CLIENT_CASES)
    assert len(SERVER) == len(VECTORS["server"])
    assert len(CLIENT) == len(VECTORS["client"])


def test_every_frame_type_has_a_vector() -> None:
    server_types = {v["frame"]["t"] for v in VECTORS["server"]}
    assert server_types == {"welcome", "ack", "msg", "typing", "read", "delivered",
                            "presence", "history", "sync", "match", "unmatch", "reconnect",
                            "ok", "pong", "error", "unsent"}
    assert {v["frame"]["t"] for v in VECTORS["client"]} == CLIENT_TYPES
    # the optional shapes the task lists are there too
    assert "body" in SERVER["msg_body"]["frame"] and "media" in SERVER["msg_media"]["frame"]
    assert SERVER["match_super"]["frame"]["super"] is True
    assert "retry_ms" in SERVER["error_rate_limited"]["frame"]
    assert "u" in SERVER["presence_event_online"]["frame"]
    assert "users" in SERVER["presence_reply"]["frame"]


@pytest.mark.parametrize("name", list(SERVER_CASES))
def test_server_frame_encodes_to_golden_msgpack(name: str) -> None:
    vector = SERVER[name]
    frame = SERVER_CASES[name]()
    assert frame == vector["frame"]
    assert MsgpackCodec().encode(frame).hex() == vector["msgpack_hex"]


@pytest.mark.parametrize("name", list(SERVER_CASES))
def test_server_frame_encodes_to_golden_json(name: str) -> None:
    vector = SERVER[name]
    text = JsonCodec().encode(SERVER_CASES[name]())
    assert text == vector["json_text"]
    # message ids are strings in JSON, everything else keeps its JSON type
    assert json.loads(text) == _ids_as_strings(vector["frame"])


@pytest.mark.parametrize("name", list(SERVER_CASES))
def test_server_vector_bytes_decode_back_to_the_frame(name: str) -> None:
    vector = SERVER[name]
    assert msgpack.unpackb(bytes.fromhex(vector["msgpack_hex"]), raw=False) == vector["frame"]


@pytest.mark.parametrize("name", list(CLIENT_CASES))
def test_client_msgpack_vector_parses(name: str) -> None:
    vector = CLIENT[name]
    frame, expected = CLIENT_CASES[name]
    assert vector["frame"] == frame
    decoded = MsgpackCodec().decode(bytes.fromhex(vector["msgpack_hex"]))
    assert decoded == frame
    assert parse_client_frame(decoded, DEFAULT_LIMITS) == expected


@pytest.mark.parametrize("name", list(CLIENT_CASES))
def test_client_json_vector_parses(name: str) -> None:
    vector = CLIENT[name]
    _, expected = CLIENT_CASES[name]
    decoded = JsonCodec().decode(vector["json_text"])
    assert decoded == _ids_as_strings(vector["frame"])
    assert parse_client_frame(decoded, DEFAULT_LIMITS) == expected


def test_json_vectors_carry_big_ids_as_strings() -> None:
    """The reason for the string rule: these ids do not survive a JS double."""
    text = CLIENT["read"]["json_text"]
    message_id = CLIENT["read"]["frame"]["id"]
    assert message_id > 2**53
    assert f'"id":"{message_id}"' in text
    ack_id = SERVER["ack"]["frame"]["id"]
    assert ack_id > 2**53
    assert f'"id":"{ack_id}"' in SERVER["ack"]["json_text"]


def test_error_from_carries_code_r_and_retry() -> None:
    from protocol.errors import ErrorCode, ProtocolError

    exc = ProtocolError(ErrorCode.RATE_LIMITED, "slow down", r=11, retry_ms=1500)
    assert sf.error_from(exc) == SERVER["error_rate_limited"]["frame"]


def test_error_from_carries_the_quota_reset() -> None:
    from protocol.errors import ErrorCode, ProtocolError

    exc = ProtocolError(ErrorCode.QUOTA_EXCEEDED, "no likes left today", r=4,
                        reset_ms=1_764_720_000_000)
    assert sf.error_from(exc) == {"t": "error", "code": "quota_exceeded",
                                  "msg": "no likes left today", "r": 4,
                                  "reset_ms": 1_764_720_000_000}
