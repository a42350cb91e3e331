"""The golden cases: what each vector in `vectors.json` is made from.

Server cases are calls of the `protocol.server_frames` builders; client cases are wire maps
(ids as ints) with the dataclass `parse_client_frame` must turn them into. `make_vectors.py`
writes the bytes of these cases once; `test_vectors.py` checks the code against the file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocol import server_frames as sf
from protocol.errors import ErrorCode
from protocol.frames import (
    Auth,
    ClientFrame,
    Delivered,
    History,
    Media,
    Ping,
    PresenceQuery,
    Read,
    Refresh,
    Send,
    Sync,
    Typing,
    Unsend,
)
from protocol.ids import compose, ms_of
from protocol.limits import Limits

# Realistic ids well past 2^53, so the JSON form must carry them as strings.
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in unix ms
ID1 = compose(T0, 3, 0)
ID2 = compose(T0 + 1, 3, 7)
ID3 = compose(T0 + 2, 1023, 4095)
M = "m_01HZX3KQ"
ALICE = "u_alice"
BOB = "u_bob"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1X2FsaWNlIn0.c2ln"
IMAGE_URL = "https://cdn.example.com/p/1.jpg"
VOICE_URL = "https://cdn.example.com/v/2.m4a"
MEDIA: dict[str, Any] = {"kind": "image", "url": IMAGE_URL, "w": 1080, "h": 1350}
VOICE: dict[str, Any] = {"kind": "voice", "url": VOICE_URL, "dur": 12.5}


def _msg(message_id: int, sender: str, body: str) -> dict[str, Any]:
    return sf.msg(M, message_id, sender, ms_of(message_id), f"c-{message_id % 1000}", body, None)


SERVER_CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "welcome": lambda: sf.welcome(ALICE, "s_9f2c", "node-1", 25, 1_767_229_200,
                                  Limits().for_client()),
    "ack": lambda: sf.ack(1, M, "c-1", ID1, T0),
    "msg_body": lambda: sf.msg(M, ID1, BOB, T0, "c-1", "Hi! Café tonight? \U0001f642", None),
    "msg_media": lambda: sf.msg(M, ID2, BOB, T0 + 1, "c-2", None, MEDIA),
    "msg_media_voice": lambda: sf.msg(M, ID3, BOB, T0 + 2, "c-3", None, VOICE),
    "typing_on": lambda: sf.typing(M, BOB, True),
    "typing_off": lambda: sf.typing(M, BOB, False),
    "read": lambda: sf.receipt("read", M, BOB, ID2),
    "delivered": lambda: sf.receipt("delivered", M, BOB, ID2),
    "presence_event_online": lambda: sf.presence_event(BOB, True, None),
    "presence_event_offline": lambda: sf.presence_event(BOB, False, T0 - 60_000),
    "presence_reply": lambda: sf.presence_reply(
        4, [{"u": BOB, "on": True}, {"u": "u_carol", "on": False, "seen": T0 - 3_600_000}]),
    "history": lambda: sf.history_reply(5, M, [_msg(ID2, BOB, "second"),
                                               _msg(ID1, ALICE, "first")], True),
    "history_empty": lambda: sf.history_reply(6, M, [], False),
    "sync": lambda: sf.sync_reply(
        7, [{"m": M, "peer": BOB, "last_id": ID2, "unread": 1, "peer_read": ID1}],
        [_msg(ID2, BOB, "second")], "cur_0001", False),
    "match": lambda: sf.match(M, BOB, T0),
    "match_super": lambda: sf.match(M, BOB, T0, superlike=True),
    "unmatch": lambda: sf.unmatch(M),
    "unsent": lambda: sf.unsent(M, ID2),
    "error_opener_limit": lambda: sf.error(ErrorCode.OPENER_LIMIT, "at most 10 first "
                                           "messages a day", 14, retry_ms=3_600_000),
    "error_duplicate_opener": lambda: sf.error(ErrorCode.DUPLICATE_OPENER, "the same first "
                                               "message was sent in another match", 15),
    "reconnect": lambda: sf.reconnect(2500),
    "ok_refresh": lambda: sf.ok(8, exp=1_767_232_800),
    "ok_read": lambda: sf.ok(9),
    "pong": lambda: sf.pong(10),
    "pong_no_r": lambda: sf.pong(None),
    "error_rate_limited": lambda: sf.error(ErrorCode.RATE_LIMITED, "slow down", 11,
                                           retry_ms=1500),
    "error_no_r": lambda: sf.error(ErrorCode.BAD_FRAME, "not a msgpack value"),
}

# name -> (the wire map with ids as ints, what parse_client_frame must return)
CLIENT_CASES: dict[str, tuple[dict[str, Any], ClientFrame]] = {
    "auth": ({"t": "auth", "token": JWT}, Auth(token=JWT)),
    "send_body": (
        {"t": "send", "r": 1, "m": M, "c": "c-1", "body": "Hi! Café tonight? \U0001f642"},
        Send(r=1, m=M, c="c-1", body="Hi! Café tonight? \U0001f642", media=None),
    ),
    "send_media": (
        {"t": "send", "r": 2, "m": M, "c": "c-2", "media": MEDIA},
        Send(r=2, m=M, c="c-2", body=None,
             media=Media(kind="image", url=IMAGE_URL, w=1080, h=1350)),
    ),
    "send_media_voice": (
        {"t": "send", "r": 3, "m": M, "c": "c-3", "media": VOICE},
        Send(r=3, m=M, c="c-3", body=None, media=Media(kind="voice", url=VOICE_URL,
                                                       dur=12.5)),
    ),
    "typing": ({"t": "typing", "m": M, "on": True}, Typing(m=M, on=True)),
    "typing_with_r": ({"t": "typing", "r": 4, "m": M, "on": False}, Typing(m=M, on=False, r=4)),
    "read": ({"t": "read", "m": M, "id": ID2}, Read(m=M, id=ID2)),
    "read_with_r": ({"t": "read", "r": 5, "m": M, "id": ID2}, Read(m=M, id=ID2, r=5)),
    "delivered": ({"t": "delivered", "m": M, "id": ID3}, Delivered(m=M, id=ID3)),
    "delivered_with_r": ({"t": "delivered", "r": 6, "m": M, "id": ID3},
                         Delivered(m=M, id=ID3, r=6)),
    "history": ({"t": "history", "r": 7, "m": M, "before": ID2, "limit": 20},
                History(r=7, m=M, before=ID2, limit=20)),
    "history_defaults": ({"t": "history", "r": 8, "m": M},
                         History(r=8, m=M, before=None, limit=50)),
    "sync": ({"t": "sync", "r": 9, "since": "cur_0001"}, Sync(r=9, since="cur_0001")),
    "sync_first": ({"t": "sync", "r": 10}, Sync(r=10, since=None)),
    "presence": ({"t": "presence", "r": 11}, PresenceQuery(r=11)),
    "refresh": ({"t": "refresh", "r": 12, "token": JWT}, Refresh(r=12, token=JWT)),
    "ping": ({"t": "ping", "r": 13}, Ping(r=13)),
    "ping_no_r": ({"t": "ping"}, Ping()),
    "unsend": ({"t": "unsend", "r": 14, "m": M, "id": ID2}, Unsend(r=14, m=M, id=ID2)),
}
