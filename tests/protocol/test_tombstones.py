"""A stored message without body or media is a tombstone on the wire (docs/protocol.md,
"Unsend" and docs/privacy.md): `deleted: true` and none of its content."""

from __future__ import annotations

from protocol import server_frames
from storage.base import Message


def test_a_message_without_content_is_sent_as_a_tombstone() -> None:
    frame = server_frames.msg("m1", 7, "ann", 1_000, "c-1", None, None)
    assert frame == {"t": "msg", "m": "m1", "id": 7, "from": "ann", "ts": 1_000,
                     "deleted": True}


def test_a_message_with_content_is_not() -> None:
    assert "deleted" not in server_frames.msg("m1", 7, "ann", 1_000, "c-1", "hi", None)
    media = {"kind": "gif", "url": "https://x/y.gif"}
    assert "deleted" not in server_frames.message_entry("m1", 7, "ann", 1, "c", None, media)


def test_the_stored_record_knows_it_too() -> None:
    assert Message("m1", 7, "ann", "c-1", 1_000).deleted
    assert not Message("m1", 7, "ann", "c-1", 1_000, body="hi").deleted
