"""What only `CassandraStore` promises, against a real Cassandra node started for this module.

The `Store` contract itself runs through tests/storage/test_store_contract.py (the backend
is a parameter of tests/storage/conftest.py). Here: the physical layout (match and bucket
partitions, history that reads only buckets that hold messages), what the driver is asked
(counted with a request listener), no tombstones from absent values (read traces), the
lightweight transaction of match creation and its retry, and an outage: a frozen node and
a stopped one make calls fail fast with `StoreUnavailable`, and the same store instance
works again once the node is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import ResponseFuture
from cassandra.query import UNSET_VALUE, BatchStatement

from protocol.ids import compose, ms_of
from storage.base import (
    Device,
    MatchRecord,
    Message,
    Settings,
    Store,
    StoreUnavailable,
    Swipe,
    decode_page_cursor,
    match_id_for,
)
from storage.buckets import BUCKET_MS, bucket_of
from storage.cassandra import CassandraStore
from storage.cassandra_schema import (
    SCHEMA_VERSION,
    ClusterSettings,
    SchemaTooNew,
    connect,
    host_port,
    id_stamp,
    migrate,
)
from storage.cassandra_writes import StatementEncoder
from tests.cassandra_node import CassandraNode

T0 = 1_700_000_000_000


def mid(ms: int, seq: int = 0, node: int = 1) -> int:
    return compose(ms, node, seq)


def msg(match_id: str, id_: int, sender: str, client_id: str | None = None,
        body: str | None = "hi") -> Message:
    return Message(match_id, id_, sender, client_id or f"c{id_}", ms_of(id_), body)


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraNode]:
    """One node for this module (its own: the outage test stops and restarts it)."""
    cassandra = CassandraNode(tmp_path_factory.mktemp("cassandra-specific"))
    cassandra.start()
    yield cassandra
    cassandra.stop()


@pytest.fixture(scope="module")
def cql(node: CassandraNode) -> Iterator[Any]:
    """A plain blocking session for looking at tables directly."""
    cluster, session = connect(ClusterSettings((host_port(node.contact_point, 9042),)))
    yield session
    cluster.shutdown()


@pytest.fixture
def keyspace(request: pytest.FixtureRequest) -> str:
    return "s_" + hashlib.blake2b(request.node.nodeid.encode(), digest_size=8).hexdigest()


OpenStore = Callable[..., Awaitable[CassandraStore]]


@pytest.fixture
async def open_store(node: CassandraNode, keyspace: str) -> AsyncIterator[OpenStore]:
    opened: list[CassandraStore] = []

    async def open_(**options: Any) -> CassandraStore:
        store = CassandraStore([node.contact_point], keyspace=keyspace, **options)
        await store.start()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> CassandraStore:
    return await open_store()


async def matched(store: Store, a: str, b: str, ts: int = T0) -> MatchRecord:
    lo, hi = sorted((a, b))
    match, created = await store.create_match(MatchRecord(match_id_for(a, b), (lo, hi), ts))
    assert created
    return match


class Requests:
    """Every prepared statement the store's driver sends, with its bound values."""

    def __init__(self, store: CassandraStore) -> None:
        self.sent: list[tuple[str, list[bytes]]] = []
        self.queries: list[Any] = []
        store._session.add_request_init_listener(self._on_request)

    def _on_request(self, future: Any) -> None:
        self.queries.append(future.query)
        prepared = getattr(future.query, "prepared_statement", None)
        if prepared is not None:
            self.sent.append((prepared.query_string, list(future.query.values)))

    def batches(self) -> list[Any]:
        """Every batch request, as `BatchStatement`s."""
        return [query for query in self.queries if isinstance(query, BatchStatement)]

    def reads(self) -> list[str]:
        return [query for query, _ in self.sent if query.startswith("SELECT")]

    def buckets_read(self, keyspace: str) -> list[int]:
        """The bucket of every read of the messages table, in order."""
        return [int.from_bytes(values[1], "big", signed=True)
                for query, values in self.sent if f"FROM {keyspace}.messages " in query]

    def clear(self) -> None:
        self.sent.clear()
        self.queries.clear()


# -- layout -------------------------------------------------------------------------------
async def test_messages_live_in_match_and_bucket_partitions(store: CassandraStore, cql: Any,
                                                            keyspace: str) -> None:
    columns = {r["column_name"]: (r["kind"], r["position"], r["clustering_order"])
               for r in cql.execute("SELECT column_name, kind, position, clustering_order"
                                    " FROM system_schema.columns WHERE keyspace_name = %s"
                                    " AND table_name = 'messages'", (keyspace,))}
    assert columns["match_id"] == ("partition_key", 0, "none")
    assert columns["bucket"] == ("partition_key", 1, "none")
    assert columns["id"] == ("clustering", 0, "desc")

    m = await matched(store, "ann", "bob")
    spans = [0, 3, 9]  # buckets apart: the match was silent for months in between
    sent = [msg(m.id, mid(T0 + span * BUCKET_MS + i), "ann") for span in spans for i in range(4)]
    for message in sent:
        await store.save_message(message)
    partitions = {(r["match_id"], r["bucket"]) for r in cql.execute(
        f"SELECT DISTINCT match_id, bucket FROM {keyspace}.messages")}
    assert partitions == {(m.id, bucket_of(s.id)) for s in sent}
    assert len(partitions) == 3
    for match_id, bucket in partitions:
        ids = [r["id"] for r in cql.execute(
            f"SELECT id FROM {keyspace}.messages WHERE match_id = %s AND bucket = %s",
            (match_id, bucket))]
        assert ids == sorted((s.id for s in sent if bucket_of(s.id) == bucket), reverse=True)
    listed = [r["bucket"] for r in cql.execute(
        f"SELECT bucket FROM {keyspace}.match_buckets WHERE match_id = %s", (m.id,))]
    assert listed == sorted({bucket_of(s.id) for s in sent}, reverse=True)


async def test_history_reads_only_written_buckets_and_stops_at_the_first(
        store: CassandraStore, keyspace: str) -> None:
    m = await matched(store, "ann", "bob")
    b1, b2, b3 = (bucket_of(mid(T0 + span * BUCKET_MS)) for span in (0, 4, 11))
    sent = [msg(m.id, mid(T0 + span * BUCKET_MS + i), "bob") for span in (0, 4, 11)
            for i in range(5)]
    for message in sent:
        await store.save_message(message)
    requests = Requests(store)

    pages, before, more = [], None, True
    while more:
        requests.clear()
        page, more = await store.history(m.id, before, 4)
        pages.append(requests.buckets_read(keyspace))
        before = page[-1].id if page else None
    # Each page reads the newest bucket it still needs, then older ones, and never a bucket
    # that holds nothing (the empty ones in between, or any before the match's first).
    assert pages == [[b3], [b3, b2], [b2, b1], [b1]]

    requests.clear()
    assert await store.messages_after(m.id, 0, 100) == sent
    assert requests.buckets_read(keyspace) == [b1, b2, b3]
    requests.clear()
    assert await store.count_unread(m.id, "ann", sent[7].id) == 7
    assert requests.buckets_read(keyspace) == [b2, b3]  # b1 is older than the cursor


async def test_reads_up_to_a_newest_id_plan_their_buckets_without_the_list(
        store: CassandraStore, keyspace: str) -> None:
    m = await matched(store, "ann", "bob")
    spans = (0, 1, 11)  # b2 next to b1; b3 ten buckets later
    b1, b2, b3 = (bucket_of(mid(T0 + span * BUCKET_MS)) for span in spans)
    sent = [msg(m.id, mid(T0 + span * BUCKET_MS + i), "bob") for span in spans
            for i in range(5)]
    for message in sent:
        await store.save_message(message)
    requests = Requests(store)

    def lists() -> list[str]:
        return [q for q in requests.reads() if ".match_buckets " in q]

    # in one bucket: that partition only
    assert await store.messages_after(m.id, sent[0].id, 100, newest=sent[4].id) == sent[1:5]
    assert (requests.buckets_read(keyspace), lists()) == ([b1], [])
    requests.clear()  # in two neighbouring buckets: both, oldest first
    assert await store.messages_after(m.id, sent[2].id, 100, newest=sent[7].id) == sent[3:8]
    assert (requests.buckets_read(keyspace), lists()) == ([b1, b2], [])
    requests.clear()  # the first one fills the page: the second is not read
    assert await store.messages_after(m.id, sent[2].id, 2, newest=sent[7].id) == sent[3:5]
    assert (requests.buckets_read(keyspace), lists()) == ([b1], [])
    requests.clear()  # far apart: the list between them, then only the written buckets
    assert await store.messages_after(m.id, 0, 100, newest=sent[-1].id) == sent
    assert requests.buckets_read(keyspace) == [b1, b2, b3] and len(lists()) == 1
    requests.clear()
    assert await store.count_unread(m.id, "ann", sent[7].id, newest=sent[12].id) == 5
    assert requests.buckets_read(keyspace) == [b2, b3] and len(lists()) == 1
    requests.clear()
    assert await store.count_unread(m.id, "ann", sent[10].id, newest=sent[12].id) == 2
    assert (requests.buckets_read(keyspace), lists()) == ([b3], [])
    requests.clear()  # nothing can be newer than the newest: no request at all
    assert await store.messages_after(m.id, sent[4].id, 100, newest=sent[4].id) == []
    assert await store.count_unread(m.id, "ann", sent[4].id, newest=sent[3].id) == 0
    assert requests.sent == []


async def test_a_new_match_reads_no_message_partition(store: CassandraStore,
                                                      keyspace: str) -> None:
    m = await matched(store, "ann", "bob")
    requests = Requests(store)
    assert await store.history(m.id, None, 50) == ([], False)
    assert await store.count_unread(m.id, "ann", 0) == 0
    assert requests.buckets_read(keyspace) == []


async def test_absent_values_write_no_tombstones(store: CassandraStore, cql: Any,
                                                 keyspace: str) -> None:
    m = await matched(store, "ann", "bob")
    message = msg(m.id, mid(T0 + 1), "ann", body=None)  # media None too
    await store.save_message(message)
    await store.put_device(Device("ann", "tok", "fcm", None, None, T0))
    await store.put_settings("ann", {"push_previews": True})
    await store.record_swipe("ann", "bob", "like", T0)
    await store.advance_cursor(m.id, "ann", "read", message.id)

    def tombstones(query: str, args: tuple[Any, ...]) -> list[str]:
        trace = cql.execute(query, args, trace=True).get_query_trace()
        return [e.description for e in trace.events
                if e.description.startswith("Read ") and "tombstone" in e.description]

    for query, args in [
        (f"SELECT * FROM {keyspace}.messages WHERE match_id = %s AND bucket = %s",
         (m.id, bucket_of(message.id))),
        (f"SELECT * FROM {keyspace}.devices_by_user WHERE user = %s", ("ann",)),
        (f"SELECT * FROM {keyspace}.settings WHERE user = %s", ("ann",)),
        (f"SELECT * FROM {keyspace}.matches WHERE id = %s", (m.id,)),
        (f"SELECT * FROM {keyspace}.conversations_by_user WHERE user = %s", ("ann",)),
        (f"SELECT * FROM {keyspace}.read_cursors WHERE match_id = %s", (m.id,)),
    ]:
        found = tombstones(query, args)
        assert found and all(" 0 tombstone" in d for d in found), (query, found)

    # Clearing a value that is there is a real change, and only then a tombstone is written.
    await store.put_device(Device("ann", "tok", "fcm", "app", None, T0 + 1))
    await store.put_device(Device("ann", "tok", "fcm", None, None, T0 + 2))
    assert (await store.devices("ann"))[0].app is None


# -- ordering by write timestamps ---------------------------------------------------------
def test_id_stamps_never_decrease_as_ids_grow() -> None:
    ids = sorted(compose(T0 + ms, node, seq) for ms in (0, 1) for node in (0, 1, 7, 1023)
                 for seq in (0, 1, 4095))
    stamps = [id_stamp(i) for i in ids]
    assert stamps == sorted(stamps)
    assert id_stamp(compose(T0, 1023, 4095)) < id_stamp(compose(T0 + 1, 0, 0))
    assert id_stamp(compose(T0, 0, 0)) == T0 * 1000


async def test_equal_stamps_still_keep_the_larger_id(store: CassandraStore) -> None:
    m = await matched(store, "ann", "bob")
    small, large = mid(T0 + 5, seq=1, node=3), mid(T0 + 5, seq=9, node=3)
    assert id_stamp(small) == id_stamp(large)  # one node, one ms: one stamp
    await store.save_message(msg(m.id, large, "bob"))
    await store.save_message(msg(m.id, small, "ann"))  # arrives last, must not win
    conversation = (await store.conversations("ann"))[0]
    assert (conversation.last_id, conversation.last_from) == (large, "bob")
    assert await store.advance_cursor(m.id, "ann", "read", large)
    assert not await store.advance_cursor(m.id, "ann", "read", small)
    assert (await store.cursors(m.id))["ann"].read_id == large


async def test_a_message_after_the_closing_does_not_revive_the_conversation(
        store: CassandraStore) -> None:
    m = await matched(store, "ann", "bob")
    await store.save_message(msg(m.id, mid(T0 + 5), "ann"))
    await store.close_match(m.id, "bob", T0 + 10)
    await store.save_message(msg(m.id, mid(T0 + 20), "ann"))  # raced the closing
    assert await store.conversations("ann") == [] and await store.conversations("bob") == []
    assert (await store.matches_for_user("ann", 10)).items == []


async def test_save_message_after_a_half_done_first_save(store: CassandraStore, cql: Any,
                                                         keyspace: str) -> None:
    """The key was written but its message was not: the resend is stored, not lost."""
    m = await matched(store, "ann", "bob")
    cql.execute(f"INSERT INTO {keyspace}.message_client_ids (match_id, sender, client_id, id,"
                " ts) VALUES (%s, %s, %s, %s, %s)", (m.id, "ann", "c-1", mid(T0), T0))
    resend = msg(m.id, mid(T0 + 3), "ann", client_id="c-1")
    assert await store.save_message(resend) == (resend, True)
    assert await store.history(m.id, None, 5) == ([resend], False)
    assert await store.save_message(msg(m.id, mid(T0 + 4), "ann", "c-1")) == (resend, False)


# -- the save path: one batched round of writes ------------------------------------------
def partitions_of(batch: BatchStatement, store: CassandraStore) -> set[bytes]:
    """The partition keys a batch writes (as Cassandra counts them for its warning)."""
    encoders = {e.query_id: e for e in store._encoders.values()}
    return {encoders[query_id].routing_key(list(values))
            for _, query_id, values in batch._statements_and_parameters}


async def test_claimed_saves_read_nothing_and_share_batches(store: CassandraStore) -> None:
    matches = [await matched(store, "ann", f"p{i}") for i in range(20)]
    earlier = msg(matches[0].id, mid(T0), "ann")
    await store.save_message(earlier, claimed=True, members=matches[0].users)
    requests = Requests(store)
    sent = [msg(m.id, mid(T0 + 1, seq=i), "ann") for i, m in enumerate(matches)]
    results = await asyncio.gather(*(store.save_message(s, claimed=True, members=m.users)
                                     for s, m in zip(sent, matches, strict=True)))
    assert results == [(s, True) for s in sent]
    assert requests.reads() == []  # neither the idempotency key nor the match
    batches = requests.batches()
    assert len(requests.queries) == len(batches)  # every write went in a batch
    assert len(batches) < len(sent)  # a batch carries several saves
    for batch in batches:  # under Cassandra's warning threshold (10 partitions)
        assert 4 <= len(partitions_of(batch, store)) <= 10
    for s, m in zip(sent, matches, strict=True):
        expect = [s, earlier] if m is matches[0] else [s]
        assert await store.history(m.id, None, 5) == (expect, False)


async def test_an_unclaimed_save_reads_its_key_and_then_writes_one_batch(
        store: CassandraStore) -> None:
    m = await matched(store, "ann", "bob")
    await store.save_message(msg(m.id, mid(T0), "ann"))  # the match and bucket are known now
    requests = Requests(store)
    message = msg(m.id, mid(T0 + 1), "bob")
    assert await store.save_message(message) == (message, True)
    assert [q.split(" FROM ")[1].split()[0] for q in requests.reads()] == [
        f"{store.keyspace}.message_client_ids"]
    assert len(requests.batches()) == len(requests.queries) - 1 == 1


async def test_a_large_message_row_goes_outside_the_batch(store: CassandraStore) -> None:
    m = await matched(store, "ann", "bob")
    requests = Requests(store)
    big = msg(m.id, mid(T0), "ann", body="é" * 4000)  # 8 KB of UTF-8
    media = Message(m.id, mid(T0 + 1), "bob", "c-media", T0 + 1, None,
                    {"kind": "image", "url": "https://cdn.example/" + "p" * 2000})
    for message in (big, media):
        assert await store.save_message(message, claimed=True, members=m.users) == (
            message, True)
    alone = [q for q, _ in requests.sent if q.startswith(f"INSERT INTO {store.keyspace}.messages")]
    assert len(alone) == 2 and len(requests.batches()) == 2
    assert await store.history(m.id, None, 5) == ([media, big], False)


async def test_encoded_values_are_what_the_driver_binds(store: CassandraStore) -> None:
    """The save path's own serializer against `PreparedStatement.bind`, column by column."""
    values = {
        "insert_message": (3, "m-1", mid(T0), "ann", "c-1", T0, "hé", UNSET_VALUE),
        "put_client_id": ("m-1", "ann", "c-1", mid(T0), T0),
        "advance_conversation": (id_stamp(mid(T0)), (mid(T0), "ann", T0), "bob", "m-1"),
        "add_bucket": ("m-1", -2),
    }
    assert set(values) == set(store._encoders)
    for name, args in values.items():
        encoder = store._encoders[name]
        bound = store._prepared[name].bind(args)
        encoded = encoder.encode(args)
        assert encoded == bound.values, name
        assert encoder.routing_key(encoded) == bound.routing_key, name
    assert StatementEncoder(store._prepared["advance_conversation"], 5).encode(
        (1, (2, None, 3), "u", "m"))[1] == store._prepared["advance_conversation"].bind(
        (1, (2, None, 3), "u", "m")).values[1]


async def test_close_sends_and_waits_for_saves_queued_in_this_turn(
        open_store: OpenStore) -> None:
    store = await open_store()
    m = await matched(store, "ann", "bob")
    sent = [msg(m.id, mid(T0 + i), "ann") for i in range(8)]
    saves = [asyncio.ensure_future(store.save_message(s, claimed=True, members=m.users))
             for s in sent]
    await asyncio.sleep(0)  # each save has queued its rows; the batch is not sent yet
    await store.close()
    assert [await save for save in saves] == [(s, True) for s in sent]
    reopened = await open_store()
    assert await reopened.messages_after(m.id, 0, 10) == sent


async def test_a_failed_batch_fails_every_save_in_it(open_store: OpenStore,
                                                    node: CassandraNode) -> None:
    timeout = 2.0  # as in the outage test below: start-up DDL must fit in it on 2 cores
    store = await open_store(request_timeout_s=timeout)
    m = await matched(store, "ann", "bob")
    pid = node.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        await all_threads_stopped(pid)
        started = time.monotonic()
        results = await asyncio.gather(*(
            store.save_message(msg(m.id, mid(T0 + i), "ann"), claimed=True, members=m.users)
            for i in range(6)), return_exceptions=True)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert len({id(r) for r in results}) == 6  # each caller raises its own
    assert elapsed < timeout + 0.5, elapsed
    await store.ping()


# -- match creation: the one lightweight transaction --------------------------------------
async def test_racing_create_match_across_two_stores(open_store: OpenStore) -> None:
    first, second = await open_store(), await open_store()  # two processes' worth
    record = MatchRecord(match_id_for("ann", "bob"), ("ann", "bob"), T0)
    results = await asyncio.gather(*(s.create_match(record) for _ in range(8)
                                     for s in (first, second)))
    assert sum(created for _, created in results) == 1
    assert {stored for stored, _ in results} == {record}
    assert len(await second.conversations("bob")) == 1


async def test_create_match_whose_answer_was_lost_still_knows_it_won(
        store: CassandraStore, open_store: OpenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CAS that committed but timed out: the serial read-back finds this call's token."""
    real_run = store._run
    lost: list[str] = []

    async def run(name: str, *args: Any, **options: Any) -> Any:
        rows = await real_run(name, *args, **options)
        if name == "insert_match" and not lost:
            lost.append(name)
            raise StoreUnavailable("simulated: the answer of a committed CAS was lost")
        return rows

    monkeypatch.setattr(store, "_run", run)
    record = MatchRecord(match_id_for("ann", "bob"), ("ann", "bob"), T0)
    assert await store.create_match(record) == (record, True)
    assert lost
    # A retry of that call by its caller (a new call) sees the match, not created by it.
    assert await store.create_match(record) == (record, False)
    other = await open_store()
    assert await other.create_match(record) == (record, False)
    assert len(await other.conversations("ann")) == 1


async def test_create_match_whose_insert_failed_finds_the_other_winner(
        store: CassandraStore, open_store: OpenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    record = MatchRecord(match_id_for("ann", "bob"), ("ann", "bob"), T0)
    winner = await open_store()
    real_run = store._run

    async def run(name: str, *args: Any, **options: Any) -> Any:
        if name == "insert_match":  # fails before it is sent; meanwhile another wins
            await winner.create_match(record)
            monkeypatch.setattr(store, "_run", real_run)
            raise StoreUnavailable("simulated: coordinator timed out")
        return await real_run(name, *args, **options)

    monkeypatch.setattr(store, "_run", run)
    assert await store.create_match(record) == (record, False)


# -- schema -------------------------------------------------------------------------------
async def test_migrate_is_repeatable_and_refuses_a_newer_schema(
        store: CassandraStore, cql: Any, keyspace: str, node: CassandraNode) -> None:
    replication = {"class": "SimpleStrategy", "replication_factor": 1}
    assert migrate(cql, keyspace, replication) == SCHEMA_VERSION
    cql.execute(f"UPDATE {keyspace}.schema_version SET version = %s"
                " WHERE component = 'rendezvous'", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew):
        await CassandraStore([node.contact_point], keyspace=keyspace).start()


async def test_upgrading_from_version_1_indexes_the_matches_already_stored(
        store: CassandraStore, cql: Any, keyspace: str) -> None:
    open_ = await store.create_match(MatchRecord(match_id_for("ann", "bob"), ("ann", "bob"), T0))
    old = MatchRecord(match_id_for("ann", "cat"), ("ann", "cat"), T0 + 1)
    await store.create_match(old)
    closed = await store.close_match(old.id, "cat", T0 + 2)
    cql.execute(f"TRUNCATE {keyspace}.user_matches")  # as a version-1 keyspace has it
    cql.execute(f"UPDATE {keyspace}.schema_version SET version = 1"
                " WHERE component = 'rendezvous'")
    assert await store.matches_ever("ann") == []
    replication = {"class": "SimpleStrategy", "replication_factor": 1}
    assert migrate(cql, keyspace, replication) == SCHEMA_VERSION
    assert await store.matches_ever("ann") == [closed, open_[0]]
    assert await store.matches_ever("cat") == [closed]


async def test_upgrading_from_version_1_indexes_the_swipes_received(
        store: CassandraStore, cql: Any, keyspace: str) -> None:
    """Erasure finds received passes through `swipes_received`: an upgrade fills it."""
    await store.record_swipe("dan", "ann", "pass", T0)
    await store.record_swipe("eve", "ann", "like", T0 + 1)
    cql.execute(f"TRUNCATE {keyspace}.swipes_received")  # as a version-1 keyspace has it
    cql.execute(f"UPDATE {keyspace}.schema_version SET version = 1"
                " WHERE component = 'rendezvous'")
    replication = {"class": "SimpleStrategy", "replication_factor": 1}
    assert migrate(cql, keyspace, replication) == SCHEMA_VERSION
    rows = cql.execute(f"SELECT swiper, ts FROM {keyspace}.swipes_received"
                       " WHERE target = 'ann'")
    assert sorted((r["swiper"], r["ts"]) for r in rows) == [("dan", T0), ("eve", T0 + 1)]
    await store.erase_user_data("ann", "swipes")
    assert await store.get_swipe("dan", "ann") is None


async def test_a_version_1_keyspace_gets_version_2s_tables(
        store: CassandraStore, cql: Any, keyspace: str) -> None:
    """A keyspace migrated by version 1 gets `token_revocations` and keeps its data."""
    await store.record_swipe("ann", "bob", "like", T0)
    cql.execute(f"DROP TABLE {keyspace}.token_revocations", timeout=60)  # DDL: slow
    cql.execute(f"UPDATE {keyspace}.schema_version SET version = 1"
                " WHERE component = 'rendezvous'")
    replication = {"class": "SimpleStrategy", "replication_factor": 1}
    assert migrate(cql, keyspace, replication) == SCHEMA_VERSION == 4  # 2, 3, then 4
    assert await store.get_swipe("ann", "bob") == "like"
    cql.execute(f"INSERT INTO {keyspace}.token_revocations (user, not_before)"
                " VALUES ('ann', 5)")
    assert [(r["user"], r["not_before"]) for r in cql.execute(
        f"SELECT user, not_before FROM {keyspace}.token_revocations")] == [("ann", 5)]


async def test_a_revocation_is_one_write_stamped_with_its_value(
        store: CassandraStore, cql: Any, keyspace: str) -> None:
    """The max-merge is Cassandra's own: the cell's write time is the value (in us)."""
    await store.revoke_tokens("ann", T0 + 3)
    await store.revoke_tokens("ann", T0)  # older: its cell loses to the stored one
    rows = list(cql.execute(f"SELECT not_before, WRITETIME(not_before) AS at"
                            f" FROM {keyspace}.token_revocations WHERE user = 'ann'"))
    assert [(r["not_before"], r["at"]) for r in rows] == [(T0 + 3, (T0 + 3) * 1000)]


async def test_upgrading_from_version_1_adds_the_push_kind_columns(
        store: CassandraStore, cql: Any, keyspace: str) -> None:
    await store.put_settings("ann", {"show_online": False})
    for column in ("push_message", "push_match", "push_like"):
        cql.execute(f"ALTER TABLE {keyspace}.settings DROP {column}")
    cql.execute(f"UPDATE {keyspace}.schema_version SET version = 1"
                " WHERE component = 'rendezvous'")
    replication = {"class": "SimpleStrategy", "replication_factor": 1}
    assert migrate(cql, keyspace, replication) == SCHEMA_VERSION
    assert migrate(cql, keyspace, replication) == SCHEMA_VERSION  # nothing to do twice
    fresh = CassandraStore([store.settings.contact_points[0][0]],
                           port=store.settings.contact_points[0][1], keyspace=keyspace)
    await fresh.start()  # prepares the statements against the upgraded table
    try:
        assert await fresh.get_settings("ann") == Settings(show_online=False)
        assert (await fresh.put_settings("ann", {"push_like": False})).push_like is False
    finally:
        await fresh.close()


def test_settings_are_checked_before_connecting() -> None:
    assert host_port("10.0.0.1", 9042) == ("10.0.0.1", 9042)
    assert host_port("db-1:9142", 9042) == ("db-1", 9142)
    assert host_port("[::1]:9142", 9042) == ("::1", 9142)
    assert host_port("::1", 9042) == ("::1", 9042)
    for bad in ("", "db:port", "[::1]x"):
        with pytest.raises(ValueError):
            host_port(bad, 9042)
    with pytest.raises(ValueError):
        CassandraStore(["db"], consistency="MOSTLY")
    with pytest.raises(ValueError):
        CassandraStore(["db"], keyspace="drop table")
    with pytest.raises(ValueError):
        decode_page_cursor("not-a-cursor")


# -- the event loop and outages -----------------------------------------------------------
def thread_states(pid: int) -> list[str]:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just exited
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
    return states


async def all_threads_stopped(pid: int, timeout: float = 10.0) -> None:
    """Wait until every thread of `pid` has taken its SIGSTOP: a group stop is not instant,
    and until then a running thread can still answer a request."""
    deadline = time.monotonic() + timeout
    while True:
        states = thread_states(pid)
        if all(state in "Tt" for state in states):
            return
        assert time.monotonic() < deadline, f"threads of {pid} still running: {states}"
        await asyncio.sleep(0.01)


async def test_no_blocking_driver_call_on_the_event_loop(
        store: CassandraStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """After start, every request is `execute_async`: the blocking entry points of the
    driver (execute, prepare, waiting on a result) are never called on the loop's thread."""
    loop_thread = threading.get_ident()
    blocked: list[str] = []

    def guard(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == loop_thread:
                blocked.append(name)
            return real(*args, **kwargs)
        return call

    session = store._session
    for name in ("execute", "prepare", "set_keyspace"):
        monkeypatch.setattr(session, name, guard(name, getattr(session, name)))
    monkeypatch.setattr(ResponseFuture, "result", guard("result", ResponseFuture.result))
    m = await matched(store, "ann", "bob")
    await asyncio.gather(*(store.save_message(msg(m.id, mid(T0 + i), "ann"))
                           for i in range(50)))
    await store.history(m.id, None, 100)
    await store.count_unread(m.id, "bob", 0)
    await store.conversations("bob")
    await store.put_device(Device("ann", "tok", "apns", None, None, T0))
    await store.record_swipe("ann", "cat", "like", T0)
    await store.close_match(m.id, "ann", T0 + 1)
    await store.close()
    assert blocked == []


async def test_outage_fails_fast_and_the_same_store_recovers(open_store: OpenStore,
                                                             node: CassandraNode,
                                                             cql: Any) -> None:
    timeout = 2.0
    store = await open_store(request_timeout_s=timeout)
    m = await matched(store, "ann", "bob")
    before = msg(m.id, mid(T0), "ann")
    await store.save_message(before)

    async def fails_in_time(call: Callable[[], Awaitable[Any]], within: float) -> float:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await call()
        elapsed = time.monotonic() - started
        assert elapsed < within, elapsed
        return elapsed

    calls: list[tuple[Callable[[], Awaitable[Any]], float]] = [  # and the most each may take
        (store.ping, timeout + 0.5),
        (lambda: store.history(m.id, None, 10), timeout + 0.5),
        (lambda: store.save_message(msg(m.id, mid(T0 + 1), "bob")), timeout + 0.5),
        (lambda: store.get_settings("ann"), timeout + 0.5),
        (lambda: store.create_match(MatchRecord(match_id_for("x", "y"), ("x", "y"), T0)),
         2 * timeout + 0.5)]  # the one call that retries (its outcome is unknown)

    # A node that hangs (frozen process): requests time out.
    pid = node.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        await all_threads_stopped(pid)
        frozen = [await fails_in_time(call, within) for call, within in calls]
    finally:
        os.kill(pid, signal.SIGCONT)
    await store.ping()

    # A node that is down: requests fail at once.
    await asyncio.to_thread(node.stop)
    down = [await fails_in_time(call, 0.5) for call, _ in calls]
    await asyncio.to_thread(node.start)
    started = time.monotonic()
    while True:  # the driver reconnects by itself; the store needs nothing
        try:
            await store.ping()
            break
        except StoreUnavailable:
            assert time.monotonic() - started < 30.0, "the store did not come back"
            await asyncio.sleep(0.2)
    recovered = time.monotonic() - started
    # the module's plain session reconnects too before the next test uses it (its pooled
    # connection died with the node: the first request on it can fail "defunct")
    while True:
        try:
            await asyncio.to_thread(cql.execute, "SELECT release_version FROM system.local")
            break
        except Exception:
            assert time.monotonic() - started < 60.0, "the plain session did not come back"
            await asyncio.sleep(0.2)

    after = msg(m.id, mid(T0 + 2), "bob")
    assert await store.save_message(after) == (after, True)
    assert await store.history(m.id, None, 10) == ([after, before], False)
    print(f"frozen: {[round(t, 2) for t in frozen]} s; down: {[round(t, 3) for t in down]} s;"
          f" back {recovered:.1f} s after the node answered")


async def test_a_version_2_keyspace_gets_the_swipe_economy_tables(
        store: CassandraStore, cql: Any, keyspace: str) -> None:
    """Main's version 2 came first: a keyspace at 2 gets version 3's tables (the swipe
    economy) and keeps its data."""
    await store.record_swipe("ann", "bob", "like", T0)
    for table in ("last_swipes", "likes_by_time", "blocks_received"):
        cql.execute(f"DROP TABLE {keyspace}.{table}", timeout=60)  # DDL: slow
    cql.execute(f"UPDATE {keyspace}.schema_version SET version = 2"
                " WHERE component = 'rendezvous'")
    replication = {"class": "SimpleStrategy", "replication_factor": 1}
    assert migrate(cql, keyspace, replication) == SCHEMA_VERSION == 4  # 3, then 4
    assert await store.get_swipe("ann", "bob") == "like"
    again = CassandraStore([store.settings.contact_points[0][0]],
                           port=store.settings.contact_points[0][1], keyspace=keyspace)
    await again.start()  # prepares the version-3 statements on the recreated tables
    try:
        swipe = Swipe("ann", "cat", "superlike", T0 + 1)
        await again.record_swipe("ann", "cat", "superlike", T0 + 1)
        await again.index_swipe(swipe)
        assert await again.last_swipe("ann") == swipe
        assert [s.swiper for s in await again.likes_received("cat", 5)] == ["ann"]
    finally:
        await again.close()
