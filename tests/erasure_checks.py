"""What an account erasure must leave behind, checked on every table and Redis key.

The scenario (`build`) gives the user to erase every kind of data the node keeps: matches
with messages both ways, receipts, a match closed before, swipes given and received (a
pass received too), blocks made and received, a device, settings, a socket (presence, the
connection cap), rate-limit buckets, send claims, queued pushes. The checks list the tables
from the schema (`sqlite_master`, `system_schema.tables`) and the Redis keys with SCAN, so a
table or key added later is checked without a change here, and hold each to `ALLOWED`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client import RendezvousClient
from push.queue import PushJob
from tests.conftest import Harness

USER = "erin-7f3a"  # distinctive: found by substring in any value, key or packed job
PEER, CLOSED_PEER, PASSED, PASSER, LIKER, LIKED, BLOCKED, BLOCKER = (
    "pat", "quinn", "sam", "sol", "vic", "wes", "uma", "tia")
DEVICE = "tok-erin-device-0001"


def _closed_match(table: str, row: dict[str, Any]) -> bool:
    return row.get("closed_ts") is not None and USER in (row.get("user_a"), row.get("user_b"))


# The residue an erasure leaves on purpose (docs/privacy.md, "Erasure", "What stays"): a
# row of any other table holding the user's id anywhere fails the check.
ALLOWED: dict[str, Any] = {
    # tombstones: who sent what when, for the peer's history; no body, media or client id
    "messages": lambda t, r: (r["sender"] == USER and r["body"] is None
                              and r["media"] is None and not r["client_id"]),
    # the match row, closed: it is what lets the peer read that history
    "matches": _closed_match,
    # blocks others made against the user stay in force
    "blocks": lambda t, r: r["target"] == USER and r["user"] != USER,
    "blocks_received": lambda t, r: r["target"] == USER and r["user"] != USER,
    # the erasure record (a second DELETE answers its erased_at) and the tokens not-before
    "erasures": lambda t, r: r["user"] == USER and r["done_ts"] is not None,
    "token_revocations": lambda t, r: r["user"] == USER,
}
ALLOWED_PREFIXES = ("report",)  # reports keep their evidence until retention ends


def holds_user(value: Any) -> bool:
    if isinstance(value, str):
        return USER in value
    if isinstance(value, bytes | bytearray):
        return USER.encode() in value
    if isinstance(value, tuple | list | set | frozenset):
        return any(holds_user(v) for v in value)
    if isinstance(value, dict):
        return any(holds_user(k) or holds_user(v) for k, v in value.items())
    return False


def leftovers(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Rows holding the user that `ALLOWED` does not allow, by table."""
    bad: dict[str, list[dict[str, Any]]] = {}
    for table, rows in tables.items():
        if table.startswith(ALLOWED_PREFIXES):
            continue
        allowed = ALLOWED.get(table)
        for row in rows:
            if holds_user(row) and not (allowed is not None and allowed(table, row)):
                bad.setdefault(table, []).append(row)
    return bad


def sqlite_tables(path: Path) -> dict[str, list[dict[str, Any]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: [dict(r) for r in conn.execute(f'SELECT * FROM "{name}"')]
                for name in names}
    finally:
        conn.close()


def cassandra_tables(session: Any, keyspace: str) -> dict[str, list[dict[str, Any]]]:
    names = [r["table_name"] for r in session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,))]
    return {name: list(session.execute(f"SELECT * FROM {keyspace}.{name}")) for name in names}


async def redis_leftovers(client: Any) -> dict[str, Any]:
    """Every key whose name or content holds the user (no Redis residue is allowed)."""
    bad: dict[str, Any] = {}
    async for key in client.scan_iter(count=1000):
        kind = (await client.type(key)).decode()
        content: Any
        if kind == "string":
            content = await client.get(key)
        elif kind == "hash":
            content = await client.hgetall(key)
        elif kind == "zset":
            content = await client.zrange(key, 0, -1)
        elif kind == "set":
            content = await client.smembers(key)
        elif kind == "list":
            content = await client.lrange(key, 0, -1)
        elif kind == "stream":
            content = await client.xrange(key)
        else:
            content = None
        if holds_user(key) or holds_user(content):
            bad[key.decode()] = content
    return bad


@dataclass
class Scene:
    match: str  # open match of USER and PEER, messages both ways
    closed: str  # match of USER and CLOSED_PEER, unmatched by the peer before the erasure
    user_msgs: list[int]
    user_cids: list[tuple[str, str]]  # (match, client id) of every message the user sent
    peer_msgs: list[int]
    erin: RendezvousClient  # USER's socket
    pat: RendezvousClient  # PEER's socket
    token: str  # USER's token from before the erasure


async def build(h: Harness) -> Scene:
    """Give USER one of everything (see the module docstring)."""
    erin_http = h.http(USER)
    m = await h.pair(USER, PEER)
    closed = await h.pair(USER, CLOSED_PEER)
    await erin_http.put_device(DEVICE, "apns", app="app.erin", locale="fr")
    await erin_http.put_settings(push_previews=True, read_receipts=False)
    await erin_http.swipe(PASSED, "pass")
    await h.http(PASSER).swipe(USER, "pass")
    await h.http(LIKER).swipe(USER, "superlike")
    await erin_http.swipe(LIKED, "like")
    await erin_http.block(BLOCKED)
    await h.http(BLOCKER).block(USER)
    # on nodes with quotas and openers on (RULES_ON) the likes spend quota and the first
    # message below is an opener
    pat = await h.connect(PEER)
    # while USER is offline: a push to them (its burst gate is theirs too)
    peer_msgs = [(await pat.send(m, "from pat, erin offline"))["id"]]
    await asyncio.sleep(0.3)  # the dispatcher takes it
    erin = await h.connect(USER)
    acks = [await erin.send(m, f"from erin {i}") for i in range(3)]
    user_msgs = [a["id"] for a in acks]
    peer_msgs += [(await pat.send(m, f"from pat {i}"))["id"] for i in range(2)]
    await erin.read(m, peer_msgs[-1], ack=True)
    await pat.read(m, user_msgs[-1], ack=True)
    acks.append(await erin.send(closed, "to quinn"))
    await h.http(CLOSED_PEER).unmatch(closed)
    await erin_http.mute(m)  # a mute row (after the push above, which it would stop)
    # pushes waiting in the queue: to the user, and about the user (their message)
    queue = h.node.backends.push_queue
    assert await queue.put(PushJob(user=USER, kind="message", match_id=m, message_id=1,
                                   sender=PEER), delay_s=3600)
    assert await queue.put(PushJob(user=PEER, kind="message", match_id=m, message_id=2,
                                   sender=USER), delay_s=3600)
    return Scene(m, closed, user_msgs, [(a["m"], a["c"]) for a in acks], peer_msgs, erin, pat,
                 h.token(USER))


async def after_second_of(ms: int) -> None:
    """Wait for a later wall-clock second than `ms` (token `iat` is in whole seconds)."""
    await asyncio.sleep(max(0.0, (ms // 1000 + 1) - time.time()) + 0.01)


# Node settings that make the scenario leave quota counters and opener records too.
RULES_ON: dict[str, Any] = {"likes_per_day": 100, "superlikes_per_day": 100,
                            "openers_per_day": 100}


def memory_leftovers(node: Any) -> dict[str, Any]:
    """The embedded default's in-process state holding the user (none is allowed): the
    maps of presence, the connection cap, flap marks, push gates and rate limits."""
    b = node.backends
    maps = {
        "presence": (b.presence._sessions, b.presence._seen),
        "connection_cap": (b.connection_cap._by_user,),
        "flap_marks": (b.flap_marks._marks,),
        "push_gates": (b.push_gates._bursts, b.push_gates._delivered),
        "send_limiter": (b.send_limiter._buckets._buckets,),
        "swipe_limiter": (b.swipe_limiter._buckets._buckets,),
        "quotas": (b.quotas._counts, b.quotas._returned),
    }
    if b.openers is not None:
        maps["openers"] = (b.openers._by_user,)
    return {name: held for name, held in maps.items() if holds_user(list(held))}
