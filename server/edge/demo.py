"""The browser demo at `/demo` (docs/demo.md): a page where two tabs, as two users, swipe,
match and chat through the TypeScript SDK, so a newcomer can watch the protocol work without
writing code.

Everything the page loads is in `demo_static/` (the SDK bundled for browsers included), and
the node serves it: no CDN. The page needs tokens; `POST /demo/token` mints them, but only
while the node verifies tokens with the data dir's development secret and only for a client
on the loopback interface that came through no proxy. A node with a real secret mints none.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles

from protocol.errors import ErrorCode, ProtocolError
from server.config import Config, dev_secret_in_force
from server.edge.auth import mint

STATIC = Path(__file__).with_name("demo_static")
TOKEN_TTL_S = 3600  # the page's SDK asks for a new one before it expires
# Headers a reverse proxy adds: behind one, the loopback peer is the proxy, not the user.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip", "via")


class DemoTokenBody(BaseModel):
    user: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$",
                               description="the user id (`sub`) to mint a token for")]


def token_refusal(config: Config, secret: str | None, request: Request) -> str | None:
    """Why `request` may not have a demo token, or None if it may."""
    if secret is None:
        return ("this node does not run on its development secret (it has "
                "RENDEZVOUS_JWT_SECRET or public keys): mint tokens with your identity "
                "provider, or `rendezvous token USER` where the secret is")
    peer = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return "demo tokens are only for clients on this machine (loopback)"
    if config.client_ip_header or any(h in request.headers for h in PROXY_HEADERS):
        return "demo tokens are not minted through a proxy"
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is not None and origin != f"{request.url.scheme}://{host}":
        return "demo tokens are only for the demo page itself (another origin asked)"
    return None


def add_demo(app: FastAPI, config: Config, ws_port: Callable[[], int]) -> None:
    """The demo's routes on the HTTP API. `ws_port` is read per request: the gateway may
    have been bound to port 0."""
    secret = dev_secret_in_force(config)
    claims: dict[str, Any] = {}
    if config.jwt_issuer:
        claims["iss"] = config.jwt_issuer
    if config.jwt_audience:
        claims["aud"] = config.jwt_audience

    app.mount("/demo/assets", StaticFiles(directory=str(STATIC)), name="demo-assets")

    @app.get("/demo", include_in_schema=False)
    async def demo_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/demo/config", include_in_schema=False)
    async def demo_config(request: Request) -> dict[str, Any]:
        return {"ws_port": ws_port(), "ws_path": "/v1/ws",
                "dev_tokens": token_refusal(config, secret, request) is None}

    @app.post("/demo/token", include_in_schema=False)
    async def demo_token(body: DemoTokenBody, request: Request) -> dict[str, Any]:
        refusal = token_refusal(config, secret, request)
        if refusal is not None or secret is None:
            raise ProtocolError(ErrorCode.FORBIDDEN, refusal or "no development secret")
        now = int(time.time())
        token = mint(secret, body.user, TOKEN_TTL_S, now=now, **claims)
        return {"user": body.user, "token": token, "exp": now + TOKEN_TTL_S}
