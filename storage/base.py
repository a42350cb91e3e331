"""The `Store` protocol: every durable thing the node keeps, and the records it returns.

Both implementations (SQLite for the embedded default, Cassandra for a cluster) keep the same
logical tables: messages by (match, time bucket) clustered by id descending, conversations by
user, swipes by swiper, likes received, matches and matches by user, blocks, devices, settings
and read cursors. Every method is a coroutine that never blocks the event loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

SwipeAction = Literal["like", "pass", "superlike"]
CursorKind = Literal["read", "delivered"]
Platform = Literal["apns", "fcm"]


class StoreUnavailable(Exception):
    """The backing store cannot be reached or failed: temporary, retry later.

    Nothing the failed call was asked to write may be assumed written or unwritten; every
    write is idempotent, so the caller retries with the same arguments.
    """


@dataclass(frozen=True, slots=True)
class Message:
    match_id: str
    id: int
    sender: str
    client_id: str
    ts: int  # unix ms, the time the id was assigned
    body: str | None = None
    media: dict[str, Any] | None = None  # the wire form of `protocol.frames.Media`

    @property
    def deleted(self) -> bool:
        """A tombstone: unsent, or its sender's account erased. Every sent message has a
        body or media, so a stored row with neither is one (docs/privacy.md)."""
        return self.body is None and self.media is None


@dataclass(frozen=True, slots=True)
class MatchRecord:
    id: str
    users: tuple[str, str]  # sorted
    ts: int  # unix ms of creation
    superlike: bool = False
    closed_ts: int | None = None  # set by unmatch or block
    closed_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_ts is None

    def has(self, user: str) -> bool:
        return user in self.users

    def peer_of(self, user: str) -> str:
        a, b = self.users
        return b if user == a else a


@dataclass(frozen=True, slots=True)
class SwipeRecord:
    """One user's standing swipe on one target (the latest one wins)."""

    target: str
    action: SwipeAction
    ts: int  # unix ms


@dataclass(frozen=True, slots=True)
class Conversation:
    """One user's row for one open match: what changed last in it."""

    match_id: str
    peer: str
    match_ts: int
    last_id: int = 0  # 0: no message yet
    last_from: str | None = None
    last_ts: int | None = None


@dataclass(frozen=True, slots=True)
class Cursors:
    """How far one member has read and received in one match (message ids, 0 for none)."""

    read_id: int = 0
    delivered_id: int = 0


@dataclass(frozen=True, slots=True)
class Device:
    user: str
    token: str
    platform: Platform
    app: str | None = None
    locale: str | None = None
    updated_ts: int = 0


PUSH_KINDS = ("message", "match", "like")  # the switches of `push_kinds` (docs/push.md)


@dataclass(frozen=True, slots=True)
class Settings:
    show_online: bool = True
    read_receipts: bool = True
    push_previews: bool = False
    # one switch per push kind: stored flat, one column each, shown as `push_kinds`
    push_message: bool = True
    push_match: bool = True
    push_like: bool = True

    def as_dict(self) -> dict[str, bool]:
        """Every setting by its stored name (the columns, in `SETTING_COLUMNS` order)."""
        return {"show_online": self.show_online, "read_receipts": self.read_receipts,
                "push_previews": self.push_previews, "push_message": self.push_message,
                "push_match": self.push_match, "push_like": self.push_like}

    def to_wire(self) -> dict[str, Any]:
        """What `GET /v1/me/settings` answers: the push switches grouped in `push_kinds`."""
        return {"show_online": self.show_online, "read_receipts": self.read_receipts,
                "push_previews": self.push_previews,
                "push_kinds": {"message": self.push_message, "match": self.push_match,
                               "like": self.push_like}}

    def wants_push(self, kind: str) -> bool:
        """Whether the user takes pushes of `kind`; a kind with no switch is always on."""
        return bool(getattr(self, f"push_{kind}")) if kind in PUSH_KINDS else True


SETTING_COLUMNS = tuple(Settings().as_dict())
SETTING_NAMES = frozenset(SETTING_COLUMNS)
MUTED_FOREVER = (1 << 63) - 1  # `mute_until` of a match muted with no end (wire: null)


@dataclass(frozen=True, slots=True)
class Erasure:
    """An account erasure (docs/privacy.md, "Erasure"): recorded before any data goes, so
    a failed one is resumed, and kept once done, so a second request answers the first
    `erased_at`. `step` counts the steps finished (the service's ordered list)."""

    user: str
    erased_at: int  # unix ms
    step: int = 0
    done_ts: int | None = None

    @property
    def done(self) -> bool:
        return self.done_ts is not None


# What `Store.erase_user_data` removes, one kind per call; each is idempotent.
# swipes: given and received, and the likes lists they are in; blocks: the ones the user
# made (blocks against them stay); devices: push tokens and their owner rows; settings;
# matches_index: the user's own per-user match and conversation partitions (last: the
# erasure walks the matches through them until then).
ErasableKind = Literal["swipes", "blocks", "devices", "settings", "matches_index"]
ERASABLE_KINDS: tuple[ErasableKind, ...] = ("swipes", "blocks", "devices", "settings",
                                            "matches_index")


def match_id_for(a: str, b: str) -> str:
    """The deterministic id of the match between two users.

    Both racing likes compute the same key, so creating the match is an insert-if-absent on
    it (a lightweight transaction in Cassandra) and a retried insert is harmless.
    """
    lo, hi = sorted((a, b))
    digest = hashlib.blake2b(f"{lo}\x00{hi}".encode(), digest_size=12).hexdigest()
    return "m" + digest


def encode_page_cursor(last: MatchRecord) -> str:
    """The opaque cursor after `last` in a user's matches: its (ts, id) keyset, the same for
    every backend."""
    return base64.urlsafe_b64encode(f"{last.ts}:{last.id}".encode()).decode()


def decode_page_cursor(cursor: str) -> tuple[int, str]:
    """(ts, match id) of a cursor from `encode_page_cursor`; ValueError for anything else."""
    try:
        ts, match_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        return int(ts), match_id
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ValueError("malformed page cursor") from exc


REPORT_REASONS = ("spam", "scam", "harassment", "underage", "nudity", "other")
ReportReason = Literal["spam", "scam", "harassment", "underage", "nudity", "other"]
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Report:
    """A user's report of another, with the evidence frozen when it was filed: copies of
    the last messages between the two, kept in the report's own row, so that nothing done
    to the messages afterwards (unsend, unmatch, erasure) reaches them (docs/privacy.md)."""

    id: str
    reporter: str
    reported: str
    reason: ReportReason
    ts: int  # unix ms of filing
    note: str | None = None
    evidence: tuple[Message, ...] = ()  # newest first, as history returns them

    @property
    def day(self) -> int:
        """The UTC day (days since the epoch) the report is listed under."""
        return self.ts // DAY_MS


def encode_report_cursor(ts: int, report_id: str) -> str:
    """The opaque cursor after the report (ts, id) in the newest-first listing."""
    return base64.urlsafe_b64encode(f"r{ts}:{report_id}".encode()).decode()


def decode_report_cursor(cursor: str) -> tuple[int, str]:
    """(ts, report id) of a cursor from `encode_report_cursor`; ValueError for anything
    else (a match cursor included)."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith("r"):
            raise ValueError(text)
        ts, report_id = text[1:].split(":", 1)
        if not report_id or not ts.isdigit():
            raise ValueError(text)
        return int(ts), report_id
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ValueError("malformed report cursor") from exc


@dataclass(frozen=True, slots=True)
class ReportPage:
    """A page of reports, newest first, and the cursor of the next page (None on the last)."""

    items: list[Report] = field(default_factory=list)
    next: str | None = None


@dataclass(frozen=True, slots=True)
class Swipe:
    """One swipe as stored: who swiped whom, how, and when (unix ms)."""

    swiper: str
    target: str
    action: SwipeAction
    ts: int


MAX_DECK_CANDIDATES = 500  # user ids one `deck_exclusions` call may look at


@dataclass(frozen=True, slots=True)
class Page:
    """A page of matches and the opaque cursor of the next page (None on the last)."""

    items: list[MatchRecord] = field(default_factory=list)
    next: str | None = None


class Store(Protocol):
    """Durable state. A call that returns has done its work durably (committed and, where
    configured, synced to disk); a call that raises `StoreUnavailable` may or may not have,
    and is safe to repeat. Input is already validated by the caller."""

    async def start(self) -> None:
        """Open connections and create or check the schema."""

    async def close(self) -> None:
        """Finish pending writes and release connections."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers now (readiness)."""

    # -- messages -------------------------------------------------------------------------
    async def save_message(self, message: Message, *, claimed: bool = False,
                           members: tuple[str, str] | None = None) -> tuple[Message, bool]:
        """Store `message` and advance both members' conversation rows to it.

        Idempotent on (match_id, sender, client_id): if that key was stored before, nothing is
        written and the first message is returned with False. Returns (message, True) once
        the write is durable. Ids given for one match are increasing; the store keeps them.

        Two hints from a caller that already knows, so that the store need not read:
        `claimed=True` promises that this save holds an exclusive claim on the key in a
        claim store every writer shares (a won Redis send claim): no other save of the key
        is running and none succeeded while the claim store remembers it. The store may
        then skip its idempotency check and return (message, True); it still records the
        key, so a later unclaimed resend is deduplicated. Pass it only for such a claim
        (never for a claim that fell back to "new" because the claim store was down).
        `members` are the match's two users as the caller read them (`MatchRecord.users`):
        the rows to advance, instead of the store looking the match up.
        """

    async def history(self, match_id: str, before: int | None,
                      limit: int) -> tuple[list[Message], bool]:
        """Up to `limit` messages of the match with id < `before` (all when None), newest
        first, and whether older ones exist."""

    async def messages_after(self, match_id: str, after_id: int, limit: int, *,
                             newest: int | None = None) -> list[Message]:
        """Up to `limit` messages of the match with id > `after_id`, oldest first.

        `newest`, when given, is the match's newest message id as the caller just read it
        (`Conversation.last_id`: every acknowledged message is at or below it): only ids up
        to it are returned, and the store need not look past it (for Cassandra, it names
        the last bucket to read). A message newer than it is returned by the next call.
        """

    async def count_unread(self, match_id: str, user: str, after_id: int,
                           cap: int = 999, *, newest: int | None = None) -> int:
        """How many messages not sent by `user` have id > `after_id` (at most `cap`); with
        `newest` (as in `messages_after`), only those with id <= `newest`."""

    # -- conversations and cursors --------------------------------------------------------
    async def conversations(self, user: str) -> list[Conversation]:
        """The user's rows for every open match, most recent activity first."""

    async def cursors(self, match_id: str) -> dict[str, Cursors]:
        """Each member's read and delivered cursor (members with none are left out)."""

    async def advance_cursor(self, match_id: str, user: str, kind: CursorKind,
                             message_id: int) -> bool:
        """Move the cursor forward to `message_id`; never back. True if it moved."""

    # -- swipes and matches ---------------------------------------------------------------
    async def record_swipe(self, swiper: str, target: str, action: SwipeAction,
                           ts: int) -> None:
        """Remember the swipe and, for a like or superlike, the like received by `target`
        (a pass removes it). The swipe with the latest `ts` wins, a tie going to the later
        call, as Cassandra's write timestamps would have it."""

    async def get_swipe(self, swiper: str, target: str) -> SwipeAction | None:
        """The swiper's standing action on target, if any."""

    async def swipes_given(self, swiper: str, after: str | None,
                           limit: int) -> list[SwipeRecord]:
        """Up to `limit` of the swiper's standing swipes with target > `after` (all when
        None), ordered by target: a keyset page of one partition (`swipes_by_swiper`), so a
        user with any number of swipes is read a page at a time (the export's swipes)."""

    async def create_match(self, match: MatchRecord) -> tuple[MatchRecord, bool]:
        """Insert the match if no match with its id exists (whatever its state) and add it
        to both users' matches. Returns the stored match and whether this call created it;
        of any number of racing calls exactly one gets True. (A creator whose call failed
        with `StoreUnavailable` after committing sees False on retry: callers must not make
        the match usable only on True.)"""

    async def get_match(self, match_id: str) -> MatchRecord | None:
        """The match in any state, or None if it never existed."""

    async def matches_for_user(self, user: str, limit: int,
                               cursor: str | None = None) -> Page:
        """The user's open matches, newest first (ties by id), `limit` per page. A cursor
        that this store did not make raises ValueError (the caller's `bad_request`)."""

    async def matches_ever(self, user: str) -> list[MatchRecord]:
        """Every match the user was ever in, open or closed, newest first: what an export
        lists and an erasure walks (one partition, `user_matches`)."""

    async def close_match(self, match_id: str, by_user: str, ts: int) -> MatchRecord | None:
        """Close the match for sending and reading (unmatch or block). Idempotent: a closed
        match stays closed with its first closing. None if there is no such match."""

    # -- blocks, devices, settings --------------------------------------------------------
    async def add_block(self, user: str, target: str, ts: int) -> None:
        """Remember that `user` blocked `target` (idempotent; blocks are never lifted)."""

    async def is_blocked(self, a: str, b: str) -> bool:
        """True if either user blocked the other."""

    async def blocks_made(self, user: str) -> list[tuple[str, int]]:
        """(target, ts) of every block `user` made, by target (one partition; the export)."""

    async def put_device(self, device: Device) -> None:
        """Register or update a push token. A token belongs to one user: registering it for
        another user moves it."""

    async def delete_device(self, user: str, token: str) -> bool:
        """Forget the user's token; False if the user had no such token."""

    async def devices(self, user: str) -> list[Device]:
        """The user's registered push devices, ordered by token."""

    async def get_settings(self, user: str) -> Settings:
        """The user's settings, defaults for a user who never set any."""

    async def put_settings(self, user: str, changes: dict[str, bool]) -> Settings:
        """Apply `changes` (keys from `SETTING_NAMES`) and return the full settings."""

    # -- the swipe economy (schema version 3; docs/storage.md, "Undo, likes and the deck") --
    async def index_swipe(self, swipe: Swipe) -> None:
        """Keep the rows a recorded swipe adds to the version-3 tables: the swiper's latest
        swipe (for undo) and, for a like, its place in the target's likes by time. Called
        with the same swipe right after `record_swipe`; idempotent; of two swipes of one
        swiper, the latest `ts` stays the latest."""

    async def last_swipe(self, swiper: str) -> Swipe | None:
        """The swiper's latest swipe as `index_swipe` kept it, unless it was undone."""

    async def undo_swipe(self, swipe: Swipe) -> bool:
        """Take back `swipe`: its swipe row, the like it left with the target and the
        swiper's latest-swipe row, each only if it is still this swipe (a later swipe of
        the same pair, or a later latest swipe, stays). False when this store can tell that
        nothing was removed (it was undone or overtaken before); a store that cannot tell
        without a read returns True. Idempotent."""

    async def likes_received(self, target: str, limit: int,
                             before: tuple[int, str] | None = None) -> list[Swipe]:
        """Up to `limit` standing likes and super likes received by `target`, newest first
        (ties by swiper, descending), strictly after the keyset `before` = (ts, swiper) of
        the last one of the previous page. Blocks and the target's own swipes are the
        caller's to filter."""

    async def deck_exclusions(self, user: str, candidates: Sequence[str]) -> set[str]:
        """The candidates (at most `MAX_DECK_CANDIDATES`) that `user` swiped or blocked,
        or that blocked `user`: one round of reads for the lot (for Cassandra, one
        single-partition query per table, sent together). A match implies a swipe, so
        matched users are among the swiped."""

    # -- token revocations (docs/protocol.md, "Log out everywhere") ------------------------
    async def revoke_tokens(self, user: str, ts: int) -> int:
        """Raise the user's "tokens not before" to `ts` (unix ms) unless it is higher already,
        and return the value now stored. A max-merge: idempotent, and racing or replayed
        calls in any order end at the largest `ts`. Tokens with `iat` at or before it are
        refused. It is never lowered or deleted (erasure keeps it, or old tokens would work
        again)."""

    async def tokens_not_before(self, user: str) -> int | None:
        """The user's "tokens not before" (unix ms), None if their tokens were never
        revoked."""

    # -- chat controls: unsend, openers, mutes (docs/chat-controls.md) --------------------
    async def get_message(self, match_id: str, message_id: int) -> Message | None:
        """The stored message with this id in the match (a tombstone too), or None."""

    async def tombstone_message(self, match_id: str, message_id: int) -> bool:
        """Clear the message's body and media: it stays in history and sync as a
        tombstone (`Message.deleted`) with its id, sender and time. Idempotent; False if
        the match holds no message with this id."""

    async def has_sent(self, match_id: str, user: str) -> bool:
        """Whether `user` ever sent a message in the match (tombstones count): a send
        after one is not an opener. Exact on SQLite (the idempotency keys); Cassandra reads
        the match's messages oldest first and answers True past a bound it names
        (`cassandra_controls.SENT_SCAN_LIMIT`): a user silent through that many of the
        peer's messages is no longer opening a conversation."""

    async def put_mute(self, user: str, match_id: str, until: int) -> None:
        """Mute the match's pushes for `user` until unix ms `until` (`MUTED_FOREVER`: no
        end), replacing an earlier mute."""

    async def delete_mute(self, user: str, match_id: str) -> None:
        """Unmute (idempotent)."""

    async def mute_until(self, user: str, match_id: str) -> int:
        """Unix ms until which `user` muted the match; 0 when not muted (an expired mute
        may still be returned: compare with now)."""

    async def mutes(self, user: str) -> dict[str, int]:
        """Every mute of `user`: match id -> `until` as put (expired ones too); one
        partition, for the match list."""

    # -- account erasure (docs/privacy.md, "Erasure") -------------------------------------
    async def begin_erasure(self, user: str, ts: int, *,
                            again_after: int | None = None) -> Erasure:
        """Record that `user` is erased as of `ts` (unix ms) unless an erasure is recorded
        already, and return the stored one: of racing or repeated calls, every caller gets
        the first `erased_at`. The record lists the erasure as pending until
        `finish_erasure`. With `again_after`, a finished erasure with `erased_at` before it
        starts over as of `ts` (the account was used again since: a token issued after the
        erasure asks to erase what it made); racing calls still agree on one."""

    async def get_erasure(self, user: str) -> Erasure | None:
        """The user's erasure, pending or done; None if they were never erased."""

    async def erasure_progress(self, user: str, step: int) -> None:
        """Note that the first `step` steps of the user's erasure are done (never lowered)."""

    async def finish_erasure(self, user: str, ts: int) -> None:
        """The erasure is complete: no longer pending (the record itself stays)."""

    async def pending_erasures(self, limit: int) -> list[Erasure]:
        """Up to `limit` erasures not finished, oldest first: what a node resumes (one small
        partition on Cassandra, an index of the unfinished ones on SQLite)."""

    async def sent_in_match(self, user: str, match_id: str) -> list[tuple[int, str]]:
        """(id, client id) of the messages `user` sent in the match that are not erased yet
        (an erased message keeps no client id), oldest first."""

    async def erase_in_match(self, user: str, match: MatchRecord) -> int:
        """Erase `user` from one match they were in: their messages become tombstones (no
        body, media or client id; sender, id and ts stay for the peer's history), their
        idempotency keys and read cursor go, both members' conversation rows of the match
        go, and last the user's own listing of the match (so a cut-short call is found by
        `matches_ever` and repeated). Returns how many messages it tombstoned. The match
        row and the peer's messages and cursor stay."""

    async def erase_user_data(self, user: str, kind: ErasableKind) -> None:
        """Delete the user's rows of one `ErasableKind` (see `ERASABLE_KINDS`). Idempotent."""

    # -- reports (docs/privacy.md, "Reports") ---------------------------------------------
    async def save_report(self, report: Report, *, keep_s: int) -> None:
        """Store the report, its evidence and its place in the listing. Idempotent on the
        report id (a retry writes the same rows). `keep_s` is how long it is kept: a store
        that can expire rows by itself (Cassandra's TTL) may use it as a backstop; every
        store also deletes it on `purge_reports`."""

    async def get_report(self, report_id: str) -> Report | None:
        """The report with this id, evidence included; None if there is none (or purged)."""

    async def list_reports(self, limit: int, cursor: str | None = None, *,
                           since_ts: int = 0) -> ReportPage:
        """Reports filed at or after `since_ts` (the retention horizon), newest first (ties
        by id, descending), `limit` per page. A cursor this store did not make raises
        ValueError (the caller's `bad_request`)."""

    async def purge_reports(self, before_ts: int) -> int:
        """Delete every report filed before `before_ts` with its evidence and listing
        entry; how many were deleted (as far as the store can tell). Idempotent: a purge
        cut short is finished by the next one."""
