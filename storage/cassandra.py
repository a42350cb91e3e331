"""`CassandraStore`: the cluster's durable state in Apache Cassandra.

Tables and why they look as they do: `storage.cassandra_schema`. The driver is bridged to
asyncio by `storage.cassandra_bridge` (every request goes out with `execute_async`; answers
come back to the loop in batches); the rows of a message save are batched with the other
saves of the loop turn by `storage.cassandra_writes`; which bucket partitions a message read
touches is planned by `storage.cassandra_reads`. Connecting, the schema and preparing
happen once, in `start`, on an executor thread. No call blocks the event loop after that.

Ordering without read-before-write: a cell that may only move forward (a conversation's
last message, a read cursor, a swipe) is written with a timestamp made from its own
ordering key (message id or swipe time), so a late or retried older write loses to a newer
one in Cassandra itself, whatever the arrival order. Only match creation uses a lightweight
transaction: it is the one race that must have exactly one winner.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Hashable, Iterable, Sequence
from dataclasses import replace
from typing import Any, cast

from cassandra.query import UNSET_VALUE

from storage.base import (
    SETTING_COLUMNS,
    SETTING_NAMES,
    Conversation,
    CursorKind,
    Cursors,
    Device,
    ErasableKind,
    Erasure,
    MatchRecord,
    Message,
    Page,
    Platform,
    Report,
    ReportPage,
    Settings,
    StoreUnavailable,
    Swipe,
    SwipeAction,
    SwipeRecord,
    decode_page_cursor,
    encode_page_cursor,
)
from storage.buckets import bucket_of
from storage.cassandra_bridge import TEMPORARY, DriverBridge
from storage.cassandra_controls import ChatControls
from storage.cassandra_erasure import CassandraErasure
from storage.cassandra_reads import MessageReads
from storage.cassandra_reports import ReportTables
from storage.cassandra_schema import (
    CURSOR_COLUMNS,
    ClusterSettings,
    Lru,
    SubMsStamps,
    check_identifier,
    connect,
    consistency_level,
    host_port,
    id_stamp,
    match_of,
    message_of,
    migrate,
    prepare,
)
from storage.cassandra_swipes import SwipeTables
from storage.cassandra_writes import Statement, StatementEncoder, WriteBatcher

Row = dict[str, Any]
_CACHE_SIZE = 50_000
_MAX_IN_FLIGHT = 2048  # requests per store; the driver's limit is 32768 per connection
# Body and media (characters) past which a message row is sent alone rather than batched:
# a multi-partition batch over `batch_size_warn_threshold` (5 KiB) is logged by Cassandra,
# and one past 50 KiB is refused. 1024 characters are at most 4 KiB of UTF-8.
_BATCHED_CHARS_MAX = 1024
PARTITIONS_PER_BATCH = 10  # Cassandra's unlogged_batch_across_partitions_warn_threshold
_BATCHED = ("insert_message", "put_client_id", "advance_conversation", "add_bucket")

class CassandraStore:
    """The `Store` on a Cassandra cluster, for many nodes.

    One driver `Cluster` and `Session` per store (make one store per process). Requests are
    token-aware (they go straight to a replica of their partition) at `consistency`; the
    lightweight transaction of `create_match` runs at `serial_consistency`. When Cassandra
    is unreachable every call raises `StoreUnavailable` within about `request_timeout_s`;
    the driver reconnects by itself and the same store works again once it is back.
    """

    def __init__(self, contact_points: list[str], *, keyspace: str = "rendezvous",
                 replication: dict[str, Any] | None = None,
                 consistency: str = "LOCAL_QUORUM", serial_consistency: str = "LOCAL_SERIAL",
                 port: int = 9042, request_timeout_s: float = 5.0,
                 local_dc: str | None = None,
                 partitions_per_batch: int = PARTITIONS_PER_BATCH) -> None:
        if not contact_points:
            raise ValueError("at least one Cassandra contact point is needed")
        self.settings = ClusterSettings(
            contact_points=tuple(host_port(point, port) for point in contact_points),
            consistency=consistency_level(consistency),
            serial_consistency=consistency_level(serial_consistency),
            request_timeout_s=request_timeout_s, local_dc=local_dc)
        self.keyspace = check_identifier(keyspace)
        self.replication = dict(replication or {"class": "SimpleStrategy",
                                                "replication_factor": 1})
        self.request_timeout_s = request_timeout_s
        self._cluster: Any = None
        self._session: Any = None
        self._prepared: dict[str, Any] = {}
        self._closed = False
        self._bridge: DriverBridge | None = None
        self._batcher: WriteBatcher | None = None
        self._encoders: dict[str, StatementEncoder] = {}
        self.partitions_per_batch = partitions_per_batch
        self._members: Lru[str, tuple[str, str]] = Lru(_CACHE_SIZE)  # never change
        self._buckets: Lru[tuple[str, int], bool] = Lru(_CACHE_SIZE)  # known written
        self._swipe_stamps = SubMsStamps()
        self._busy: dict[Hashable, asyncio.Future[None]] = {}
        self._reads = MessageReads(self._run)
        self._swipes = SwipeTables(self._run, self._all, self._swipe_stamps.at)
        self._controls = ChatControls(self._run)
        self._erasure = CassandraErasure(self._run, self._all)
        self._reports = ReportTables(self._run)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._connect)
        except TEMPORARY as exc:
            raise StoreUnavailable(f"cassandra at {self.settings.contact_points}: {exc}") from exc
        self._bridge = DriverBridge(self._session, loop, max_in_flight=_MAX_IN_FLIGHT)
        self._batcher = WriteBatcher(self._bridge, loop, timeout_s=self.request_timeout_s,
                                     max_partitions=self.partitions_per_batch)
        version = self._cluster.protocol_version
        self._encoders = {name: StatementEncoder(self._prepared[name], version)
                          for name in _BATCHED}

    def _connect(self) -> None:
        """Blocking: connect, migrate, prepare. Runs on an executor thread."""
        cluster, session = connect(self.settings)
        try:
            migrate(session, self.keyspace, self.replication)
            prepared = prepare(session, self.keyspace, self.settings)
        except BaseException:
            cluster.shutdown()
            raise
        self._cluster, self._session, self._prepared = cluster, session, prepared

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True  # new calls fail from here on; pending ones finish first
        if self._batcher is not None:
            self._batcher.flush()  # saves queued in this turn: sent, then waited for
        if self._bridge is not None:
            await self._bridge.idle(self.request_timeout_s)
        cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is not None:
            await asyncio.get_running_loop().run_in_executor(None, cluster.shutdown)

    async def ping(self) -> None:
        await self._run("ping")

    # -- the bridge -----------------------------------------------------------------------
    async def _run(self, name: str, *args: Any, timeout: float | None = None) -> list[Row]:
        """Send one prepared statement; its rows (every page) arrive on this loop."""
        return await self._execute(self._prepared[name], args, timeout)

    async def _execute(self, statement: Any, args: Any, timeout: float | None = None
                       ) -> list[Row]:
        """At most `_MAX_IN_FLIGHT` requests at once: past that, callers wait here, on the
        loop, rather than in the driver, which would block the loop for a free stream id."""
        bridge = self._bridge
        if bridge is None or self._closed:
            raise StoreUnavailable("the Cassandra store is closed" if self._closed
                                   else "the Cassandra store is not started")
        if bridge.full:
            await bridge.slot()
        return await bridge.send(statement, args, timeout or self.request_timeout_s)

    @contextlib.asynccontextmanager
    async def _turn(self, key: Hashable) -> AsyncIterator[None]:
        """Racing calls on one key in this process take turns instead of racing."""
        while (busy := self._busy.get(key)) is not None:
            await asyncio.wait((busy,))
        mine = self._busy[key] = asyncio.get_running_loop().create_future()
        try:
            yield
        finally:
            del self._busy[key]
            mine.set_result(None)

    async def _all(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        """Await every call, even when one fails (none is left running), then raise."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    # -- messages -------------------------------------------------------------------------
    async def save_message(self, message: Message, *, claimed: bool = False,
                           members: tuple[str, str] | None = None) -> tuple[Message, bool]:
        """One round of writes (`_write_message`); unless `claimed`, the idempotency key is
        read first.

        No lightweight transaction: in a cluster, the node claims (match, sender, client id)
        in Redis before storing (and says so with `claimed`), so two racing resends of one
        message do not both reach the store; in this process, racing unclaimed saves of one
        key take turns. What is left (a Redis outage and a resend racing its original
        through two nodes in the same few ms) could store one message twice; an LWT would
        cost every message four round trips instead.
        """
        m = message
        if claimed:
            await self._write_message(m, members or await self._match_members(m.match_id))
            return m, True
        async with self._turn((m.match_id, m.sender, m.client_id)):
            if members is None:
                keys, members = await self._all((
                    self._run("get_client_id", m.match_id, m.sender, m.client_id),
                    self._match_members(m.match_id)))
            else:
                keys = await self._run("get_client_id", m.match_id, m.sender, m.client_id)
            if keys:
                first = keys[0]["id"]
                stored = await self._run("get_message", m.match_id, bucket_of(first), first)
                if stored:  # else its first save failed half-way: store this one instead
                    await self._note_bucket(m.match_id, bucket_of(first))
                    return message_of(stored[0]), False
            await self._write_message(m, members)
            return m, True

    async def _write_message(self, m: Message, members: tuple[str, ...]) -> None:
        """The message row, its idempotency key, both members' conversation rows and (the
        first time this process sees the bucket) the bucket row, batched with the other
        saves of this loop turn (`WriteBatcher`): acknowledged once every row reached the
        consistency level.

        The rows are in different partitions, so the batch buys round trips, not atomicity:
        a failed save may leave some rows written, which a retry overwrites (the
        conversation rows carry the id's stamp, so an older message never wins them).
        """
        batcher, bridge, enc = self._batcher, self._bridge, self._encoders
        if batcher is None or bridge is None or self._closed:
            raise StoreUnavailable("the Cassandra store is closed" if self._closed
                                   else "the Cassandra store is not started")
        if bridge.full:
            await bridge.slot()
        bucket = bucket_of(m.id)
        media = UNSET_VALUE if m.media is None else json.dumps(m.media, separators=(",", ":"))
        message_row = (bucket, m.match_id, m.id, m.sender, m.client_id, m.ts,
                       _unset(m.body), media)
        large = (len(m.body or "") + (0 if media is UNSET_VALUE else len(media))
                 > _BATCHED_CHARS_MAX)
        rows: list[Statement] = []
        if not large:  # first: the batch is routed to a replica of its first row
            rows.append(_encoded(enc["insert_message"], message_row))
        rows.append(_encoded(enc["put_client_id"],
                             (m.match_id, m.sender, m.client_id, m.id, m.ts)))
        stamp, last = id_stamp(m.id), (m.id, m.sender, m.ts)
        for user in members:
            rows.append(_encoded(enc["advance_conversation"], (stamp, last, user, m.match_id)))
        new_bucket = self._buckets.get((m.match_id, bucket)) is None
        if new_bucket:
            rows.append(_encoded(enc["add_bucket"], (m.match_id, bucket)))
        if large:
            await self._all((self._run("insert_message", *message_row), batcher.submit(rows)))
        else:
            await batcher.submit(rows)
        if new_bucket:
            self._buckets.put((m.match_id, bucket), True)

    async def _match_members(self, match_id: str) -> tuple[str, ...]:
        """The two users of a match (cached: they never change), or () if there is none."""
        members = self._members.get(match_id)
        if members is None:
            rows = await self._run("get_match", match_id)
            if not rows:
                return ()
            members = self._members.put(match_id, (rows[0]["user_a"], rows[0]["user_b"]))
        return members

    async def _note_bucket(self, match_id: str, bucket: int) -> None:
        if self._buckets.get((match_id, bucket)) is None:
            await self._run("add_bucket", match_id, bucket)
            self._buckets.put((match_id, bucket), True)

    async def history(self, match_id: str, before: int | None,
                      limit: int) -> tuple[list[Message], bool]:
        return await self._reads.history(match_id, before, limit)

    async def messages_after(self, match_id: str, after_id: int, limit: int, *,
                             newest: int | None = None) -> list[Message]:
        return await self._reads.messages_after(match_id, after_id, limit, newest)

    async def count_unread(self, match_id: str, user: str, after_id: int,
                           cap: int = 999, *, newest: int | None = None) -> int:
        return await self._reads.count_unread(match_id, user, after_id, cap, newest)

    # -- conversations and cursors --------------------------------------------------------
    async def conversations(self, user: str) -> list[Conversation]:
        out = []
        for r in await self._run("conversations", user):
            if r["peer"] is None:  # only a late `last` outlived the closing: not a row
                continue
            last_id, last_from, last_ts = r["last"] or (0, None, None)
            out.append(Conversation(r["match_id"], r["peer"], r["match_ts"], last_id,
                                    last_from, last_ts))
        out.sort(key=lambda c: (max(c.last_ts or c.match_ts, c.match_ts), c.match_id),
                 reverse=True)
        return out

    async def cursors(self, match_id: str) -> dict[str, Cursors]:
        rows = await self._run("cursors", match_id)
        return {r["user"]: Cursors(r["read_id"] or 0, r["delivered_id"] or 0) for r in rows}

    async def advance_cursor(self, match_id: str, user: str, kind: CursorKind,
                             message_id: int) -> bool:
        """The write carries the id's stamp, so of racing advances the largest stays."""
        col = CURSOR_COLUMNS[kind]
        if message_id <= 0:
            return False
        rows = await self._run("cursor", match_id, user)
        if rows and (rows[0][col] or 0) >= message_id:
            return False
        await self._run(f"advance_{kind}", id_stamp(message_id), message_id, match_id, user)
        return True

    # -- swipes and matches ---------------------------------------------------------------
    async def record_swipe(self, swiper: str, target: str, action: SwipeAction,
                           ts: int) -> None:
        stamp = self._swipe_stamps.at(ts)  # the latest ts wins; a tie, the later call
        like = (self._run("drop_like", stamp, target, swiper) if action == "pass" else
                self._run("put_like", target, swiper, action, ts, stamp))
        await self._all((self._run("put_swipe", swiper, target, action, ts, stamp), like,
                         self._run("put_received", target, swiper, ts, stamp)))

    async def get_swipe(self, swiper: str, target: str) -> SwipeAction | None:
        rows = await self._run("get_swipe", swiper, target)
        return cast(SwipeAction, rows[0]["action"]) if rows else None

    async def swipes_given(self, swiper: str, after: str | None,
                           limit: int) -> list[SwipeRecord]:
        rows = await (self._run("swipes_first", swiper, limit) if after is None else
                      self._run("swipes_next", swiper, after, limit))
        return [SwipeRecord(r["target"], cast(SwipeAction, r["action"]), r["ts"])
                for r in rows]  # clustered by target

    async def create_match(self, match: MatchRecord) -> tuple[MatchRecord, bool]:
        async with self._turn(match.id):  # racing calls here queue, not contend
            stored, created = await self._insert_match(match)
        self._members.put(stored.id, stored.users)
        remember: list[Awaitable[list[Row]]] = [
            self._run("remember_match", user, stored.ts, stored.id) for user in stored.users]
        if stored.is_open:  # (again, if an earlier call stopped half-way)
            remember += self._list_match(stored)
        await self._all(remember)
        return stored, created

    async def _insert_match(self, m: MatchRecord) -> tuple[MatchRecord, bool]:
        """INSERT ... IF NOT EXISTS, retried while its outcome is unknown, all within twice
        the request timeout (an LWT is four round trips).

        The row carries a token of this call: after a timeout, a read at serial consistency
        (which finishes any half-done round) tells whether the row is ours.
        """
        token = uuid.uuid4()
        deadline = time.monotonic() + 2 * self.request_timeout_s

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                raise StoreUnavailable(f"creating match {m.id}: no answer in time")
            return remaining

        for attempt in itertools.count():
            if attempt:
                await asyncio.sleep(min(0.05 * attempt, left() / 2))
                try:
                    rows = await self._run("get_match_serial", m.id, timeout=left())
                except StoreUnavailable:
                    rows = None  # still unknown: the insert settles it
                if rows:
                    return match_of(rows[0]), rows[0]["creator"] == token
            try:
                rows = await self._run("insert_match", m.id, *m.users, m.ts, m.superlike,
                                       _unset(m.closed_ts), _unset(m.closed_by), token,
                                       timeout=left())
            except StoreUnavailable:
                if attempt >= 2:
                    raise
                continue
            if rows[0]["[applied]"]:
                return m, True
            return match_of(rows[0]), rows[0].get("creator") == token
        raise AssertionError("unreachable")

    def _list_match(self, m: MatchRecord) -> list[Awaitable[list[Row]]]:
        """Add the match to both users' lists; the writes carry the match's own time, so a
        closing (stamped later) removes them whatever the order they arrive in."""
        stamp = m.ts * 1000
        calls: list[Awaitable[list[Row]]] = []
        for user, peer in ((m.users[0], m.users[1]), (m.users[1], m.users[0])):
            calls.append(self._run("list_match", user, m.ts, m.id, peer, m.superlike, stamp))
            calls.append(self._run("add_conversation", user, m.id, peer, m.ts, stamp))
        return calls

    async def get_match(self, match_id: str) -> MatchRecord | None:
        rows = await self._run("get_match", match_id)
        return match_of(rows[0]) if rows else None

    async def matches_ever(self, user: str) -> list[MatchRecord]:
        ids = [row["match_id"] for row in await self._run("matches_ever", user)]
        found: list[MatchRecord] = []
        for start in range(0, len(ids), 64):  # a bounded number of reads in flight
            batch = await asyncio.gather(*(self.get_match(i) for i in ids[start:start + 64]))
            found += [m for m in batch if m is not None]
        return found

    async def matches_for_user(self, user: str, limit: int,
                               cursor: str | None = None) -> Page:
        if cursor is None:
            rows = await self._run("matches_first", user, limit + 1)
        else:
            ts, match_id = decode_page_cursor(cursor)
            rows = await self._run("matches_next", user, ts, match_id, limit + 1)
        items = [MatchRecord(r["match_id"], _pair(user, r["peer"]), r["ts"], bool(r["superlike"]))
                 for r in rows[:limit]]
        more = len(rows) > limit and bool(items)
        return Page(items, encode_page_cursor(items[-1]) if more else None)

    async def close_match(self, match_id: str, by_user: str, ts: int) -> MatchRecord | None:
        """Close, then remove the match from both users' lists (again on every call, so a
        retry finishes a closing cut short). Two closings at the same instant: the later
        write wins, and the earlier caller may have been answered with its own."""
        rows = await self._run("get_match", match_id)
        if not rows:
            return None
        match = match_of(rows[0])
        if match.is_open:
            await self._run("close_match", ts, by_user, match_id)
            match = replace(match, closed_ts=ts, closed_by=by_user)
        stamp = max(match.closed_ts or 0, match.ts) * 1000 + 999
        await self._all(call for user in match.users for call in (
            self._run("unlist_match", stamp, user, match.ts, match.id),
            self._run("hide_conversation", stamp, user, match.id)))
        return match

    # -- blocks, devices, settings --------------------------------------------------------
    async def add_block(self, user: str, target: str, ts: int) -> None:
        await self._all((self._run("add_block", user, target, ts),
                         self._run("add_block_received", target, user, ts)))

    async def is_blocked(self, a: str, b: str) -> bool:
        either = await self._all((self._run("get_block", a, b), self._run("get_block", b, a)))
        return any(either)

    async def blocks_made(self, user: str) -> list[tuple[str, int]]:
        return [(r["target"], r["ts"]) for r in await self._run("blocks_made", user)]

    async def put_device(self, device: Device) -> None:
        d = device
        owners, existing = await self._all((self._run("get_owner", d.token),
                                            self._run("get_device", d.user, d.token)))
        if owners and owners[0]["user"] != d.user:  # the phone changed accounts
            await self._run("drop_device", owners[0]["user"], d.token)
        old = existing[0] if existing else {}
        await self._all((
            self._run("put_owner", d.token, d.user),
            self._run("put_device", d.user, d.token, d.platform,
                      _clearing(d.app, old.get("app")), _clearing(d.locale, old.get("locale")),
                      d.updated_ts)))

    async def delete_device(self, user: str, token: str) -> bool:
        owners, existing = await self._all((self._run("get_owner", token),
                                            self._run("get_device", user, token)))
        calls = []
        if existing:
            calls.append(self._run("drop_device", user, token))
        if owners and owners[0]["user"] == user:
            calls.append(self._run("drop_owner", token))
        await self._all(calls)
        return bool(existing)

    async def devices(self, user: str) -> list[Device]:
        rows = await self._run("devices", user)
        return [Device(r["user"], r["token"], cast(Platform, r["platform"]), r["app"],
                       r["locale"], r["updated_ts"]) for r in rows]  # clustered by token

    async def get_settings(self, user: str) -> Settings:
        rows = await self._run("get_settings", user)
        if not rows:
            return Settings()
        defaults = Settings().as_dict()
        return Settings(**{k: defaults[k] if v is None else bool(v) for k, v in rows[0].items()})

    async def put_settings(self, user: str, changes: dict[str, bool]) -> Settings:
        """Writes only the changed columns (no read-modify-write), then reads the merge."""
        unknown = set(changes) - SETTING_NAMES
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        if changes:
            await self._run("put_settings", *(_unset(changes.get(name)) for name in
                                              SETTING_COLUMNS), user)
        return await self.get_settings(user)

    # -- the swipe economy (storage/cassandra_swipes.py) ---------------------------------------
    async def index_swipe(self, swipe: Swipe) -> None:
        await self._swipes.index_swipe(swipe)

    async def last_swipe(self, swiper: str) -> Swipe | None:
        return await self._swipes.last_swipe(swiper)

    async def undo_swipe(self, swipe: Swipe) -> bool:
        return await self._swipes.undo_swipe(swipe)

    async def likes_received(self, target: str, limit: int,
                             before: tuple[int, str] | None = None) -> list[Swipe]:
        return await self._swipes.likes_received(target, limit, before)

    async def deck_exclusions(self, user: str, candidates: Sequence[str]) -> set[str]:
        if not candidates:
            return set()
        return await self._swipes.deck_exclusions(user, candidates)

    # -- token revocations ----------------------------------------------------------------
    async def revoke_tokens(self, user: str, ts: int) -> int:
        """The write's timestamp is `ts` itself (in us): of any number of writes, in any
        order, the largest value wins (docs/storage.md, "Token revocations"). Then the
        stored value is read back, as another node may have raised it further."""
        await self._run("revoke_tokens", ts * 1000, ts, user)
        stored = await self.tokens_not_before(user)
        return ts if stored is None else max(stored, ts)

    async def tokens_not_before(self, user: str) -> int | None:
        rows = await self._run("tokens_not_before", user)
        value = rows[0]["not_before"] if rows else None
        return None if value is None else int(value)

    # -- chat controls (storage/cassandra_controls.py) ------------------------------------
    async def get_message(self, match_id: str, message_id: int) -> Message | None:
        return await self._controls.get_message(match_id, message_id)

    async def tombstone_message(self, match_id: str, message_id: int) -> bool:
        return await self._controls.tombstone_message(match_id, message_id)

    async def has_sent(self, match_id: str, user: str) -> bool:
        return await self._controls.has_sent(match_id, user)

    async def put_mute(self, user: str, match_id: str, until: int) -> None:
        await self._controls.put_mute(user, match_id, until)

    async def delete_mute(self, user: str, match_id: str) -> None:
        await self._controls.delete_mute(user, match_id)

    async def mute_until(self, user: str, match_id: str) -> int:
        return await self._controls.mute_until(user, match_id)

    async def mutes(self, user: str) -> dict[str, int]:
        return await self._controls.mutes(user)

    # -- account erasure (storage/cassandra_erasure.py) -----------------------------------
    async def begin_erasure(self, user: str, ts: int, *,
                            again_after: int | None = None) -> Erasure:
        return await self._erasure.begin(user, ts, again_after)

    async def get_erasure(self, user: str) -> Erasure | None:
        return await self._erasure.get(user)

    async def erasure_progress(self, user: str, step: int) -> None:
        await self._erasure.progress(user, step)

    async def finish_erasure(self, user: str, ts: int) -> None:
        await self._erasure.finish(user, ts)

    async def pending_erasures(self, limit: int) -> list[Erasure]:
        return await self._erasure.pending(limit)

    async def sent_in_match(self, user: str, match_id: str) -> list[tuple[int, str]]:
        return await self._erasure.sent_in_match(user, match_id)

    async def erase_in_match(self, user: str, match: MatchRecord) -> int:
        return await self._erasure.erase_in_match(user, match)

    async def erase_user_data(self, user: str, kind: ErasableKind) -> None:
        await self._erasure.erase_user_data(user, kind)

    # -- reports (storage/cassandra_reports.py) -------------------------------------------
    async def save_report(self, report: Report, *, keep_s: int) -> None:
        await self._reports.save(report, keep_s)

    async def get_report(self, report_id: str) -> Report | None:
        return await self._reports.get(report_id)

    async def list_reports(self, limit: int, cursor: str | None = None, *,
                           since_ts: int = 0) -> ReportPage:
        return await self._reports.page(limit, cursor, since_ts)

    async def purge_reports(self, before_ts: int) -> int:
        return await self._reports.purge(before_ts)


# -- helpers ------------------------------------------------------------------------------
def _encoded(encoder: StatementEncoder, values: tuple[Any, ...]) -> Statement:
    return encoder, encoder.encode(values)


def _unset(value: Any) -> Any:
    """None becomes "not written" rather than a tombstone."""
    return UNSET_VALUE if value is None else value


def _clearing(new: Any, old: Any) -> Any:
    """A nullable column: write the value; None clears it only if a value is there now."""
    if new is not None:
        return new
    return None if old is not None else UNSET_VALUE


def _pair(a: str, b: str) -> tuple[str, str]:
    lo, hi = sorted((a, b))
    return lo, hi
