"""The badge number: a user's total unread messages, counted in the push worker.

Counting touches every conversation, so it never runs on the chat path, and both the
number of conversations looked at and the total are capped: an app shows "99+" anyway.
"""

from __future__ import annotations

from storage import Store

BADGE_CAP = 99
BADGE_CONVERSATIONS = 50  # the most recently active ones; older unread rarely matter


async def unread_badge(store: Store, user: str, *, cap: int = BADGE_CAP,
                       conversations: int = BADGE_CONVERSATIONS) -> int:
    """Messages sent to `user` after their read cursor, over their most recently active
    conversations, at most `cap`."""
    total = 0
    for conv in (await store.conversations(user))[:conversations]:
        if not conv.last_id:
            continue
        mine = (await store.cursors(conv.match_id)).get(user)
        read_id = mine.read_id if mine else 0
        if read_id >= conv.last_id:
            continue
        total += await store.count_unread(conv.match_id, user, read_id, cap=cap - total,
                                           newest=conv.last_id)
        if total >= cap:
            return cap
    return total
