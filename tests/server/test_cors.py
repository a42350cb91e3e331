"""CORS on the HTTP API (docs/operations.md, "Browsers and CORS") against a real node: only
the configured origins get CORS headers; by default nobody does."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from client import mint_token
from server.config import ConfigError
from server.config_load import load
from tests.conftest import SECRET, NodeFactory

APP = "https://app.example.com"
OTHER = "https://evil.example.net"
ENV = {"RENDEZVOUS_JWT_SECRET": "a-long-enough-secret-for-hs256-0123456789"}


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def preflight(origin: str, method: str = "PUT") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type"}


async def test_an_allowed_origin_gets_cors_headers_and_its_preflight(
        node_factory: NodeFactory) -> None:
    node = await node_factory(cors_origins=(APP, "http://localhost:5173"))
    auth = {"Authorization": f"Bearer {mint_token(SECRET, 'alice')}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.http_port}") as http:
        got = await http.get("/v1/me/settings", headers={**auth, "Origin": APP})
        assert got.status_code == 200
        assert got.headers["access-control-allow-origin"] == APP
        assert "x-request-id" in got.headers["access-control-expose-headers"].lower()

        pre = await http.options("/v1/me/settings", headers=preflight(APP))
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == APP
        methods = {m.strip() for m in pre.headers["access-control-allow-methods"].split(",")}
        assert {"GET", "POST", "PUT", "DELETE"} <= methods
        allowed = pre.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed

        # the preflight needs no token, and the real request after it works
        put = await http.put("/v1/me/settings", json={"show_online": False},
                             headers={**auth, "Origin": APP})
        assert put.status_code == 200 and put.json()["show_online"] is False
        assert put.headers["access-control-allow-origin"] == APP

        # an error answer carries the header too, or the page could not read the error
        unauth = await http.get("/v1/matches", headers={"Origin": APP})
        assert unauth.status_code == 401
        assert unauth.headers["access-control-allow-origin"] == APP

        # another origin gets nothing: not on a GET, not on a preflight
        other = await http.get("/v1/me/settings", headers={**auth, "Origin": OTHER})
        assert other.status_code == 200 and cors_headers(other) == {}
        other_pre = await http.options("/v1/me/settings", headers=preflight(OTHER))
        assert other_pre.status_code != 200 and cors_headers(other_pre) == {}


async def test_no_cors_headers_by_default(node_factory: NodeFactory) -> None:
    node = await node_factory()
    auth = {"Authorization": f"Bearer {mint_token(SECRET, 'alice')}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.http_port}") as http:
        got = await http.get("/v1/me/settings", headers={**auth, "Origin": APP})
        assert got.status_code == 200 and cors_headers(got) == {}
        pre = await http.options("/v1/me/settings", headers=preflight(APP))
        assert pre.status_code != 200 and cors_headers(pre) == {}


async def test_a_star_allows_any_origin(node_factory: NodeFactory) -> None:
    node = await node_factory(cors_origins=("*",))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.http_port}") as http:
        got = await http.get("/healthz", headers={"Origin": OTHER})
        assert got.headers["access-control-allow-origin"] == "*"
        pre = await http.options("/v1/swipes", headers=preflight(OTHER, "POST"))
        assert pre.status_code == 200


def test_origins_load_from_the_file_the_environment_and_a_flag(tmp_path: Path) -> None:
    file = tmp_path / "rdv.toml"
    file.write_text(f'cors_origins = ["{APP}", "http://localhost:5173"]\n')
    config, _ = load(file, {}, ENV)
    assert config.cors_origins == (APP, "http://localhost:5173")
    config, _ = load(file, {}, {**ENV, "RENDEZVOUS_CORS_ORIGINS": f"{OTHER}, {APP}"})
    assert config.cors_origins == (OTHER, APP)
    config, _ = load(file, {"cors_origins": ("*",)}, ENV)
    assert config.cors_origins == ("*",)
    assert load(None, {}, ENV)[0].cors_origins == ()


@pytest.mark.parametrize("origin", [
    "app.example.com", "https://app.example.com/", "https://app.example.com/path",
    "https://App.example.com", "https://app.example.com:99999", "*.example.com",
    "https://",
])
def test_a_bad_origin_is_named(tmp_path: Path, origin: str) -> None:
    file = tmp_path / "rdv.toml"
    file.write_text(f'cors_origins = ["{origin}"]\n')
    with pytest.raises(ConfigError, match=r"^cors_origins: .*\(from file"):
        load(file, {}, ENV)
