"""The report routes of the HTTP API: `POST /v1/reports` and the moderators' endpoints
`GET /v1/admin/reports` and `GET /v1/admin/reports/{id}` (docs/protocol.md, "Reports").

Thin, as the rest of the API: every rule (reasons, limits, who is a moderator, the block,
the evidence) is in `server.services.reports`. The router is included by `create_app`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from protocol.codec import ids_as_strings
from server.edge.auth import Claims
from server.edge.http_api import AUTHED, INVALID, WITH_BODY, User, _error
from server.services.reports import NOTE_MAX_CHARS, ReportService
from storage.base import REPORT_REASONS


class ReportBody(BaseModel):
    """`user` and `reason` are checked by the service (400 `bad_request`), `note` too (413
    `too_large` past NOTE_MAX_CHARS), so that each refusal has the code docs/protocol.md
    gives it; only the types are checked here (422)."""

    model_config = ConfigDict(extra="ignore")
    user: StrictStr = Field(description="the reported user's id (1..64 characters)")
    reason: StrictStr = Field(json_schema_extra={"enum": list(REPORT_REASONS)})
    note: StrictStr | None = Field(None, description=f"at most {NOTE_MAX_CHARS} characters")


class ReportCreated(BaseModel):
    id: str


ADMIN: dict[int | str, dict[str, Any]] = {
    403: _error("`forbidden`: the caller is not a moderator (`admin_subjects`, or a token "
                "with `\"scope\": \"admin\"`)"),
}
ReportId = Annotated[str, Path(min_length=1, max_length=64)]


def report_router(reports: ReportService) -> APIRouter:
    router = APIRouter()

    def moderator(request: Request, user: str) -> None:
        """403 unless the caller is a moderator (`current_user` left the token's claims
        on the request)."""
        claims: Claims = request.state.claims
        reports.check_admin(user, claims.scopes)

    @router.post("/v1/reports", status_code=201, response_model=ReportCreated,
                 summary="Report a user (also blocks them)",
                 responses={**AUTHED, **WITH_BODY,
                            413: _error(f"`too_large`: `note` over {NOTE_MAX_CHARS} "
                                        "characters, or the body over `max_body_bytes`")})
    async def file_report(body: ReportBody, user: User) -> JSONResponse:
        report_id = await reports.report(user, body.user, body.reason, body.note)
        return JSONResponse({"id": report_id}, status_code=201)

    @router.get("/v1/admin/reports", summary="Reports, newest first (moderators)",
                responses={**AUTHED, **ADMIN, 400: _error("`bad_request`: `cursor` is not "
                                                          "one from this API"), **INVALID})
    async def list_reports(request: Request, user: User,
                           limit: Annotated[int, Query(ge=1, le=100)] = 50,
                           cursor: Annotated[str | None, Query(max_length=512)] = None
                           ) -> Any:
        moderator(request, user)
        return ids_as_strings(await reports.list(limit, cursor))

    @router.get("/v1/admin/reports/{report_id}", summary="One report (moderators)",
                responses={**AUTHED, **ADMIN, 404: _error("`not_found`: no report with "
                                                          "this id (or it expired)"),
                           **INVALID})
    async def get_report(report_id: ReportId, request: Request, user: User) -> Any:
        moderator(request, user)
        return ids_as_strings(await reports.get(report_id))

    return router
