"""Durable state behind the `Store` protocol: SQLite for one machine, Cassandra for a cluster."""

from storage.base import (
    Conversation,
    Cursors,
    Device,
    MatchRecord,
    Message,
    Page,
    Settings,
    Store,
    StoreUnavailable,
    SwipeRecord,
    match_id_for,
)

__all__ = [
    "Conversation",
    "Cursors",
    "Device",
    "MatchRecord",
    "Message",
    "Page",
    "Settings",
    "Store",
    "StoreUnavailable",
    "SwipeRecord",
    "match_id_for",
]
