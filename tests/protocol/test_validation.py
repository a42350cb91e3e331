"""Every rejection rule of the codecs and of `parse_client_frame`, one row each.

Each row names the exact `ErrorCode` and the `r` the error must echo (the frame's `r` when it
carried a valid one). `test_every_rejection_rule_has_a_row` reads the raise sites out of the
source, so a new rule without a row here fails the suite (docs/protocol.md, "Errors").
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest

import protocol.codec
import protocol.frames
from protocol import server_frames as sf
from protocol.codec import JsonCodec, MsgpackCodec, codec_for
from protocol.errors import ErrorCode, ProtocolError
from protocol.frames import (
    MAX_R,
    History,
    Media,
    Ping,
    Read,
    Send,
    Sync,
    Typing,
    parse_client_frame,
)
from protocol.ids import MAX_ID
from protocol.limits import DEFAULT_LIMITS, Limits

BAD_FRAME = ErrorCode.BAD_FRAME
BAD_REQUEST = ErrorCode.BAD_REQUEST
UNKNOWN_TYPE = ErrorCode.UNKNOWN_TYPE
TOO_LARGE = ErrorCode.TOO_LARGE

M = "m_1"
URL = "https://cdn.example.com/a.jpg"


def _send(**fields: Any) -> dict[str, Any]:
    return {"t": "send", "r": 7, "m": M, "c": "c-1", **fields}


def _media(**fields: Any) -> dict[str, Any]:
    return _send(media={"kind": "image", "url": URL, **fields})


def _without(frame: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k != key}


SEND_BODY = _send(body="hi")
HISTORY = {"t": "history", "r": 7, "m": M}

# --- codec: what cannot be a frame at all -----------------------------------------------
CODEC_ROWS = [
    ("msgpack_text_frame", MsgpackCodec(), '{"t":"ping"}'),
    ("msgpack_reserved_byte", MsgpackCodec(), b"\xc1"),
    ("msgpack_empty", MsgpackCodec(), b""),
    ("msgpack_truncated", MsgpackCodec(), b"\x82\xa1t\xa4ping"),
    ("msgpack_trailing_bytes", MsgpackCodec(), msgpack.packb({"t": "ping"}) + b"\x00"),
    ("msgpack_invalid_utf8", MsgpackCodec(), b"\x81\xa1t\xa2\xff\xfe"),
    ("msgpack_int_map_key", MsgpackCodec(), msgpack.packb({1: "ping"})),
    ("msgpack_ext_type", MsgpackCodec(), msgpack.packb(msgpack.ExtType(5, b"x"))),
    ("msgpack_nested_ext_type", MsgpackCodec(),
     msgpack.packb({"t": "ping", "x": msgpack.ExtType(1, b"")})),
    ("msgpack_too_deep", MsgpackCodec(), b"\x91" * 100_000 + b"\xc0"),
    ("msgpack_array_not_map", MsgpackCodec(), msgpack.packb(["t", "ping"])),
    ("msgpack_int_not_map", MsgpackCodec(), msgpack.packb(5)),
    ("msgpack_str_not_map", MsgpackCodec(), msgpack.packb("ping")),
    ("msgpack_nil_not_map", MsgpackCodec(), b"\xc0"),
    ("json_binary_frame", JsonCodec(), b'{"t":"ping"}'),
    ("json_invalid", JsonCodec(), '{"t":'),
    ("json_empty", JsonCodec(), ""),
    ("json_trailing_garbage", JsonCodec(), '{"t":"ping"} x'),
    ("json_too_deep", JsonCodec(), "[" * 100_000 + "]" * 100_000),
    ("json_int_past_digit_limit", JsonCodec(), '{"t":"ping","r":' + "9" * 5000 + "}"),
    ("json_array_not_map", JsonCodec(), '["t","ping"]'),
    ("json_string_not_map", JsonCodec(), '"ping"'),
    ("json_null_not_map", JsonCodec(), "null"),
]


@pytest.mark.parametrize(("codec", "data"), [row[1:] for row in CODEC_ROWS],
                         ids=[row[0] for row in CODEC_ROWS])
def test_codec_rejects_with_bad_frame(codec: Any, data: bytes | str) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode(data)
    assert info.value.code is BAD_FRAME
    assert info.value.r is None


# --- parse_client_frame: (id, frame, code, r to echo) -----------------------------------
FRAME_ROWS: list[tuple[str, dict[str, Any], ErrorCode, int | None]] = [
    # t
    ("t_missing", {"r": 7}, BAD_REQUEST, 7),
    ("t_not_a_string", {"t": 1, "r": 7}, BAD_REQUEST, 7),
    ("t_unknown", {"t": "explode", "r": 7}, UNKNOWN_TYPE, 7),
    ("t_unknown_no_r", {"t": "SEND"}, UNKNOWN_TYPE, None),
    # r
    ("r_negative", {"t": "ping", "r": -1}, BAD_REQUEST, None),
    ("r_past_int63", {"t": "ping", "r": MAX_R + 1}, BAD_REQUEST, None),
    ("r_string", {"t": "ping", "r": "7"}, BAD_REQUEST, None),
    ("r_float", {"t": "ping", "r": 7.0}, BAD_REQUEST, None),
    ("r_bool", {"t": "ping", "r": True}, BAD_REQUEST, None),
    ("r_required_send", _without(SEND_BODY, "r"), BAD_REQUEST, None),
    ("r_required_history", _without(HISTORY, "r"), BAD_REQUEST, None),
    ("r_required_sync", {"t": "sync"}, BAD_REQUEST, None),
    ("r_required_presence", {"t": "presence"}, BAD_REQUEST, None),
    ("r_required_refresh", {"t": "refresh", "token": "x"}, BAD_REQUEST, None),
    # strings: m, c, token, since
    ("m_missing", _without(SEND_BODY, "m"), BAD_REQUEST, 7),
    ("m_not_a_string", _send(m=5, body="hi"), BAD_REQUEST, 7),
    ("m_empty", _send(m="", body="hi"), BAD_REQUEST, 7),
    ("m_too_long", _send(m="m" * 65, body="hi"), BAD_REQUEST, 7),
    ("m_lone_surrogate", _send(m="m_\ud800", body="hi"), BAD_REQUEST, 7),
    ("c_missing", _without(SEND_BODY, "c"), BAD_REQUEST, 7),
    ("c_too_long", _send(c="c" * 65, body="hi"), BAD_REQUEST, 7),
    ("auth_token_missing", {"t": "auth", "r": 7}, BAD_REQUEST, 7),
    ("auth_token_not_a_string", {"t": "auth", "token": ["x"]}, BAD_REQUEST, None),
    ("auth_token_too_long", {"t": "auth", "token": "x" * 8193}, BAD_REQUEST, None),
    ("refresh_token_missing", {"t": "refresh", "r": 7}, BAD_REQUEST, 7),
    ("sync_since_not_a_string", {"t": "sync", "r": 7, "since": 3}, BAD_REQUEST, 7),
    ("sync_since_empty", {"t": "sync", "r": 7, "since": ""}, BAD_REQUEST, 7),
    ("sync_since_too_long", {"t": "sync", "r": 7, "since": "x" * 513}, BAD_REQUEST, 7),
    # send: body
    ("send_neither_body_nor_media", _send(), BAD_REQUEST, 7),
    ("send_both_body_and_media", _send(body="hi", media={"kind": "image", "url": URL}),
     BAD_REQUEST, 7),
    ("body_not_a_string", _send(body=42), BAD_REQUEST, 7),
    ("body_empty", _send(body=""), BAD_REQUEST, 7),
    ("body_only_whitespace", _send(body=" \n\t"), BAD_REQUEST, 7),
    ("body_lone_surrogate", _send(body="hi \udc00"), BAD_REQUEST, 7),
    ("body_too_long", _send(body="x" * 4001), TOO_LARGE, 7),
    ("body_too_long_in_code_points", _send(body="\U0001f642" * 4001), TOO_LARGE, 7),
    # send: media
    ("media_not_a_map", _send(media=URL), BAD_REQUEST, 7),
    ("media_kind_missing", _send(media={"url": URL}), BAD_REQUEST, 7),
    ("media_kind_unknown", _media(kind="video"), BAD_REQUEST, 7),
    ("media_kind_unhashable", _media(kind=["image"]), BAD_REQUEST, 7),
    ("media_url_missing", _send(media={"kind": "image"}), BAD_REQUEST, 7),
    ("media_url_not_http", _media(url="file:///etc/passwd"), BAD_REQUEST, 7),
    ("media_url_not_a_string", _media(url=1), BAD_REQUEST, 7),
    ("media_url_lone_surrogate", _media(url="https://x/\ud83d"), BAD_REQUEST, 7),
    ("media_url_too_long", _media(url="https://x/" + "a" * 2039), TOO_LARGE, 7),
    ("media_w_zero", _media(w=0), BAD_REQUEST, 7),
    ("media_w_too_big", _media(w=20_001), BAD_REQUEST, 7),
    ("media_w_float", _media(w=10.0), BAD_REQUEST, 7),
    ("media_h_bool", _media(h=True), BAD_REQUEST, 7),
    ("media_h_negative", _media(h=-5), BAD_REQUEST, 7),
    ("media_dur_negative", _media(dur=-0.1), BAD_REQUEST, 7),
    ("media_dur_too_long", _media(dur=3600.5), BAD_REQUEST, 7),
    ("media_dur_nan", _media(dur=float("nan")), BAD_REQUEST, 7),
    ("media_dur_infinite", _media(dur=float("inf")), BAD_REQUEST, 7),
    ("media_dur_string", _media(dur="3"), BAD_REQUEST, 7),
    ("media_dur_bool", _media(dur=True), BAD_REQUEST, 7),
    # typing
    ("typing_on_missing", {"t": "typing", "r": 7, "m": M}, BAD_REQUEST, 7),
    ("typing_on_int", {"t": "typing", "m": M, "on": 1}, BAD_REQUEST, None),
    ("typing_m_missing", {"t": "typing", "r": 7, "on": True}, BAD_REQUEST, 7),
    # read / delivered: message ids
    ("read_id_missing", {"t": "read", "r": 7, "m": M}, BAD_REQUEST, 7),
    ("read_id_negative", {"t": "read", "r": 7, "m": M, "id": -1}, BAD_REQUEST, 7),
    ("read_id_past_int63", {"t": "read", "r": 7, "m": M, "id": MAX_ID + 1}, BAD_REQUEST, 7),
    ("read_id_string_past_int63", {"t": "read", "r": 7, "m": M, "id": str(MAX_ID + 1)},
     BAD_REQUEST, 7),
    ("read_id_string_20_digits", {"t": "read", "r": 7, "m": M, "id": "0" * 20},
     BAD_REQUEST, 7),
    ("read_id_not_digits", {"t": "read", "r": 7, "m": M, "id": "12a"}, BAD_REQUEST, 7),
    ("read_id_signed_string", {"t": "read", "r": 7, "m": M, "id": "-5"}, BAD_REQUEST, 7),
    ("read_id_superscript_digit", {"t": "read", "r": 7, "m": M, "id": "\u00b2"},
     BAD_REQUEST, 7),
    ("read_id_arabic_digits", {"t": "read", "r": 7, "m": M, "id": "\u0661\u0662"},
     BAD_REQUEST, 7),
    ("read_id_float", {"t": "read", "r": 7, "m": M, "id": 5.0}, BAD_REQUEST, 7),
    ("read_id_bool", {"t": "read", "r": 7, "m": M, "id": True}, BAD_REQUEST, 7),
    ("read_m_missing", {"t": "read", "r": 7, "id": 5}, BAD_REQUEST, 7),
    ("delivered_id_missing", {"t": "delivered", "r": 7, "m": M}, BAD_REQUEST, 7),
    ("delivered_id_not_digits", {"t": "delivered", "m": M, "id": "x"}, BAD_REQUEST, None),
    # history
    ("history_limit_zero", {**HISTORY, "limit": 0}, BAD_REQUEST, 7),
    ("history_limit_too_big", {**HISTORY, "limit": 101}, BAD_REQUEST, 7),
    ("history_limit_string", {**HISTORY, "limit": "10"}, BAD_REQUEST, 7),
    ("history_limit_bool", {**HISTORY, "limit": True}, BAD_REQUEST, 7),
    ("history_before_invalid", {**HISTORY, "before": "yesterday"}, BAD_REQUEST, 7),
    ("history_m_missing", _without(HISTORY, "m"), BAD_REQUEST, 7),
]


@pytest.mark.parametrize(("frame", "code", "echo"), [row[1:] for row in FRAME_ROWS],
                         ids=[row[0] for row in FRAME_ROWS])
def test_parse_rejects(frame: dict[str, Any], code: ErrorCode, echo: int | None) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(frame, DEFAULT_LIMITS)
    assert info.value.code is code
    assert info.value.r == echo
    # and the error frame the client sees carries the same code and r
    reply = sf.error_from(info.value)
    assert reply["code"] == code.value
    assert reply.get("r") == echo


def _wire_forms(frame: dict[str, Any]) -> list[tuple[Any, bytes | str]]:
    """The row as each codec would receive it, where that wire can carry it at all."""
    forms: list[tuple[Any, bytes | str]] = []
    with contextlib.suppress(OverflowError, UnicodeEncodeError):  # lone surrogates, ints > 2^64
        forms.append((MsgpackCodec(), msgpack.packb(frame)))
    forms.append((JsonCodec(), json.dumps(frame)))
    return forms


@pytest.mark.parametrize(("frame", "code", "echo"), [row[1:] for row in FRAME_ROWS],
                         ids=[row[0] for row in FRAME_ROWS])
def test_rejection_is_the_same_over_both_codecs(
        frame: dict[str, Any], code: ErrorCode, echo: int | None) -> None:
    for codec, data in _wire_forms(frame):
        with pytest.raises(ProtocolError) as info:
            parse_client_frame(codec.decode(data), DEFAULT_LIMITS)
        assert (info.value.code, info.value.r) == (code, echo), codec.name


def _message_patterns(module: Any) -> list[str]:
    """A regex per error message in `module`'s raise sites (f-string holes match anything)."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    patterns = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "fail":
            msg = node.args[0]
        elif isinstance(func, ast.Name) and func.id == "ProtocolError":
            msg = node.args[1]
        else:
            continue
        if isinstance(msg, ast.Constant):
            patterns.append(re.escape(str(msg.value)))
        elif isinstance(msg, ast.JoinedStr):
            patterns.append("".join(re.escape(str(part.value)) if isinstance(part, ast.Constant)
                                    else ".*" for part in msg.values))
    return patterns


@pytest.mark.parametrize("module", [protocol.codec, protocol.frames], ids=["codec", "frames"])
def test_every_rejection_rule_has_a_row(module: Any) -> None:
    observed: set[str] = set()
    for _, codec, data in CODEC_ROWS:
        with pytest.raises(ProtocolError) as info:
            codec.decode(data)
        observed.add(info.value.msg)
    for _, frame, _, _ in FRAME_ROWS:
        with pytest.raises(ProtocolError) as info:
            parse_client_frame(frame, DEFAULT_LIMITS)
        observed.add(info.value.msg)
    patterns = _message_patterns(module)
    assert patterns, "no raise sites found: did the module change shape?"
    missing = [p for p in patterns
               if not any(re.fullmatch(p, m, re.DOTALL) for m in observed)]
    assert not missing, f"rejection rules without a row: {missing}"


# --- what must still be accepted at the edges ------------------------------------------
ACCEPT_ROWS: list[tuple[str, dict[str, Any], Any]] = [
    ("body_exactly_4000", _send(body="x" * 4000),
     Send(r=7, m=M, c="c-1", body="x" * 4000, media=None)),
    ("body_4000_emoji", _send(body="\U0001f642" * 4000),
     Send(r=7, m=M, c="c-1", body="\U0001f642" * 4000, media=None)),
    ("m_exactly_64", _send(m="m" * 64, body="hi"),
     Send(r=7, m="m" * 64, c="c-1", body="hi", media=None)),
    ("url_exactly_2048", _media(url="https://x/" + "a" * 2038),
     Send(r=7, m=M, c="c-1", body=None, media=Media("image", "https://x/" + "a" * 2038))),
    ("media_null_body", _send(body=None, media={"kind": "gif", "url": "http://g/1.gif"}),
     Send(r=7, m=M, c="c-1", body=None, media=Media("gif", "http://g/1.gif"))),
    ("media_bounds", _media(w=20_000, h=1, dur=0),
     Send(r=7, m=M, c="c-1", body=None, media=Media("image", URL, 20_000, 1, 0.0))),
    ("media_dur_int_becomes_float", _media(dur=3600),
     Send(r=7, m=M, c="c-1", body=None, media=Media("image", URL, dur=3600.0))),
    ("media_null_optionals", _media(w=None, h=None, dur=None),
     Send(r=7, m=M, c="c-1", body=None, media=Media("image", URL))),
    ("read_id_json_string", {"t": "read", "m": M, "id": "794354201399406599"},
     Read(m=M, id=794354201399406599)),
    ("read_id_zero", {"t": "read", "m": M, "id": 0}, Read(m=M, id=0)),
    ("read_id_max", {"t": "read", "m": M, "id": MAX_ID}, Read(m=M, id=MAX_ID)),
    ("read_id_max_as_string", {"t": "read", "m": M, "id": str(MAX_ID)}, Read(m=M, id=MAX_ID)),
    ("history_before_json_string", {**HISTORY, "before": "42", "limit": 100},
     History(r=7, m=M, before=42, limit=100)),
    ("history_nulls_are_defaults", {**HISTORY, "before": None, "limit": None},
     History(r=7, m=M, before=None, limit=50)),
    ("history_limit_one", {**HISTORY, "limit": 1}, History(r=7, m=M, before=None, limit=1)),
    ("sync_since_null", {"t": "sync", "r": 7, "since": None}, Sync(r=7, since=None)),
    ("r_null_is_no_r", {"t": "typing", "r": None, "m": M, "on": True}, Typing(m=M, on=True)),
    ("r_zero", {"t": "ping", "r": 0}, Ping(r=0)),
    ("r_max", {"t": "ping", "r": MAX_R}, Ping(r=MAX_R)),
    ("unknown_fields_ignored", {"t": "ping", "x": {"y": [1, 2]}, "v": 2}, Ping()),
]


@pytest.mark.parametrize(("frame", "expected"), [row[1:] for row in ACCEPT_ROWS],
                         ids=[row[0] for row in ACCEPT_ROWS])
def test_parse_accepts(frame: dict[str, Any], expected: Any) -> None:
    assert parse_client_frame(frame, DEFAULT_LIMITS) == expected


def test_limits_are_taken_from_the_argument() -> None:
    tight = Limits(max_body_chars=3, history_max=5, history_default=2)
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(_send(body="four"), tight)
    assert info.value.code is TOO_LARGE
    assert parse_client_frame(HISTORY, tight) == History(r=7, m=M, before=None, limit=2)
    with pytest.raises(ProtocolError):
        parse_client_frame({**HISTORY, "limit": 6}, tight)


def test_codec_for_negotiated_subprotocol() -> None:
    assert isinstance(codec_for(None), MsgpackCodec)
    assert isinstance(codec_for("rdv.v1.msgpack"), MsgpackCodec)
    assert isinstance(codec_for("rdv.v1.json"), JsonCodec)
    assert isinstance(codec_for("something.else"), MsgpackCodec)
    assert codec_for("rdv.v1.json").binary is False
    assert codec_for("rdv.v1.msgpack").binary is True
    assert protocol.codec.SUBPROTOCOLS == ("rdv.v1.msgpack", "rdv.v1.json")


def test_json_encode_stringifies_ids_only_and_copies() -> None:
    frame = {"t": "x", "id": 2**60, "ts": 2**40, "before": 1, "last_id": 2, "peer_read": 3,
             "on": True, "nested": [{"id": 5, "unread": 6}], "id2": 7}
    text = JsonCodec().encode(frame)
    assert json.loads(text) == {"t": "x", "id": str(2**60), "ts": 2**40, "before": "1",
                                "last_id": "2", "peer_read": "3", "on": True,
                                "nested": [{"id": "5", "unread": 6}], "id2": 7}
    assert frame["id"] == 2**60  # the caller's frame is not changed


def test_json_encode_writes_utf8_not_escapes() -> None:
    assert JsonCodec().encode({"body": "Café \U0001f642"}) == '{"body":"Café \U0001f642"}'
