"""The /demo routes (docs/demo.md) on real nodes, without a browser (tests/browser/ drives the
page itself): local assets only, dev tokens only on the development secret, only for
loopback clients that came through no proxy, off in a cluster unless enabled."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.requests import Request

from client import RendezvousClient
from server.config import Config, ConfigError, JwtKey, dev_secret_in_force
from server.config_load import load
from server.edge.demo import token_refusal
from server.node import Node
from tests.conftest import SECRET, NodeFactory
from tests.redis_servers import RedisServer

TYPES = {".js": "text/javascript", ".css": "text/css"}


async def dev_node(node_factory: NodeFactory, tmp_path: Path, **overrides: Any) -> Node:
    """A node on its data dir's development secret, as `rendezvous serve` runs by default."""
    data_dir = tmp_path / "dev"
    data_dir.mkdir()
    (data_dir / "jwt-secret").write_text(SECRET + "\n")
    return await node_factory(data_dir=data_dir, **overrides)


def http(node: Node) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.http_port}")


async def test_the_page_loads_only_the_nodes_own_assets(node_factory: NodeFactory,
                                                       tmp_path: Path) -> None:
    node = await dev_node(node_factory, tmp_path)
    async with http(node) as api:
        page = await api.get("/demo")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        refs = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
        assert {"/demo/assets/app.js", "/demo/assets/style.css"} <= set(refs), refs
        for ref in refs:
            assert ref.startswith("/demo/assets/") or ref.startswith("data:"), ref
        app = await api.get("/demo/assets/app.js")
        imports = re.findall(r"""^import .* from ["']([^"']+)["'];""", app.text, re.M)
        assert imports == ["./rendezvous-sdk.js"], imports
        for name in ("app.js", "style.css", "rendezvous-sdk.js"):
            asset = await api.get(f"/demo/assets/{name}")
            assert asset.status_code == 200, name
            assert asset.headers["content-type"].startswith(TYPES[name[name.rindex("."):]])
            assert not re.search(r"""(?:from|import\(|url\()\s*["']?https?://""", asset.text), \
                f"{name} loads something from elsewhere"
        config = (await api.get("/demo/config")).json()
        assert config == {"ws_port": node.ws_port, "ws_path": "/v1/ws", "dev_tokens": True}


async def test_a_dev_token_opens_a_socket_by_auth_frame(node_factory: NodeFactory,
                                                        tmp_path: Path) -> None:
    node = await dev_node(node_factory, tmp_path)
    async with http(node) as api:
        answer = await api.post("/demo/token", json={"user": "alice"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" == body["user"] and claims["exp"] == body["exp"]
    assert 3500 < body["exp"] - time.time() <= 3600
    client = await RendezvousClient.connect(f"ws://127.0.0.1:{node.ws_port}/v1/ws",
                                            body["token"], auth="frame",
                                            subprotocol="rdv.v1.json")
    try:
        assert client.welcome["user"] == "alice"
    finally:
        await client.close()


async def test_no_tokens_without_the_development_secret(node_factory: NodeFactory,
                                                        tmp_path: Path) -> None:
    # a node with a configured secret (RENDEZVOUS_JWT_SECRET): the data dir has none ...
    plain = await node_factory()
    # ... or an old dev secret that is not the one in force
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    (other_dir / "jwt-secret").write_text("0" * 64 + "\n")
    other = await node_factory(data_dir=other_dir)
    for node in (plain, other):
        async with http(node) as api:
            assert (await api.get("/demo")).status_code == 200  # the page: paste a token
            assert (await api.get("/demo/config")).json()["dev_tokens"] is False
            answer = await api.post("/demo/token", json={"user": "alice"})
        assert answer.status_code == 403
        error = answer.json()["error"]
        assert error["code"] == "forbidden" and "development secret" in error["msg"]
        assert "token" not in answer.json()


@pytest.mark.parametrize("headers, why", [
    ({"X-Forwarded-For": "198.51.100.7"}, "loopback"),  # uvicorn takes the proxy's word
    ({"Forwarded": "for=198.51.100.7"}, "proxy"),
    ({"Via": "1.1 proxy"}, "proxy"),
    ({"Origin": "https://evil.example"}, "another origin"),
])
async def test_no_tokens_through_a_proxy_or_for_another_site(
        node_factory: NodeFactory, tmp_path: Path, headers: dict[str, str], why: str) -> None:
    node = await dev_node(node_factory, tmp_path)
    async with http(node) as api:
        answer = await api.post("/demo/token", json={"user": "alice"}, headers=headers)
        assert answer.status_code == 403 and why in answer.json()["error"]["msg"], answer.text
        own = f"http://127.0.0.1:{node.http_port}"
        same = await api.post("/demo/token", json={"user": "alice"}, headers={"Origin": own})
        assert same.status_code == 200, same.text


async def test_bad_user_ids_are_refused(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = await dev_node(node_factory, tmp_path)
    async with http(node) as api:
        for body in ({"user": ""}, {"user": "x" * 65}, {"user": "a b"}, {}, {"user": 7}):
            answer = await api.post("/demo/token", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["error"]["code"] == "bad_request"


def request_from(peer: str, headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/demo/token", "headers": raw,
                    "client": (peer, 40000), "scheme": "http", "server": ("node", 8081),
                    "query_string": b""})


def test_only_loopback_peers_get_tokens(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path, jwt_keys=(JwtKey("HS256", SECRET),))
    for peer in ("127.0.0.1", "127.3.4.5", "::1"):
        assert token_refusal(config, SECRET, request_from(peer)) is None, peer
    for peer in ("203.0.113.7", "10.1.2.3", "2001:db8::1", "", "not-an-ip"):
        refusal = token_refusal(config, SECRET, request_from(peer))
        assert refusal is not None and "loopback" in refusal, peer
    behind = Config(data_dir=tmp_path, jwt_keys=(JwtKey("HS256", SECRET),),
                    client_ip_header="X-Forwarded-For")
    assert "proxy" in (token_refusal(behind, SECRET, request_from("127.0.0.1")) or "")


def test_the_dev_secret_is_in_force_only_when_the_node_verifies_with_it(tmp_path: Path
                                                                         ) -> None:
    (tmp_path / "jwt-secret").write_text(SECRET + "\n")
    assert dev_secret_in_force(Config(data_dir=tmp_path,
                                      jwt_keys=(JwtKey("HS256", SECRET),))) == SECRET
    assert dev_secret_in_force(Config(data_dir=tmp_path,
                                      jwt_keys=(JwtKey("HS256", "1" * 40),))) is None
    assert dev_secret_in_force(Config(data_dir=tmp_path / "none",
                                      jwt_keys=(JwtKey("HS256", SECRET),))) is None
    assert dev_secret_in_force(Config(data_dir=tmp_path,  # any secret compares, not only ASCII
                                      jwt_keys=(JwtKey("HS256", "é" * 40),))) is None


async def test_off_when_disabled(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = await dev_node(node_factory, tmp_path, demo_enabled="false")
    async with http(node) as api:
        for method, path in (("GET", "/demo"), ("GET", "/demo/config"),
                             ("GET", "/demo/assets/app.js"), ("POST", "/demo/token")):
            answer = await api.request(method, path, json={"user": "alice"})
            assert answer.status_code == 404, path


async def test_off_by_default_in_a_cluster_unless_enabled(
        node_factory: NodeFactory, redis_server: RedisServer) -> None:
    auto = await node_factory(redis_url=redis_server.url)
    enabled = await node_factory(redis_url=redis_server.url, demo_enabled="true")
    async with http(auto) as api:
        assert (await api.get("/demo")).status_code == 404
        assert (await api.post("/demo/token", json={"user": "a"})).status_code == 404
    async with http(enabled) as api:
        assert (await api.get("/demo")).status_code == 200
        # the cluster's secret is no dev secret: the page is there, tokens are not
        assert (await api.post("/demo/token", json={"user": "a"})).status_code == 403


def test_demo_enabled_setting(tmp_path: Path) -> None:
    file = tmp_path / "r.toml"
    for text, expected in (("demo_enabled = true\n", "true"), ("demo_enabled = false\n", "false"),
                           ('demo_enabled = "auto"\n', "auto"), ("", "auto")):
        file.write_text(f'data_dir = "{tmp_path}"\n{text}')
        config, _ = load(file, {}, {"RENDEZVOUS_JWT_SECRET": SECRET})
        assert config.demo_enabled == expected, text
    config, _ = load(None, {"data_dir": tmp_path}, {"RENDEZVOUS_JWT_SECRET": SECRET,
                                                    "RENDEZVOUS_DEMO_ENABLED": " TRUE"})
    assert config.demo_enabled == "true" and config.demo
    file.write_text(f'data_dir = "{tmp_path}"\ndemo_enabled = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"demo_enabled must be auto, true or false.*file"):
        load(file, {}, {"RENDEZVOUS_JWT_SECRET": SECRET})
    keys = (JwtKey("HS256", SECRET),)
    assert Config(jwt_keys=keys).demo
    assert not Config(jwt_keys=keys, redis_url="redis://r:6379/0").demo
    assert Config(jwt_keys=keys, redis_url="redis://r:6379/0", demo_enabled="true").demo
    assert not Config(jwt_keys=keys, demo_enabled="false").demo
