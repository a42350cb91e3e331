"""The HTTP API of docs/protocol.md ("HTTP API"), served by FastAPI in the node's event loop.

Routes are thin: parse, authenticate, call the match or chat service (the same methods the
WebSocket gateway calls, so every rule is in the service), shape the JSON. Every
error leaves as `{"error": {"code", "msg"}}` with the status of its code. Message ids are
strings in JSON, as on the JSON WebSocket subprotocol.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.codec import ids_as_strings
from protocol.errors import HTTP_STATUS, ErrorCode, ProtocolError
from server.config import Config
from server.edge.auth import Authenticator, AuthError, Claims, unrevoked
from server.edge.connection_guard import ConnectionGuard
from server.edge.demo import add_demo
from server.edge.export_stream import ExportResponse, export_response
from server.logs import RequestIds
from server.metrics import Metrics
from server.services.accounts import AccountService
from server.services.caller import http_caller
from server.services.chat import ChatService
from server.services.chat_controls import ChatControls
from server.services.erasure import ErasureService
from server.services.export import ExportService
from server.services.matching import MatchService
from storage import StoreUnavailable

log = logging.getLogger("rendezvous.http")
UserId = Annotated[str, Field(min_length=1, max_length=64)]
STATUS_CODES = {400: ErrorCode.BAD_REQUEST, 401: ErrorCode.UNAUTHORIZED,
                403: ErrorCode.FORBIDDEN, 404: ErrorCode.NOT_FOUND,
                405: ErrorCode.BAD_REQUEST, 413: ErrorCode.TOO_LARGE,
                429: ErrorCode.RATE_LIMITED, 503: ErrorCode.UNAVAILABLE}


class ErrorDetail(BaseModel):
    code: str = Field(description="a code of docs/protocol.md, \"Errors\"",
                      examples=["unauthorized"])
    msg: str = Field(description="for people, not for parsing",
                     examples=["Authorization: Bearer <JWT> required"])
    reset_at: int | None = Field(None, description="`quota_exceeded` only: unix ms when "
                                 "the quota refills")


class ErrorBody(BaseModel):
    """What every error of the API answers (`error_response`)."""

    error: ErrorDetail


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description, **extra}


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                               "schema": {"type": "integer"}}}
# The error answers of the OpenAPI description, by where they can happen.
AUTHED: dict[int | str, dict[str, Any]] = {
    401: _error("`unauthorized`: no bearer token, or one that is invalid, expired or "
                "revoked"),
    429: _error("`rate_limited`: too many failed authentications from this address (on "
                "`POST /v1/swipes` also: too many swipes); retry after `Retry-After`",
                headers=RETRY_AFTER),
    503: _error("`unavailable`: storage is unavailable; retry after `Retry-After`",
                headers=RETRY_AFTER),
}
QUOTA_OR_RATE = _error(
    "`quota_exceeded`: no likes (or super likes) left today; `error.reset_at` (unix ms) is "
    "when they refill, `Retry-After` the seconds until then. Or `rate_limited`: too many "
    "swipes, or failed authentications from this address; retry after `Retry-After`",
    headers=RETRY_AFTER)
INVALID: dict[int | str, dict[str, Any]] = {
    422: _error("`bad_request`: a field, path or query parameter is invalid"),
}
WITH_BODY: dict[int | str, dict[str, Any]] = {
    400: _error("`bad_request`: the body is not valid JSON, or the request is refused"),
    413: _error("`too_large`: the body is over `max_body_bytes`"),
    **INVALID,
}
IN_MATCH: dict[int | str, dict[str, Any]] = {
    403: _error("`forbidden`: the caller is not a member of a match with this id"),
    **INVALID,
}
DESCRIPTION = """Swipes, matches, blocks, reports, devices and settings of Rendezvous.

The chat itself (messages, typing, receipts, presence) runs over the WebSocket gateway
(`/v1/ws` on port 8080): its protocol is `docs/protocol.md` in the Rendezvous repository,
which also specifies this API (section "HTTP API"), the error codes ("Errors") and the
limits ("Rate limits", "Limits").

Every `/v1` route needs `Authorization: Bearer <JWT>`: press **Authorize** and paste a
token (without the `Bearer ` prefix). Errors answer `{"error": {"code", "msg"}}`."""
DOCS_ASSETS = "/docs/assets"


def swagger_ui_assets() -> str:
    """Swagger UI 5's files as the swagger-ui-py package ships them (5 reads OpenAPI 3.1,
    which FastAPI writes; the 4.x of swagger-ui-bundle showed "Unable to render this
    definition"). Found without importing the package, whose handlers need jinja2."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing (a dependency: pip install .)")
    return os.path.join(spec.submodule_search_locations[0], "static")


class SwipeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    target: UserId
    action: Literal["like", "pass", "superlike"]


class BlockBody(BaseModel):
    user: UserId


class DeviceBody(BaseModel):
    platform: Literal["apns", "fcm"]
    app: Annotated[str, Field(max_length=200)] | None = None
    locale: Annotated[str, Field(max_length=35)] | None = None


class PushKindsBody(BaseModel):
    """Which kinds of push the user takes; a kind left out keeps its switch."""

    model_config = ConfigDict(extra="forbid")
    message: StrictBool | None = None
    match: StrictBool | None = None
    like: StrictBool | None = None


class SettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    show_online: StrictBool | None = None
    read_receipts: StrictBool | None = None
    push_previews: StrictBool | None = None
    push_kinds: PushKindsBody | None = None

    def changes(self) -> dict[str, bool]:
        """The stored settings to change (`push_kinds` is stored flat: `push_<kind>`)."""
        flat = self.model_dump(exclude_none=True, exclude={"push_kinds"})
        if self.push_kinds is not None:
            flat.update({f"push_{kind}": on for kind, on in
                         self.push_kinds.model_dump(exclude_none=True).items()})
        return flat


class MuteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    until: Annotated[int, Field(gt=0, description="unix ms; leave out to mute with no end")
                     ] | None = None


class MuteAnswer(BaseModel):
    muted_until: int | None = Field(description="unix ms, or null: muted until unmuted")


def error_response(code: ErrorCode, msg: str, status: int | None = None,
                   retry_after_s: float | None = None, **extra: Any) -> JSONResponse:
    """`extra` fields go into `error` beside code and msg (`reset_at` of quota_exceeded)."""
    headers = {}
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(retry_after_s + 0.499)))
    return JSONResponse({"error": {"code": str(code), "msg": msg, **extra}},
                        status_code=status or HTTP_STATUS[code], headers=headers)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await error_response(ErrorCode.TOO_LARGE, f"bodies are limited to {self.limit} "
                                 "bytes")(scope, receive, send)
            return
        # A streamed (chunked) body is cut off here: an exception raised from `receive` would
        # reach FastAPI wrapped in an ExceptionGroup (the "http" middleware reads through a
        # task group) and turn into a 400. So answer 413 ourselves, tell the app the client
        # left, and drop whatever it answers to that.
        seen = 0
        refused = False
        started = False

        async def limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit and not started:
                refused = True
                await error_response(ErrorCode.TOO_LARGE, f"bodies are limited to "
                                     f"{self.limit} bytes")(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if not refused:
                started = True
                await send(message)

        await self.app(scope, limited, guarded)


class RequestCounter:
    """`http_requests{route, status}` per request, as plain ASGI: FastAPI's "http"
    middleware (Starlette's `BaseHTTPMiddleware`) ran every request through a task group and
    memory streams, and was the largest single cost of a swipe: without it a node served
    twice the swipes a second on half the CPU."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app raises before it answers

        async def seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, seen)
        finally:
            route = scope.get("route")  # set by the router once it matched
            self.metrics.http_requests.labels(getattr(route, "path", "unmatched"),
                                              str(status)).inc()


CORS_METHODS = ("GET", "POST", "PUT", "DELETE")  # every method a route of the API takes
CORS_HEADERS = ("Authorization", "Content-Type", "X-Request-Id")
CORS_EXPOSED = ("Retry-After", "X-Request-Id")
CORS_MAX_AGE_S = 600  # how long a browser may keep a preflight's answer


class Cors:
    """CORS for the browser origins in `cors_origins` (docs/operations.md, "Browsers and
    CORS"), by Starlette's `CORSMiddleware`. A request from any other origin, or without an
    `Origin`, goes past it to the API untouched: no CORS header at all, so a browser on
    another site can neither read an answer nor get a preflight through."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.any = "*" in origins
        self.origins = frozenset(origins)
        self.cors = CORSMiddleware(app, allow_origins=list(origins),
                                   allow_methods=CORS_METHODS, allow_headers=CORS_HEADERS,
                                   expose_headers=CORS_EXPOSED, max_age=CORS_MAX_AGE_S)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = Headers(scope=scope).get("origin")
            if origin is not None and (self.any or origin in self.origins):
                await self.cors(scope, receive, send)
                return
        await self.app(scope, receive, send)


# Declares the bearer scheme in the OpenAPI (so /docs has an Authorize button and sends the
# header); it never answers by itself: `current_user` reads and checks the header.
bearer = HTTPBearer(auto_error=False, bearerFormat="JWT", scheme_name="bearerAuth",
                    description="A JWT whose `sub` is the user (docs/protocol.md, "
                    "\"Authentication\")")


async def current_user(request: Request,
                       _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                       ) -> str:
    """The `sub` of the request's bearer token, or 401 (`_` only puts `bearer` in the
    OpenAPI of every route that depends on this). A revoked token is refused too (its
    not-before from the node's cache; 503 when that and the store are both unknown)."""
    return (await _authenticated(request, erasing=False)).user


async def erasing_user(request: Request,
                       _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                       ) -> Claims:
    """`current_user` for `DELETE /v1/me`: a token revoked by an erasure of its user is
    accepted there (only there), so that the app can repeat the call that was cut short
    and learn the erasure finished (docs/privacy.md, "How an erasure finishes")."""
    return await _authenticated(request, erasing=True)


async def _authenticated(request: Request, *, erasing: bool) -> Claims:
    auth: Authenticator = request.app.state.auth
    metrics: Metrics = request.app.state.metrics
    guard: ConnectionGuard | None = request.app.state.guard
    ip = ""
    if guard is not None:  # the failed-auth throttle (docs/operations.md)
        ip = guard.client_ip(request.client.host if request.client else None,
                             request.headers.get)
        wait = guard.refused(ip)
        if wait:
            raise ProtocolError(ErrorCode.RATE_LIMITED, "too many failed authentications "
                                "from this address", retry_ms=max(1, int(wait * 1000)))
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer ":
        metrics.auth_failures.labels("missing").inc()
        if guard is not None:
            await guard.auth_failed(ip)
        raise ProtocolError(ErrorCode.UNAUTHORIZED, "Authorization: Bearer <JWT> required")
    accounts: AccountService | None = request.app.state.accounts
    try:
        claims = auth.verify(header[7:].strip(), now=time.time())
        if accounts is not None:
            try:
                claims = await unrevoked(claims, accounts.not_before)
            except AuthError as exc:
                erasure: ErasureService | None = request.app.state.erasure
                if not (erasing and exc.reason == "revoked" and erasure is not None
                        and await erasure.erased_at(claims.user) is not None):
                    raise
        request.state.claims = claims  # for routes that need more than the user (tier)
        return claims
    except AuthError as exc:
        metrics.auth_failures.labels(exc.reason).inc()
        if guard is not None:
            await guard.auth_failed(ip)
        raise ProtocolError(ErrorCode.UNAUTHORIZED, exc.msg) from None


User = Annotated[str, Depends(current_user)]
ErasingUser = Annotated[Claims, Depends(erasing_user)]
MatchId = Annotated[str, Path(min_length=1, max_length=64)]
Token = Annotated[str, Path(min_length=1, max_length=4096)]


def create_app(*, auth: Authenticator, matches: MatchService, chat: ChatService,
               controls: ChatControls, exports: ExportService, metrics: Metrics,
               max_body_bytes: int,
               ready: Callable[[], Awaitable[dict[str, bool]]],
               guard: ConnectionGuard | None = None,
               cors_origins: tuple[str, ...] = (),
               routers: Sequence[APIRouter] = (),
               accounts: AccountService | None = None,
               erasure: ErasureService | None = None,
               demo: tuple[Config, Callable[[], int]] | None = None) -> ASGIApp:
    """The API as one ASGI app; `demo` (the config and the gateway's port) adds /demo;
    `routers` add the routes of other modules (server/edge/http_swipes.py)."""
    app = FastAPI(title="Rendezvous HTTP API", version="1", description=DESCRIPTION,
                  docs_url=None, redoc_url=None)
    app.state.auth = auth
    app.state.metrics = metrics
    app.state.guard = guard
    app.state.erasure = erasure
    app.state.accounts = accounts

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> JSONResponse:
        if exc.reset_ms is not None:  # quota_exceeded: when it refills, and a Retry-After
            wait_s = max(0.0, exc.reset_ms / 1000 - time.time())
            return error_response(exc.code, exc.msg, retry_after_s=wait_s,
                                  reset_at=exc.reset_ms)
        return error_response(exc.code, exc.msg,
                              retry_after_s=exc.retry_ms / 1000 if exc.retry_ms else None)

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return error_response(ErrorCode.UNAVAILABLE, "storage is unavailable; retry",
                              retry_after_s=1)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        if first.get("type") == "json_invalid":
            return error_response(ErrorCode.BAD_REQUEST, "the body is not valid JSON", 400)
        return error_response(ErrorCode.BAD_REQUEST, f"{where}: {first.get('msg', 'invalid')}",
                              422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("HTTP request failed", extra={"path": request.url.path})
        return error_response(ErrorCode.INTERNAL, "internal error", 500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
        return error_response(code, str(exc.detail), exc.status_code)

    # Swagger UI from the swagger-ui-py package: /docs works without internet.
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_assets()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")

    if demo is not None:
        add_demo(app, *demo)

    @app.post("/v1/swipes", summary="Like, pass or super-like a user",
              responses={**AUTHED, **WITH_BODY, 429: QUOTA_OR_RATE})
    async def swipe(body: SwipeBody, user: User, request: Request) -> dict[str, Any]:
        return {"match": await matches.swipe(user, body.target, body.action,
                                             request.state.claims.tier)}

    @app.get("/v1/matches", summary="The caller's open matches, newest first",
             responses={**AUTHED, 400: _error("`bad_request`: `cursor` is not one from this "
                                             "API"), **INVALID})
    async def list_matches(user: User, limit: Annotated[int, Query(ge=1, le=100)] = 50,
                           cursor: Annotated[str | None, Query(max_length=512)] = None
                           ) -> Any:
        return ids_as_strings(await matches.list_matches(user, limit, cursor))

    @app.delete("/v1/matches/{match_id}", status_code=204, summary="Unmatch",
                responses={**AUTHED, **IN_MATCH})
    async def unmatch(match_id: MatchId, user: User) -> Response:
        await matches.unmatch(user, match_id)
        return Response(status_code=204)

    @app.get("/v1/matches/{match_id}/messages", summary="Message history, newest first",
             responses={**AUTHED, **IN_MATCH})
    async def history(match_id: MatchId, user: User,
                      before: Annotated[str | None, Query(pattern=r"^\d{1,19}$")] = None,
                      limit: Annotated[int, Query(ge=1, le=100)] = 50) -> Any:
        caller, answer = http_caller(user)
        await chat.history(caller, None, match_id, int(before) if before else None, limit)
        page = answer.get()
        return ids_as_strings({"msgs": page["msgs"], "more": page["more"]})

    @app.post("/v1/blocks", status_code=204, summary="Block a user (also unmatches)",
              responses={**AUTHED, **WITH_BODY})
    async def block(body: BlockBody, user: User) -> Response:
        await matches.block(user, body.user)
        return Response(status_code=204)

    @app.put("/v1/devices/{token}", status_code=204, summary="Register a push token",
             responses={**AUTHED, **WITH_BODY})
    async def put_device(token: Token, body: DeviceBody, user: User) -> Response:
        await matches.put_device(user, token, body.platform, body.app, body.locale)
        return Response(status_code=204)

    @app.delete("/v1/devices/{token}", status_code=204, summary="Forget a push token",
                responses={**AUTHED, **INVALID})
    async def delete_device(token: Token, user: User) -> Response:
        await matches.delete_device(user, token)
        return Response(status_code=204)

    @app.put("/v1/matches/{match_id}/mute", summary="Mute a match's pushes (live frames "
             "still arrive)", responses={**AUTHED, **IN_MATCH, **WITH_BODY})
    async def mute(match_id: MatchId, user: User, body: MuteBody | None = None) -> MuteAnswer:
        until = body.until if body is not None else None
        return MuteAnswer(muted_until=await controls.mute(user, match_id, until))

    @app.delete("/v1/matches/{match_id}/mute", status_code=204, summary="Unmute a match",
                responses={**AUTHED, **IN_MATCH})
    async def unmute(match_id: MatchId, user: User) -> Response:
        await controls.unmute(user, match_id)
        return Response(status_code=204)

    @app.get("/v1/me/settings", summary="The caller's privacy and push settings",
             responses=AUTHED)
    async def get_settings(user: User) -> dict[str, Any]:
        return (await matches.get_settings(user)).to_wire()

    @app.put("/v1/me/settings", summary="Change privacy and push settings",
             responses={**AUTHED, **WITH_BODY})
    async def put_settings(body: SettingsBody, user: User) -> dict[str, Any]:
        return (await matches.put_settings(user, body.changes())).to_wire()

    @app.get("/v1/me/export", summary="Everything the server holds about the caller, as one "
             "streamed JSON document (docs/privacy.md, \"Export\")",
             response_class=ExportResponse, status_code=200,
             responses={**AUTHED, 200: {"description": "the document, streamed; a body that "
                                        "ends early (unparseable) means the export failed "
                                        "mid-way: retry", "content": {"application/json": {}}},
                        429: _error("`rate_limited`: an export of this account is already "
                                    "running (one at a time), or the node runs too many; "
                                    "retry after `Retry-After`", headers=RETRY_AFTER)})
    async def export(user: User) -> ExportResponse:
        return await export_response(exports, user)

    if accounts is not None:
        @app.post("/v1/me/logout-all", status_code=204, summary="Log out everywhere",
                  description="Tokens issued at or before now are refused from now on (401, "
                  "4001), and every open socket of the caller, on every node, closes with "
                  "4001. Mint the next token in a later second.", responses=AUTHED)
        async def logout_all(user: User) -> Response:
            await accounts.logout_all(user)
            return Response(status_code=204)

    if erasure is not None:
        @app.delete("/v1/me", status_code=202, summary="Erase the account",
                    description="Everything of the caller goes (docs/privacy.md, \"Erasure\"); "
                    "their messages stay as tombstones for their matches. Tokens issued at or "
                    "before `erased_at` are refused afterwards, here excepted: calling again "
                    "with one answers the same `erased_at`, and finishes an erasure a 503 "
                    "cut short. A token issued later erases the account as used since.",
                    responses={**AUTHED, 202: {"description": "`{\"erased_at\"}`: unix ms of "
                                               "the (first) erasure"}})
        async def erase_me(claims: ErasingUser) -> JSONResponse:
            erased_at = await erasure.erase(claims.user, claims.iat)
            return JSONResponse({"erased_at": erased_at}, status_code=202)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: every backing service reachable",
             responses={503: {"description": "a backing service is unreachable: the same "
                              "body, with `ready` false"}})
    async def readyz() -> JSONResponse:
        checks = await ready()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    for router in routers:
        app.include_router(router)

    api: ASGIApp = BodyLimit(RequestCounter(app, metrics), max_body_bytes)
    if cors_origins:  # outside the body limit: its 413 carries the CORS headers too
        api = Cors(api, cors_origins)
    return RequestIds(api)


class EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our loop: the node, not uvicorn, owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(app: ASGIApp, config: Config) -> EmbeddedUvicorn:
    """The HTTP API's server on the node's loop (`Node.start` hands it the socket)."""
    return EmbeddedUvicorn(uvicorn.Config(
        app, host=config.host, port=config.http_port, log_config=None, access_log=False,
        lifespan="off", server_header=False, timeout_graceful_shutdown=5))
