"""Fuzzing: whatever a client sends, only `ProtocolError` may come out of the protocol layer.

A different exception would escape the gateway's error handling and could take a session or
a node down; a string that passes validation must also survive being encoded back out to the
other user (UTF-8 in msgpack, text in JSON).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgpack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocol import server_frames as sf
from protocol.codec import JsonCodec, MsgpackCodec
from protocol.errors import ProtocolError
from protocol.frames import CLIENT_TYPES, Send, parse_client_frame
from protocol.ids import MAX_ID
from protocol.limits import DEFAULT_LIMITS

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FIELDS = ["t", "r", "m", "c", "body", "media", "on", "id", "before", "limit", "since",
          "token", "kind", "url", "w", "h", "dur"]

# Every kind of msgpack/JSON scalar, with the edges that break naive code: huge ints, ints at
# the 2^63 / 2^64 seams, NaN and infinities, lone surrogates, digit strings, non-ASCII digits.
huge_ints = st.integers(min_value=-(2**200), max_value=2**200)
seam_ints = st.sampled_from([-1, 0, 1, 2**53, 2**53 + 1, MAX_ID, MAX_ID + 1, 2**64 - 1, 2**64,
                             -(2**63), -(2**63) - 1])
texts = st.text(st.characters(exclude_categories=())) | st.sampled_from(
    ["", " ", "\ud800", "a\udfffb", "\u00b2", "\u0661\u0662", "0" * 19, "9" * 20, "-1",
     "https://x/" + "a" * 2100, "x" * 4001, "ping", "image", "https://cdn/x.jpg"])
type_names = st.sampled_from(sorted(CLIENT_TYPES)) | st.text(max_size=5)
scalars = (st.none() | st.booleans() | st.integers() | huge_ints | seam_ints
           | st.floats(allow_nan=True, allow_infinity=True) | texts | st.binary(max_size=16))
keys = st.sampled_from(FIELDS) | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)
# Frames that look like requests, so the fuzzer gets past `t` into every field check.
media_maps = st.fixed_dictionaries(
    {}, optional={"kind": st.sampled_from(["image", "voice", "gif"]) | values,
                  "url": st.sampled_from(["https://cdn/x.jpg", "http://a"]) | values,
                  "w": values, "h": values, "dur": values})
shaped_frames = st.fixed_dictionaries(
    {"t": type_names},
    optional={"r": st.integers(0, 100) | values, "m": st.just("m_1") | values,
              "c": st.just("c-1") | values, "body": st.just("hi") | values,
              "media": media_maps | values, "on": st.booleans() | values,
              "id": st.integers(0, MAX_ID) | values, "before": values,
              "limit": st.integers(0, 101) | values, "since": values, "token": values},
)
any_maps = st.dictionaries(keys | st.integers() | st.binary(max_size=4), values, max_size=8)


def _parse_or_refuse(frame: dict[Any, Any]) -> None:
    try:
        parsed = parse_client_frame(frame, DEFAULT_LIMITS)
    except ProtocolError:
        return
    if isinstance(parsed, Send):
        # an accepted message must be deliverable to the peer over both subprotocols
        media = parsed.media.to_wire() if parsed.media else None
        out = sf.msg(parsed.m, 1, "u", 0, parsed.c, parsed.body, media)
        MsgpackCodec().encode(out)
        JsonCodec().encode(out).encode("utf-8")
    for value in vars_of(parsed):
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogate got through


def vars_of(obj: Any) -> list[Any]:
    return [getattr(obj, name) for name in obj.__slots__]


@FUZZ
@given(st.binary(max_size=512))
@example(b"\x91" * 50_000)
@example(b"\xdd\xff\xff\xff\xff")  # an array header claiming 4G elements
@example(b"\xdf\xff\xff\xff\xff")  # a map header claiming 4G pairs
@example(b"\xc7\x01\xff\x00")  # the timestamp ext with a bad length
@example(b"\xd6\xff\x00\x00\x00\x00")  # a valid timestamp ext: not a map
def test_msgpack_decode_only_raises_protocol_error(data: bytes) -> None:
    try:
        frame = MsgpackCodec().decode(data)
    except ProtocolError:
        return
    assert isinstance(frame, dict)
    _parse_or_refuse(frame)


@FUZZ
@given(st.text(st.characters(exclude_categories=()), max_size=256))
@example("[" * 50_000)
@example('{"a":' * 50_000)
@example('{"t":"read","m":"m","id":"\\u00b2"}')
@example('{"t":"send","r":1,"m":"m","c":"c","body":"\\ud800"}')
@example('{"t":"ping","r":' + "1" * 4400 + "}")
@example('{"t":"send","r":1,"m":"m","c":"c","media":{"kind":"image","url":"https://x","dur":NaN}}')
def test_json_decode_only_raises_protocol_error(text: str) -> None:
    try:
        frame = JsonCodec().decode(text)
    except ProtocolError:
        return
    assert isinstance(frame, dict)
    _parse_or_refuse(frame)


@FUZZ
@given(any_maps | shaped_frames)
@example({"t": "send", "r": 1, "m": "m", "c": "c", "media": {"kind": [], "url": "https://x"}})
@example({"t": "send", "r": 1, "m": "m", "c": "c", "media": {"kind": {}, "url": "https://x"}})
@example({"t": "read", "m": "m", "id": "\u00b2"})
@example({"t": "history", "r": 1, "m": "m", "before": "\u0663"})
@example({"t": "send", "r": 1, "m": "m", "c": "c", "body": "\ud800"})
@example({"t": "ping", "r": 2**1000})
@example({"t": 2**1000, "r": -(2**1000)})
def test_parse_client_frame_only_raises_protocol_error(frame: dict[Any, Any]) -> None:
    _parse_or_refuse(frame)


@FUZZ
@given(shaped_frames)
def test_msgpack_round_trip_of_frames_only_raises_protocol_error(frame: dict[str, Any]) -> None:
    """The same maps through the real codec path: pack, decode, parse."""
    try:
        data = msgpack.packb(frame, use_bin_type=True)
    except (OverflowError, UnicodeEncodeError, ValueError):
        return  # not representable in msgpack, so no client can send it
    _parse_or_refuse(MsgpackCodec().decode(data))


@FUZZ
@given(shaped_frames)
def test_json_round_trip_of_frames_only_raises_protocol_error(frame: dict[str, Any]) -> None:
    try:
        text = json.dumps(frame)
    except (TypeError, ValueError):
        return  # bytes values and the like: not JSON
    _parse_or_refuse(JsonCodec().decode(text))


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def test_deep_nesting_in_every_field_is_refused_or_ignored() -> None:
    deep = _nested(sys.getrecursionlimit() * 3, 1)
    for field in FIELDS:
        frame = {"t": "send", "r": 1, "m": "m", "c": "c", "body": "hi", field: deep}
        _parse_or_refuse(frame)
        _parse_or_refuse({"t": "send", "r": 1, "m": "m", "c": "c",
                          "media": {"kind": "image", "url": "https://x", field: deep}})


def test_deep_nesting_through_the_codecs() -> None:
    for depth in (100, 1_000, 100_000):
        data = b"\x81\xa1x" + b"\x91" * depth + b"\xc0"
        try:
            frame = MsgpackCodec().decode(data)
        except ProtocolError:
            continue
        _parse_or_refuse(frame)
        text = '{"x":' + "[" * depth + "]" * depth + "}"
        try:
            frame = JsonCodec().decode(text)
        except ProtocolError:
            continue
        _parse_or_refuse(frame)


def test_huge_ints_in_every_field() -> None:
    for big in (2**63, 2**64, 2**64 + 1, 10**400, -(10**400)):
        for field in FIELDS:
            _parse_or_refuse({"t": "history", "r": 1, "m": "m", field: big})
            _parse_or_refuse({"t": "send", "r": 1, "m": "m", "c": "c",
                              "media": {"kind": "voice", "url": "https://x", field: big}})
