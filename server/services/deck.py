"""The deck filter: drop from a batch of candidates everyone the caller must not be shown.

The app's recommender proposes candidates; the chat server knows the swipes and blocks, so
it filters them: without the caller, anyone the caller swiped (a match implies a like, so
matches too) or blocked, and anyone who blocked the caller. One store round trip per batch
(`Store.deck_exclusions`), order kept, duplicates kept as given.
"""

from __future__ import annotations

from protocol.errors import ErrorCode, ProtocolError
from storage import Store
from storage.base import MAX_DECK_CANDIDATES


class DeckService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def filter(self, user: str, candidates: list[str]) -> list[str]:
        if len(candidates) > MAX_DECK_CANDIDATES:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"at most {MAX_DECK_CANDIDATES} "
                                f"candidates per call, got {len(candidates)}: split the batch")
        others = [c for c in candidates if c != user]
        excluded = await self.store.deck_exclusions(user, others) if others else set()
        return [c for c in others if c not in excluded]
