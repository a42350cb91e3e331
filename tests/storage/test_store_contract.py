"""The `Store` contract (storage/base.py), one test per promise, run against every backend.

Nothing here knows which backend it talks to; an assertion that only holds for one backend
belongs in that backend's own test file.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from protocol.ids import compose, ms_of
from storage.base import (
    MUTED_FOREVER,
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
from storage.buckets import BUCKET_MS, bucket_of
from tests.storage.conftest import OpenStore

T0 = 1_700_000_000_000  # unix ms, a fixed "now"
_client_ids = itertools.count()


def mid(ms: int, seq: int = 0, node: int = 1) -> int:
    return compose(ms, node, seq)


def msg(match_id: str, id_: int, sender: str, body: str | None = "hi",
        client_id: str | None = None) -> Message:
    return Message(match_id, id_, sender, client_id or f"c{next(_client_ids)}", ms_of(id_),
                   body)


async def matched(store: Store, a: str, b: str, ts: int = T0) -> MatchRecord:
    lo, hi = sorted((a, b))
    match, created = await store.create_match(MatchRecord(match_id_for(a, b), (lo, hi), ts))
    assert created
    return match


# -- lifecycle --------------------------------------------------------------------------------
async def test_ping_answers(store: Store) -> None:
    await store.ping()


async def test_calls_after_close_raise_store_unavailable(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.save_message(msg(m.id, mid(T0), "ann"))
    with pytest.raises(StoreUnavailable):
        await store.history(m.id, None, 10)
    with pytest.raises(StoreUnavailable):
        await store.create_match(MatchRecord(match_id_for("x", "y"), ("x", "y"), T0))
    with pytest.raises(StoreUnavailable):
        await store.get_settings("ann")
    await store.close()  # closing twice is harmless


async def test_acked_writes_survive_close_and_reopen(open_store: OpenStore) -> None:
    first = await open_store()
    m = await matched(first, "ann", "bob")
    sent = [msg(m.id, mid(T0 + i), "ann" if i % 2 else "bob") for i in range(30)]
    for message in sent:
        assert (await first.save_message(message))[1]
    await first.put_settings("ann", {"push_previews": True})
    await first.close()

    second = await open_store()
    page, more = await second.history(m.id, None, 100)
    assert page == sent[::-1] and not more
    assert await second.get_match(m.id) == m
    assert (await second.get_settings("ann")).push_previews
    assert (await second.conversations("bob"))[0].last_id == sent[-1].id


# -- messages ---------------------------------------------------------------------------------
async def test_save_message_is_idempotent_on_match_sender_client_id(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    first = Message(m.id, mid(T0), "ann", "c-1", T0, "hello", {"kind": "image", "w": 3})
    assert await store.save_message(first) == (first, True)
    retry = Message(m.id, mid(T0 + 5), "ann", "c-1", T0 + 5, "hello again")
    assert await store.save_message(retry) == (first, False)
    other_sender = Message(m.id, mid(T0 + 6), "bob", "c-1", T0 + 6, "same client id")
    assert await store.save_message(other_sender) == (other_sender, True)
    page, _ = await store.history(m.id, None, 10)
    assert page == [other_sender, first]


async def test_save_message_without_a_match_row_still_stores(store: Store) -> None:
    message = msg("m-unknown", mid(T0), "ann")
    assert await store.save_message(message) == (message, True)
    assert await store.history("m-unknown", None, 5) == ([message], False)


async def test_history_pages_backwards_across_buckets(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    old = [msg(m.id, mid(T0 + i), "ann") for i in range(12)]
    new = [msg(m.id, mid(T0 + 2 * BUCKET_MS + i), "bob") for i in range(13)]
    assert bucket_of(old[-1].id) != bucket_of(new[0].id)
    for message in old + new:
        await store.save_message(message)
    await store.save_message(msg(match_id_for("x", "y"), mid(T0 + 3), "x"))  # another match

    seen: list[Message] = []
    before: int | None = None
    mores = []
    while True:
        page, more = await store.history(m.id, before, 10)
        seen += page
        mores.append(more)
        if not more:
            break
        before = page[-1].id
    assert seen == (old + new)[::-1]
    assert mores == [True, True, False]


async def test_history_more_flag_is_exact(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    assert await store.history(m.id, None, 5) == ([], False)
    sent = [msg(m.id, mid(T0 + i), "ann") for i in range(6)]
    for message in sent[:5]:
        await store.save_message(message)
    assert await store.history(m.id, None, 5) == (sent[:5][::-1], False)
    await store.save_message(sent[5])
    assert await store.history(m.id, None, 5) == (sent[1:][::-1], True)
    assert await store.history(m.id, sent[1].id, 5) == ([sent[0]], False)
    assert await store.history(m.id, sent[0].id, 5) == ([], False)


async def test_messages_after_oldest_first(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    sent = [msg(m.id, mid(T0 + i * BUCKET_MS // 3), "ann") for i in range(8)]
    for message in sent:
        await store.save_message(message)
    assert await store.messages_after(m.id, 0, 100) == sent
    assert await store.messages_after(m.id, sent[2].id, 3) == sent[3:6]
    assert await store.messages_after(m.id, sent[-1].id, 3) == []


async def test_count_unread_skips_own_messages_and_caps(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    sent = [msg(m.id, mid(T0 + i), "ann" if i % 3 == 0 else "bob") for i in range(12)]
    for message in sent:
        await store.save_message(message)
    from_bob = [s for s in sent if s.sender == "bob"]
    assert await store.count_unread(m.id, "ann", 0) == len(from_bob) == 8
    assert await store.count_unread(m.id, "ann", sent[5].id) == 4
    assert await store.count_unread(m.id, "ann", 0, cap=3) == 3
    assert await store.count_unread(m.id, "bob", 0) == 4
    assert await store.count_unread(m.id, "bob", sent[-1].id) == 0


async def test_reads_up_to_a_newest_id_stop_there(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    sent = [msg(m.id, mid(T0 + i * BUCKET_MS // 3), "ann" if i % 3 == 0 else "bob")
            for i in range(9)]  # over three buckets
    for message in sent:
        await store.save_message(message)
    newest = sent[6].id
    assert await store.messages_after(m.id, 0, 100, newest=newest) == sent[:7]
    assert await store.messages_after(m.id, sent[2].id, 100, newest=newest) == sent[3:7]
    assert await store.messages_after(m.id, sent[2].id, 2, newest=newest) == sent[3:5]
    assert await store.messages_after(m.id, newest, 100, newest=newest) == []
    assert await store.messages_after(m.id, sent[5].id, 100, newest=sent[3].id) == []
    assert await store.messages_after(m.id, 0, 100, newest=sent[-1].id) == sent
    from_bob = [s for s in sent[:7] if s.sender == "bob"]
    assert await store.count_unread(m.id, "ann", 0, newest=newest) == len(from_bob) == 4
    assert await store.count_unread(m.id, "ann", sent[2].id, newest=newest) == 2
    assert await store.count_unread(m.id, "ann", 0, cap=3, newest=newest) == 3
    assert await store.count_unread(m.id, "ann", newest, newest=newest) == 0
    assert await store.count_unread(m.id, "bob", sent[1].id, newest=sent[0].id) == 0


# -- conversations and cursors ----------------------------------------------------------------
async def test_cursors_only_move_forward(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    assert await store.cursors(m.id) == {}
    assert await store.advance_cursor(m.id, "ann", "read", 50)
    assert not await store.advance_cursor(m.id, "ann", "read", 30)
    assert not await store.advance_cursor(m.id, "ann", "read", 50)
    assert await store.advance_cursor(m.id, "ann", "delivered", 40)
    assert await store.advance_cursor(m.id, "ann", "read", 70)
    assert await store.cursors(m.id) == {"ann": Cursors(read_id=70, delivered_id=40)}
    assert not await store.advance_cursor(m.id, "bob", "read", 0)
    assert await store.advance_cursor(m.id, "bob", "delivered", 9)
    assert await store.cursors(m.id) == {"ann": Cursors(70, 40), "bob": Cursors(0, 9)}


async def test_create_match_adds_a_conversation_for_both(store: Store) -> None:
    m = await matched(store, "ann", "bob", ts=T0 + 7)
    assert await store.conversations("ann") == [Conversation(m.id, "bob", T0 + 7)]
    assert await store.conversations("bob") == [Conversation(m.id, "ann", T0 + 7)]


async def test_conversations_follow_the_last_message_forward_only(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    newer = msg(m.id, mid(T0 + 100), "bob")
    older = msg(m.id, mid(T0 + 50), "ann")
    await store.save_message(newer)
    await store.save_message(older)  # stored, but the conversation rows stay on `newer`
    last = (newer.id, "bob", newer.ts)
    assert await store.conversations("ann") == [Conversation(m.id, "bob", T0, *last)]
    assert await store.conversations("bob") == [Conversation(m.id, "ann", T0, *last)]


async def test_conversations_open_only_most_recent_activity_first(store: Store) -> None:
    a = await matched(store, "ann", "bob", ts=T0)
    b = await matched(store, "ann", "cat", ts=T0 + 1_000)
    c = await matched(store, "ann", "dan", ts=T0 + 2_000)
    d = await matched(store, "ann", "eve", ts=T0 + 3_000)
    assert [x.match_id for x in await store.conversations("ann")] == [d.id, c.id, b.id, a.id]
    await store.save_message(msg(a.id, mid(T0 + 2_500), "bob"))  # a: after c, before d
    await store.save_message(msg(b.id, mid(T0 + 5_000), "ann"))  # b: newest of all
    assert [x.match_id for x in await store.conversations("ann")] == [b.id, d.id, a.id, c.id]
    await store.close_match(d.id, "eve", T0 + 6_000)
    assert [x.match_id for x in await store.conversations("ann")] == [b.id, a.id, c.id]
    assert await store.conversations("eve") == []


# -- swipes and matches -----------------------------------------------------------------------
async def test_latest_swipe_wins(store: Store) -> None:
    assert await store.get_swipe("ann", "bob") is None
    await store.record_swipe("ann", "bob", "like", T0)
    assert await store.get_swipe("ann", "bob") == "like"
    await store.record_swipe("ann", "bob", "pass", T0 + 1)
    assert await store.get_swipe("ann", "bob") == "pass"
    await store.record_swipe("ann", "bob", "superlike", T0 + 2)
    assert await store.get_swipe("ann", "bob") == "superlike"
    assert await store.get_swipe("bob", "ann") is None


async def test_a_late_older_swipe_does_not_override(store: Store) -> None:
    await store.record_swipe("ann", "bob", "pass", T0 + 10)
    await store.record_swipe("ann", "bob", "like", T0 + 5)  # e.g. a retried old request
    assert await store.get_swipe("ann", "bob") == "pass"


async def test_swipes_given_pages_the_standing_swipes_by_target(store: Store) -> None:
    await store.record_swipe("ann", "dan", "pass", T0)
    await store.record_swipe("ann", "bob", "like", T0 + 1)
    await store.record_swipe("ann", "cat", "superlike", T0 + 2)
    await store.record_swipe("ann", "bob", "pass", T0 + 3)  # the latest stands
    await store.record_swipe("ann", "eve", "like", T0 + 4)
    await store.record_swipe("bob", "ann", "like", T0 + 5)  # someone else's swipe
    first = await store.swipes_given("ann", None, 2)
    assert first == [SwipeRecord("bob", "pass", T0 + 3), SwipeRecord("cat", "superlike", T0 + 2)]
    second = await store.swipes_given("ann", first[-1].target, 2)
    assert second == [SwipeRecord("dan", "pass", T0), SwipeRecord("eve", "like", T0 + 4)]
    assert await store.swipes_given("ann", "eve", 2) == []
    assert await store.swipes_given("bob", None, 10) == [SwipeRecord("ann", "like", T0 + 5)]
    assert await store.swipes_given("nobody", None, 10) == []


async def test_racing_create_match_exactly_one_wins(store: Store) -> None:
    record = MatchRecord(match_id_for("ann", "bob"), ("ann", "bob"), T0, superlike=True)
    results = await asyncio.gather(*(store.create_match(record) for _ in range(20)))
    assert sum(created for _, created in results) == 1
    assert {stored for stored, _ in results} == {record}
    assert await store.get_match(record.id) == record
    assert len(await store.conversations("ann")) == 1


async def test_create_match_never_replaces_a_closed_match(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    closed = await store.close_match(m.id, "bob", T0 + 9)
    stored, created = await store.create_match(MatchRecord(m.id, m.users, T0 + 99))
    assert not created and stored == closed
    assert stored.closed_by == "bob" and not stored.is_open


async def test_get_match_unknown_is_none(store: Store) -> None:
    assert await store.get_match("m-nope") is None


async def test_matches_for_user_pages_newest_first(store: Store) -> None:
    peers = [f"p{i}" for i in range(9)]
    made = [await matched(store, "ann", p, ts=T0 + (i // 2) * 1_000)  # pairs share a ts
            for i, p in enumerate(peers)]
    await matched(store, "zed", "yan")  # someone else's match
    closed = made[6]  # leaves a page boundary inside a tie on ts
    await store.close_match(closed.id, "ann", T0 + 10_000)
    open_ = [m for m in made if m is not closed]
    expect = sorted(open_, key=lambda m: (m.ts, m.id), reverse=True)

    seen, cursor, sizes = [], None, []
    while True:
        page = await store.matches_for_user("ann", 3, cursor)
        seen += page.items
        sizes.append(len(page.items))
        if page.next is None:
            break
        cursor = page.next
    assert [m.id for m in seen] == [m.id for m in expect]
    assert sizes == [3, 3, 2]
    assert await store.matches_for_user("nobody", 3) == Page([], None)


async def test_matches_ever_lists_closed_matches_too_newest_first(store: Store) -> None:
    old = await matched(store, "ann", "bob", ts=T0)
    new = await matched(store, "cat", "ann", ts=T0 + 5)
    await matched(store, "zed", "yan")  # someone else's match
    closed = await store.close_match(old.id, "bob", T0 + 9)
    assert await store.matches_ever("ann") == [new, closed]
    assert await store.matches_ever("bob") == [closed]
    assert await store.matches_ever("nobody") == []


async def test_close_match_is_idempotent_and_keeps_the_first_closing(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    first = await store.close_match(m.id, "ann", T0 + 1)
    assert first is not None and first.closed_ts == T0 + 1 and first.closed_by == "ann"
    assert await store.close_match(m.id, "bob", T0 + 2) == first
    assert await store.get_match(m.id) == first
    assert await store.conversations("ann") == [] and await store.conversations("bob") == []
    assert (await store.matches_for_user("bob", 10)).items == []
    assert await store.close_match("m-nope", "ann", T0) is None


# -- blocks, devices, settings ----------------------------------------------------------------
async def test_blocks_count_in_either_direction(store: Store) -> None:
    assert not await store.is_blocked("ann", "bob")
    await store.add_block("ann", "bob", T0)
    await store.add_block("ann", "bob", T0 + 1)  # repeat is harmless
    assert await store.is_blocked("ann", "bob")
    assert await store.is_blocked("bob", "ann")
    assert not await store.is_blocked("ann", "cat")


async def test_blocks_made_lists_the_users_own_blocks_by_target(store: Store) -> None:
    await store.add_block("ann", "cat", T0 + 2)
    await store.add_block("ann", "bob", T0)
    await store.add_block("dan", "ann", T0)  # against ann: not hers
    assert await store.blocks_made("ann") == [("bob", T0), ("cat", T0 + 2)]
    assert await store.blocks_made("nobody") == []


async def test_devices_register_update_move_and_delete(store: Store) -> None:
    phone = Device("ann", "tok-1", "apns", "dating-ios", "en", T0)
    await store.put_device(phone)
    await store.put_device(Device("ann", "tok-2", "fcm", None, None, T0))
    updated = Device("ann", "tok-1", "apns", "dating-ios", "fr", T0 + 1)
    await store.put_device(updated)
    assert await store.devices("ann") == [updated, Device("ann", "tok-2", "fcm", None, None, T0)]

    moved = Device("bob", "tok-1", "apns", "dating-ios", "de", T0 + 2)
    await store.put_device(moved)  # bob logged in on ann's phone
    assert [d.token for d in await store.devices("ann")] == ["tok-2"]
    assert await store.devices("bob") == [moved]
    assert not await store.delete_device("ann", "tok-1")  # no longer ann's

    assert await store.delete_device("bob", "tok-1")
    assert not await store.delete_device("bob", "tok-1")
    assert await store.devices("bob") == []
    await store.put_device(Device("cat", "tok-1", "apns", None, None, T0 + 3))
    assert [d.user for d in await store.devices("cat")] == ["cat"]


async def test_settings_default_then_merge(store: Store) -> None:
    assert await store.get_settings("ann") == Settings()
    merged = await store.put_settings("ann", {"push_previews": True})
    assert merged == Settings(show_online=True, read_receipts=True, push_previews=True)
    merged = await store.put_settings("ann", {"show_online": False})
    assert merged == Settings(show_online=False, read_receipts=True, push_previews=True)
    assert await store.get_settings("ann") == merged
    assert await store.put_settings("ann", {}) == merged
    assert await store.get_settings("bob") == Settings()


# -- token revocations ------------------------------------------------------------------------
async def test_tokens_not_before_only_rises(store: Store) -> None:
    assert await store.tokens_not_before("ann") is None
    assert await store.revoke_tokens("ann", T0) == T0
    assert await store.revoke_tokens("ann", T0) == T0  # idempotent
    assert await store.revoke_tokens("ann", T0 - 5_000) == T0  # an older one loses
    assert await store.tokens_not_before("ann") == T0
    assert await store.revoke_tokens("ann", T0 + 7) == T0 + 7
    assert await store.tokens_not_before("ann") == T0 + 7
    assert await store.tokens_not_before("bob") is None  # per user


async def test_racing_revocations_end_at_the_largest(store: Store) -> None:
    stamps = [T0 + n for n in (5, 1, 9, 3, 9, 0, 7)]
    stored = await asyncio.gather(*(store.revoke_tokens("ann", ts) for ts in stamps))
    assert all(value >= ts for value, ts in zip(stored, stamps, strict=True))
    assert await store.tokens_not_before("ann") == T0 + 9


async def test_a_revocation_survives_close_and_reopen(open_store: OpenStore) -> None:
    first = await open_store()
    assert await first.revoke_tokens("ann", T0) == T0
    await first.close()
    second = await open_store()
    assert await second.tokens_not_before("ann") == T0
    assert await second.revoke_tokens("ann", T0 - 1) == T0


async def test_push_kind_switches_default_on_and_merge(store: Store) -> None:
    assert (await store.get_settings("ann")).to_wire()["push_kinds"] == {
        "message": True, "match": True, "like": True}
    merged = await store.put_settings("ann", {"push_like": False})
    assert (merged.push_message, merged.push_match, merged.push_like) == (True, True, False)
    merged = await store.put_settings("ann", {"push_message": False, "push_previews": True})
    assert merged == Settings(push_previews=True, push_message=False, push_like=False)
    assert await store.get_settings("ann") == merged
    assert not merged.wants_push("message") and merged.wants_push("match")


# -- chat controls: a message by id, tombstones, has_sent, mutes -------------------------------
async def test_get_message_by_id_and_tombstone_keeps_id_sender_and_time(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    first, second = msg(m.id, mid(T0), "ann", "first"), msg(m.id, mid(T0 + 1), "bob", "2nd")
    for one in (first, second):
        await store.save_message(one)
    assert await store.get_message(m.id, first.id) == first
    assert await store.get_message(m.id, mid(T0 + 5)) is None
    assert await store.tombstone_message(m.id, first.id)
    assert await store.tombstone_message(m.id, first.id)  # idempotent
    assert not await store.tombstone_message(m.id, mid(T0 + 5))
    assert await store.get_message(m.id, mid(T0 + 5)) is None  # no row was made
    gone = await store.get_message(m.id, first.id)
    assert gone is not None and gone.deleted
    assert (gone.id, gone.sender, gone.ts) == (first.id, "ann", first.ts)
    page, _ = await store.history(m.id, None, 10)
    assert [(x.id, x.deleted) for x in page] == [(second.id, False), (first.id, True)]
    assert [x.deleted for x in await store.messages_after(m.id, 0, 10)] == [True, False]


async def test_tombstone_of_media_message_clears_media(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    pic = Message(m.id, mid(T0), "ann", "c-media", T0, None,
                  {"kind": "image", "url": "https://x.test/a.jpg"})
    await store.save_message(pic)
    assert await store.tombstone_message(m.id, pic.id)
    gone = await store.get_message(m.id, pic.id)
    assert gone is not None and gone.media is None and gone.deleted


async def test_has_sent_per_member(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    assert not await store.has_sent(m.id, "ann")
    await store.save_message(msg(m.id, mid(T0), "bob"))
    assert not await store.has_sent(m.id, "ann") and await store.has_sent(m.id, "bob")
    sent = msg(m.id, mid(T0 + 1), "ann")
    await store.save_message(sent)
    await store.tombstone_message(m.id, sent.id)
    assert await store.has_sent(m.id, "ann")  # an unsent opener was still sent


async def test_mutes_put_replace_delete(store: Store) -> None:
    assert await store.mute_until("ann", "m1") == 0
    await store.put_mute("ann", "m1", T0)
    await store.put_mute("ann", "m1", MUTED_FOREVER)
    assert await store.mute_until("ann", "m1") == MUTED_FOREVER
    assert await store.mute_until("bob", "m1") == 0  # per user
    assert await store.mute_until("ann", "m2") == 0  # per match
    await store.put_mute("ann", "m2", T0 + 5)
    assert await store.mutes("ann") == {"m1": MUTED_FOREVER, "m2": T0 + 5}
    assert await store.mutes("bob") == {}
    await store.delete_mute("ann", "m1")
    await store.delete_mute("ann", "m1")
    assert await store.mute_until("ann", "m1") == 0
    assert await store.mutes("ann") == {"m2": T0 + 5}


# -- ordering under concurrency ---------------------------------------------------------------
async def test_concurrent_saves_started_in_id_order_are_all_stored(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    sent = [msg(m.id, mid(T0 + i // 7, seq=i % 7), "ann" if i % 2 else "bob")
            for i in range(200)]
    results = await asyncio.gather(*(store.save_message(s) for s in sent))
    assert results == [(s, True) for s in sent]
    assert await store.messages_after(m.id, 0, 500) == sent
    assert (await store.conversations("ann"))[0].last_id == sent[-1].id


# -- hints from a caller that already knows ---------------------------------------------------
async def test_a_claimed_save_still_records_its_key_for_later_resends(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    first = Message(m.id, mid(T0), "ann", "c-1", T0, "hello")
    assert await store.save_message(first, claimed=True, members=m.users) == (first, True)
    resend = Message(m.id, mid(T0 + 5), "ann", "c-1", T0 + 5, "hello")  # claim store down
    assert await store.save_message(resend) == (first, False)
    assert await store.save_message(resend, members=m.users) == (first, False)
    assert await store.history(m.id, None, 10) == ([first], False)
    last = (first.id, "ann", first.ts)
    assert await store.conversations("bob") == [Conversation(m.id, "ann", T0, *last)]


async def test_the_members_hint_advances_both_conversation_rows(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    unclaimed = msg(m.id, mid(T0 + 1), "bob")
    assert await store.save_message(unclaimed, members=m.users) == (unclaimed, True)
    assert [c.last_id for c in await store.conversations("ann")] == [unclaimed.id]
    claimed = msg(m.id, mid(T0 + 2), "ann")  # no members given: the store finds them
    assert await store.save_message(claimed, claimed=True) == (claimed, True)
    for user in m.users:
        assert [c.last_id for c in await store.conversations(user)] == [claimed.id]
    assert await store.messages_after(m.id, 0, 10) == [unclaimed, claimed]


async def test_concurrent_claimed_saves_in_many_matches_are_all_stored(store: Store) -> None:
    matches = [await matched(store, "ann", f"p{i}") for i in range(6)]
    sent = [msg(matches[i % 6].id, mid(T0 + i // 5, seq=i % 5),
                "ann" if i % 2 else matches[i % 6].peer_of("ann")) for i in range(120)]
    results = await asyncio.gather(*(
        store.save_message(s, claimed=True, members=matches[i % 6].users)
        for i, s in enumerate(sent)))
    assert results == [(s, True) for s in sent]
    for match in matches:
        mine = [s for s in sent if s.match_id == match.id]
        assert await store.messages_after(match.id, 0, 500) == mine
        assert await store.count_unread(match.id, "ann", 0) == sum(
            1 for s in mine if s.sender != "ann")
        peer = match.peer_of("ann")
        assert (await store.conversations(peer))[0].last_id == mine[-1].id
    newest = {c.match_id: c.last_id for c in await store.conversations("ann")}
    assert newest == {m.id: [s for s in sent if s.match_id == m.id][-1].id for m in matches}
    for match in matches:  # the conversation row's newest id bounds every acked message
        mine = [s for s in sent if s.match_id == match.id]
        assert await store.messages_after(match.id, 0, 500, newest=newest[match.id]) == mine
        assert await store.count_unread(match.id, "ann", 0, newest=newest[match.id]) == sum(
            1 for s in mine if s.sender != "ann")


# -- account erasure ----------------------------------------------------------------------
async def test_an_erasure_is_recorded_once_pending_until_finished(store: Store) -> None:
    first = await store.begin_erasure("ann", T0)
    assert (first.user, first.erased_at, first.step, first.done) == ("ann", T0, 0, False)
    again = await store.begin_erasure("ann", T0 + 50)  # a retry: the first erased_at stays
    assert again.erased_at == T0
    await store.begin_erasure("bob", T0 + 1)
    assert [e.user for e in await store.pending_erasures(10)] == ["ann", "bob"]
    await store.erasure_progress("ann", 3)
    await store.erasure_progress("ann", 2)  # never lowered
    assert (await store.get_erasure("ann")).step == 3  # type: ignore[union-attr]
    await store.finish_erasure("ann", T0 + 9)
    done = await store.get_erasure("ann")
    assert done is not None and done.done and done.erased_at == T0
    assert [e.user for e in await store.pending_erasures(10)] == ["bob"]
    assert (await store.begin_erasure("ann", T0 + 99)).done  # a second erasure: the first
    assert (await store.begin_erasure("ann", T0 + 99, again_after=T0)).done  # not after
    assert [e.user for e in await store.pending_erasures(10)] == ["bob"]
    assert await store.get_erasure("cat") is None
    # the account used again after its erasure (a later token): erased anew
    anew = await store.begin_erasure("ann", T0 + 200, again_after=T0 + 100)
    assert (anew.erased_at, anew.step, anew.done) == (T0 + 200, 0, False)
    assert (await store.begin_erasure("ann", T0 + 300, again_after=T0 + 150)).erased_at == (
        T0 + 200)  # pending: the same one
    assert [e.user for e in await store.pending_erasures(10)] == ["bob", "ann"]


async def test_erasing_a_match_tombstones_the_users_messages_only(store: Store) -> None:
    m = await matched(store, "ann", "bob")
    sent = [msg(m.id, mid(T0 + i), "ann" if i % 2 else "bob", body=f"b{i}") for i in range(6)]
    for s in sent:
        await store.save_message(s)
    await store.advance_cursor(m.id, "ann", "read", sent[-1].id)
    await store.advance_cursor(m.id, "bob", "read", sent[-1].id)
    assert await store.sent_in_match("ann", m.id) == [(s.id, s.client_id) for s in sent
                                                      if s.sender == "ann"]
    assert await store.erase_in_match("ann", m) == 3
    history, _ = await store.history(m.id, None, 10)
    assert [(h.id, h.sender, h.deleted) for h in history] == [
        (s.id, s.sender, s.sender == "ann") for s in reversed(sent)]
    assert all(h.body is None and h.media is None and h.client_id == ""
               for h in history if h.sender == "ann")
    assert [h.body for h in history if h.sender == "bob"] == ["b4", "b2", "b0"]
    assert await store.sent_in_match("ann", m.id) == []
    assert await store.cursors(m.id) == {"bob": Cursors(sent[-1].id, 0)}
    assert await store.conversations("ann") == []
    assert await store.conversations("bob") == []
    assert await store.matches_ever("ann") == []
    assert [x.id for x in await store.matches_ever("bob")] == [m.id]
    assert await store.erase_in_match("ann", m) == 0  # again: nothing left to do
    # a resend of an erased message's client id is not answered with the tombstone
    resend = Message(m.id, mid(T0 + 20), "ann", sent[1].client_id, T0 + 20, "new")
    assert await store.save_message(resend) == (resend, True)


async def test_erasing_swipes_forgets_given_and_received_passes_too(store: Store) -> None:
    await store.record_swipe("ann", "bob", "like", T0)
    await store.record_swipe("ann", "cat", "pass", T0)
    await store.record_swipe("dan", "ann", "pass", T0)
    await store.record_swipe("eve", "ann", "superlike", T0)
    await store.record_swipe("dan", "eve", "like", T0)
    await store.erase_user_data("ann", "swipes")
    for swiper, target in (("ann", "bob"), ("ann", "cat"), ("dan", "ann"), ("eve", "ann")):
        assert await store.get_swipe(swiper, target) is None
    assert await store.get_swipe("dan", "eve") == "like"
    await store.erase_user_data("ann", "swipes")  # idempotent


async def test_erasing_blocks_devices_settings_and_the_index(store: Store) -> None:
    await store.add_block("ann", "bob", T0)
    await store.add_block("cat", "ann", T0)
    await store.put_device(Device("ann", "tok-a", "apns", "app", "fr", T0))
    await store.put_device(Device("bob", "tok-b", "fcm", None, None, T0))
    await store.put_settings("ann", {"show_online": False})
    m = await matched(store, "ann", "bob")
    for kind in ("blocks", "devices", "settings", "matches_index"):
        await store.erase_user_data("ann", kind)  # type: ignore[arg-type]
        await store.erase_user_data("ann", kind)  # type: ignore[arg-type]
    assert not await store.is_blocked("ann", "bob")
    assert await store.is_blocked("ann", "cat")  # made by cat: stays in force
    assert await store.devices("ann") == []
    assert [d.token for d in await store.devices("bob")] == ["tok-b"]
    await store.put_device(Device("dan", "tok-a", "apns", None, None, T0 + 1))  # free again
    assert [d.user for d in await store.devices("dan")] == ["dan"]
    assert await store.get_settings("ann") == Settings()
    assert await store.matches_ever("ann") == []
    assert await store.conversations("ann") == []
    assert [x.id for x in await store.matches_ever("bob")] == [m.id]
