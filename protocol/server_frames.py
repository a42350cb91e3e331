"""Builders of the frames the server sends: one function per `t`, returning a plain map.

Optional fields are left out rather than sent as null, so both codecs stay compact and the
golden vectors pin the exact shape.
"""

from __future__ import annotations

from typing import Any

from protocol.codec import Frame
from protocol.errors import ErrorCode, ProtocolError


def _with_r(frame: Frame, r: int | None) -> Frame:
    if r is not None:
        frame["r"] = r
    return frame


def welcome(user: str, session: str, node: str, hb: int, exp: int,
            limits: dict[str, int | float]) -> Frame:
    return {"t": "welcome", "user": user, "session": session, "node": node, "hb": hb,
            "exp": exp, "limits": limits}


def ack(r: int, m: str, c: str, message_id: int, ts: int) -> Frame:
    return {"t": "ack", "r": r, "m": m, "c": c, "id": message_id, "ts": ts}


def message_entry(m: str, message_id: int, sender: str, ts: int, c: str, body: str | None,
                  media: dict[str, Any] | None) -> Frame:
    """A stored message as it appears in `msg`, `history` and `sync` (without `t`).

    A message with neither body nor media is a tombstone (unsent, or its sender erased):
    `deleted: true` and nothing of its content, not even the client id.
    """
    frame: Frame = {"m": m, "id": message_id, "from": sender, "ts": ts}
    if body is None and media is None:
        frame["deleted"] = True
        return frame
    if body is not None:
        frame["body"] = body
    if media is not None:
        frame["media"] = media
    frame["c"] = c
    return frame


def msg(m: str, message_id: int, sender: str, ts: int, c: str, body: str | None,
        media: dict[str, Any] | None) -> Frame:
    return {"t": "msg", **message_entry(m, message_id, sender, ts, c, body, media)}


def typing(m: str, sender: str, on: bool) -> Frame:
    return {"t": "typing", "m": m, "from": sender, "on": on}


def receipt(kind: str, m: str, sender: str, message_id: int) -> Frame:
    """A `read` or `delivered` event about `sender`'s progress in match `m`."""
    assert kind in ("read", "delivered")
    return {"t": kind, "m": m, "from": sender, "id": message_id}


def presence_event(user: str, on: bool, seen: int | None) -> Frame:
    frame: Frame = {"t": "presence", "u": user, "on": on}
    if seen is not None:
        frame["seen"] = seen
    return frame


def presence_entry(user: str, on: bool, seen: int | None) -> Frame:
    """One user of a `presence` reply's `users`."""
    frame: Frame = {"u": user, "on": on}
    if seen is not None:
        frame["seen"] = seen
    return frame


def presence_reply(r: int, users: list[Frame]) -> Frame:
    return {"t": "presence", "r": r, "users": users}


def sync_conversation(m: str, peer: str, last_id: int, unread: int, peer_read: int) -> Frame:
    """One match of a `sync` reply's `convs`."""
    return {"m": m, "peer": peer, "last_id": last_id, "unread": unread, "peer_read": peer_read}


def history_reply(r: int | None, m: str, msgs: list[Frame], more: bool) -> Frame:
    """`r` is None only for a caller without request ids (the HTTP API reads `msgs` and
    `more` from it); on the socket a `history` request always has one."""
    return {"t": "history", "r": r, "m": m, "msgs": msgs, "more": more}


def sync_reply(r: int, convs: list[Frame], msgs: list[Frame], cursor: str,
               more: bool) -> Frame:
    return {"t": "sync", "r": r, "convs": convs, "msgs": msgs, "cursor": cursor, "more": more}


def match(m: str, peer: str, ts: int, superlike: bool = False) -> Frame:
    frame: Frame = {"t": "match", "m": m, "peer": peer, "ts": ts}
    if superlike:
        frame["super"] = True
    return frame


def unsent(m: str, message_id: int) -> Frame:
    """Message `message_id` of match `m` was unsent: drop its content (history keeps a
    tombstone)."""
    return {"t": "unsent", "m": m, "id": message_id}


def unmatch(m: str) -> Frame:
    return {"t": "unmatch", "m": m}


def reconnect(after_ms: int) -> Frame:
    return {"t": "reconnect", "after_ms": after_ms}


def ok(r: int | None, **fields: Any) -> Frame:
    return _with_r({"t": "ok", **fields}, r)


def pong(r: int | None) -> Frame:
    return _with_r({"t": "pong"}, r)


def error(code: ErrorCode, msg: str, r: int | None = None,
          retry_ms: int | None = None) -> Frame:
    frame = _with_r({"t": "error", "code": str(code), "msg": msg}, r)
    if retry_ms is not None:
        frame["retry_ms"] = retry_ms
    return frame


def error_from(exc: ProtocolError) -> Frame:
    frame = error(exc.code, exc.msg, exc.r, exc.retry_ms)
    if exc.reset_ms is not None:  # quota_exceeded: when the quota refills (unix ms)
        frame["reset_ms"] = exc.reset_ms
    return frame
