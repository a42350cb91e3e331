"""The swipe economy's routes of the HTTP API: quota, undo, who liked me, the deck filter.

Thin, as the rest of the API (server/edge/http_api.py): parse, authenticate, call the
service (server/services/quotas.py, swipes.py, deck.py), shape the JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from server.edge.http_api import AUTHED, INVALID, WITH_BODY, User, UserId, _error
from server.services.deck import DeckService
from server.services.quotas import QuotaService
from server.services.swipes import SwipeService
from storage.base import MAX_DECK_CANDIDATES


class DeckBody(BaseModel):
    candidates: list[UserId] = Field(description=f"user ids, at most {MAX_DECK_CANDIDATES}")


def _tier(request: Request) -> tuple[str, ...]:
    return request.state.claims.tier  # type: ignore[no-any-return]


def swipe_router(*, swipes: SwipeService, deck: DeckService,
                 quotas: QuotaService | None) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/me/quota", summary="Likes and super likes left today",
                responses=AUTHED)
    async def quota(user: User, request: Request) -> dict[str, int | None]:
        if quotas is None:
            return {"likes_left": None, "superlikes_left": None, "reset_at": None}
        return await quotas.status(user, _tier(request))

    @router.post("/v1/swipes/undo", summary="Take back the caller's latest swipe",
                 responses={**AUTHED, 404: _error(
                     "`not_found`: no swipe within `undo_window_s`, or the latest one made "
                     "a match (a match is not undone: unmatch)")})
    async def undo(user: User, request: Request) -> dict[str, Any]:
        return {"undone": await swipes.undo(user, _tier(request))}

    @router.get("/v1/likes", summary="Who liked the caller and is still waiting, newest "
                "first", responses={**AUTHED, 400: _error("`bad_request`: `cursor` is not "
                                                          "one from this API"), **INVALID})
    async def likes(user: User, limit: Annotated[int, Query(ge=1, le=100)] = 50,
                    cursor: Annotated[str | None, Query(max_length=512)] = None
                    ) -> dict[str, Any]:
        return await swipes.likes(user, limit, cursor)

    @router.post("/v1/deck/filter", summary="Drop swiped, matched and blocked users from "
                 "a batch of candidates", responses={
                     **AUTHED, **WITH_BODY,
                     413: _error(f"`too_large`: more than {MAX_DECK_CANDIDATES} candidates, "
                                 "or a body over `max_body_bytes`")})
    async def deck_filter(body: DeckBody, user: User) -> dict[str, list[str]]:
        return {"candidates": await deck.filter(user, body.candidates)}

    return router
