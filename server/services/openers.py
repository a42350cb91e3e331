"""Opener rules on the send path: is this send a user's first message in the match, and
may it go out (docs/chat-controls.md, "Openers").

Only built when `openers_per_day` or `reject_duplicate_openers` is on, so with both off a
send does no work here at all. When on, a (user, match) pair costs one store read
(`Store.has_sent`) the first time this node sees it, and one ledger step if it is an
opener; afterwards this node remembers the pair and a send costs a set lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from dataclasses import dataclass

from protocol.errors import ErrorCode, ProtocolError
from server.backends.openers import OpenerLedger, OpenerRules, OpenersUnavailable
from server.services.caller import RETRY_UNAVAILABLE_MS, unavailable
from storage import Store, StoreUnavailable

OPENED_KEPT = 100_000  # (match, user) pairs a node remembers as already past their opener
PENDING_RETRY_MS = 250  # another device's opener of the match is being stored
_SPACE = re.compile(r"\s+")


def normalise(body: str) -> str:
    """An opener's text as duplicates are compared: Unicode NFKC (full-width and
    compatibility forms fold to plain ones), case folded, runs of whitespace (any kind,
    newlines too) collapsed to one space, stripped at both ends. So "Hey  there!" and
    " hey there! " are the same opener; punctuation and emoji still count."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", body).casefold()).strip()


def digest(user: str, body: str) -> str:
    """What the ledger keeps of an opener: a digest of the user and the normalised text,
    never the text (Redis holds no message bodies)."""
    return hashlib.blake2b(f"{user}\x00{normalise(body)}".encode(),
                           digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Opener:
    """An admitted opener: released if its message then fails to store."""

    user: str
    match_id: str


class OpenerGate:
    def __init__(self, store: Store, ledger: OpenerLedger, rules: OpenerRules) -> None:
        self.store = store
        self.ledger = ledger
        self.rules = rules
        self._opened: set[tuple[str, str]] = set()

    async def check(self, user: str, match_id: str, body: str | None,
                    r: int) -> Opener | None:
        """None when the send is not an opener; the admitted `Opener` when it is; a
        `ProtocolError` (`opener_limit`, `duplicate_opener`, `unavailable`) when it may
        not go out. Nothing is written for a refused send."""
        key = (match_id, user)
        if key in self._opened:
            return None
        try:
            if await self.store.has_sent(match_id, user):
                self._remember(key)
                return None
        except StoreUnavailable:
            raise unavailable(r) from None
        text = body if self.rules.reject_duplicates else None
        try:
            verdict, retry_ms = await self.ledger.admit(
                user, match_id, digest(user, text) if text is not None else None)
        except OpenersUnavailable:
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the opener ledger is unavailable; "
                                "nothing was stored", r=r,
                                retry_ms=RETRY_UNAVAILABLE_MS) from None
        if verdict == "ok":
            return Opener(user, match_id)
        if verdict == "pending":
            raise ProtocolError(ErrorCode.UNAVAILABLE, "your first message in this match "
                                "is being stored; resend", r=r, retry_ms=PENDING_RETRY_MS)
        if verdict == "limit":
            raise ProtocolError(ErrorCode.OPENER_LIMIT, f"at most {self.rules.per_day} "
                                "first messages a day", r=r, retry_ms=retry_ms)
        raise ProtocolError(ErrorCode.DUPLICATE_OPENER, "the same first message was sent "
                            "in another match in the last 24 hours", r=r)

    def stored(self, opener: Opener) -> None:
        """The opener's message is durable: later sends in the match are not openers."""
        self._remember((opener.match_id, opener.user))

    async def release(self, opener: Opener) -> None:
        """The opener's message was not stored: it counts for nothing."""
        # on failure its record stays: once PENDING_MS old, the match's next opener
        # replaces it, and else it leaves the window in 24 h
        with contextlib.suppress(OpenersUnavailable):
            await self.ledger.release(opener.user, opener.match_id)

    def _remember(self, key: tuple[str, str]) -> None:
        if len(self._opened) >= OPENED_KEPT:
            self._opened.clear()  # rare and cheap: the next sends read the store again
        self._opened.add(key)
