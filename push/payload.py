"""Pure builders of notifications: discreet by default, a preview only when the user asks.

A lock-screen preview of a dating message can out a user, so the default payload names
nobody and quotes nothing; the app shows a localised "New message" from `loc_key`.
"""

from __future__ import annotations

import hashlib

from push.base import Notification
from storage import MatchRecord, Message

PREVIEW_CHARS = 120


def message_notification(message: Message, device_token_id: str, previews: bool,
                         badge: int | None = None) -> Notification:
    body = None
    if previews:
        body = (message.body or "")[:PREVIEW_CHARS] if message.body else None
    return Notification(
        push_id=f"msg:{message.match_id}:{message.id}:{device_token_id}",
        kind="message",
        match_id=message.match_id,
        loc_key="rdv.message.media" if message.media and previews else "rdv.message.new",
        body=body,
        collapse_id=f"m:{message.match_id}",
        badge=badge,
        data={"t": "msg", "m": message.match_id, "id": str(message.id)},
    )


def match_notification(match: MatchRecord, device_token_id: str,
                       badge: int | None = None) -> Notification:
    return _match_made("match", "rdv.match.new", match, device_token_id, badge)


def superlike_notification(match: MatchRecord, device_token_id: str,
                           badge: int | None = None) -> Notification:
    """A match made by a super like, for the user who received the super like: as discreet
    as a match (no name), its own key so the app can say "someone super liked you"."""
    return _match_made("superlike", "rdv.superlike.new", match, device_token_id, badge)


def _match_made(kind: str, loc_key: str, match: MatchRecord, device_token_id: str,
                badge: int | None) -> Notification:
    return Notification(
        push_id=f"{kind}:{match.id}:{device_token_id}",
        kind=kind,
        match_id=match.id,
        loc_key=loc_key,
        collapse_id=f"match:{match.id}",
        badge=badge,
        data={"t": kind, "m": match.id},
    )


def like_notification(liker: str, ts: int, device_token_id: str,
                      badge: int | None = None) -> Notification:
    """Someone super liked the user: no name, no id of the liker. Repeated super likes of
    one liker collapse into one notification (APNS collapse id, FCM collapse key and tag)
    by a digest of the liker that the app cannot turn back into a user."""
    who = hashlib.blake2b(liker.encode(), digest_size=8, person=b"rdv-like").hexdigest()
    return Notification(
        push_id=f"like:{who}:{ts}:{device_token_id}",
        kind="like",
        match_id=None,
        loc_key="rdv.like.new",
        collapse_id=f"like:{who}",
        badge=badge,
        data={"t": "like"},
    )
