"""The two subprotocols: `rdv.v1.msgpack` (binary frames) and `rdv.v1.json` (text frames).

Both carry the same shapes. JSON cannot hold integers past 2^53 exactly, so the JSON codec
writes every message-id field as a decimal string; validation accepts either form back.
"""

from __future__ import annotations

import json
from typing import Any, Final

import msgpack

from protocol.errors import ErrorCode, ProtocolError

MSGPACK: Final = "rdv.v1.msgpack"
JSON: Final = "rdv.v1.json"
SUBPROTOCOLS: Final = (MSGPACK, JSON)

# Fields that hold message ids (64-bit) anywhere in a server frame.
ID_FIELDS: Final = frozenset({"id", "before", "last_id", "peer_read"})

# A frame as a map, decoded or about to be encoded: the one alias every package uses.
Frame = dict[str, Any]


class Codec:
    """Encodes server frames and decodes client frames for one subprotocol."""

    name: str
    binary: bool

    def encode(self, frame: Frame) -> bytes | str:
        raise NotImplementedError

    def decode(self, data: bytes | str) -> Frame:
        """One client frame as a map; `ProtocolError(bad_frame)` if it is not one."""
        raise NotImplementedError


def _ext_refused(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not part of the protocol")


class MsgpackCodec(Codec):
    name = MSGPACK
    binary = True

    def __init__(self) -> None:
        # one Packer for every frame: `msgpack.packb` builds a new one per call, which
        # costs as much as packing a small frame. `pack` holds the GIL throughout and
        # resets its buffer even when it raises, so sharing it across calls is safe.
        self._pack = msgpack.Packer(use_bin_type=True).pack

    def encode(self, frame: Frame) -> bytes:
        data: bytes = self._pack(frame)
        return data

    def decode(self, data: bytes | str) -> Frame:
        if isinstance(data, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "rdv.v1.msgpack takes binary frames")
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_ext_refused,
                                  timestamp=0)
        except Exception as exc:  # any undecodable input, whatever the library raises
            raise ProtocolError(ErrorCode.BAD_FRAME, "not a msgpack value") from exc
        return _as_map(obj)


class JsonCodec(Codec):
    name = JSON
    binary = False

    def encode(self, frame: Frame) -> str:
        return json.dumps(ids_as_strings(frame), separators=(",", ":"), ensure_ascii=False)

    def decode(self, data: bytes | str) -> Frame:
        if isinstance(data, bytes):
            raise ProtocolError(ErrorCode.BAD_FRAME, "rdv.v1.json takes text frames")
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(ErrorCode.BAD_FRAME, "not a JSON value") from exc
        return _as_map(obj)


def _as_map(obj: object) -> Frame:
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "a frame must be a map")
    return obj


def ids_as_strings(obj: Any) -> Any:
    """A copy of `obj` with every int under an id field written as a string."""
    if isinstance(obj, dict):
        return {
            k: (str(v) if k in ID_FIELDS and type(v) is int else ids_as_strings(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [ids_as_strings(v) for v in obj]
    return obj


CODECS: Final[dict[str, Codec]] = {MSGPACK: MsgpackCodec(), JSON: JsonCodec()}


def codec_for(subprotocol: str | None) -> Codec:
    """The codec of a negotiated subprotocol; msgpack when none was negotiated."""
    return CODECS.get(subprotocol or MSGPACK, CODECS[MSGPACK])
