"""The TypeScript SDK (clients/js) against a real node: build it, run its Node tests.

The Node tests (`node --test`, clients/js/test/) need what only the harness has: a node on
free ports, a match made over the HTTP API and tokens signed with the node's secret. This
test provides them in environment variables, plus a small control endpoint through which
the Node tests ask for server-side events they cannot cause as a client: a socket closed by
the server (4009, as a slow reader gets) and a node restart (drain, `reconnect`, 1012, a new
node on the same ports and data). It fails, never skips, when Node.js or npm is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from client import mint_token
from server.node import Node
from tests.conftest import SECRET, Harness, NodeFactory

JS_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"
MIN_NODE_MAJOR = 20
SETUP_HINT = ("Install Node.js >= 20 with npm, then run `make js-sdk` (npm ci and the build; "
              "`make test` does it first).")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the JS SDK tests need it. {SETUP_HINT}",
                    pytrace=False)
    return path


def _check_toolchain() -> tuple[str, str]:
    node, npm = _tool("node"), _tool("npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < MIN_NODE_MAJOR:
        pytest.fail(f"Node.js {version} is too old for the JS SDK tests. {SETUP_HINT}",
                    pytrace=False)
    if not (JS_DIR / "node_modules" / ".package-lock.json").exists():
        pytest.fail(f"{JS_DIR / 'node_modules'} is missing. {SETUP_HINT}", pytrace=False)
    return node, npm


class Control:
    """`POST /close?user=U&code=C` closes U's sockets from the server side;
    `POST /restart` drains the node and starts a new one on the same ports and data."""

    def __init__(self, node: Node, restart: Callable[[], Any]) -> None:
        self.node = node
        self._restart = restart
        self.server: asyncio.Server | None = None
        self.calls: list[str] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # headers: the Node tests send no body
            _method, target, _version = request_line.split(" ", 2)
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            self.calls.append(target)
            status, body = 200, await self._route(url.path, query)
        except Exception as exc:  # reported to the Node test that asked, which then fails
            status, body = 500, {"error": repr(exc)}
        data = json.dumps(body).encode()
        writer.write(f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode() + data)
        await writer.drain()
        writer.close()

    async def _route(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        if path == "/close":
            code = int(query.get("code", "4009"))
            sessions = [s for s in self.node.hub.sessions() if s.user == query["user"]]
            for session in sessions:
                session.close_now(code, "closed by the test harness")
            return {"closed": len(sessions)}
        if path == "/restart":
            self.node = await self._restart()
            return {"restarted": True}
        raise ValueError(f"unknown control path {path}")


@pytest.mark.timeout(600)
async def test_js_sdk_against_a_real_node(
    node_factory: NodeFactory, harness_for: Callable[[Node], Harness]
) -> None:
    _node, npm = _check_toolchain()
    # a quick `reconnect.after_ms` so the restart test does not wait up to 5 s
    options: dict[str, Any] = {"reconnect_jitter_ms": (300, 600), "drain_timeout_s": 5.0}
    node = await node_factory(**options)
    rdv = harness_for(node)
    match_ab = await rdv.pair("alice", "bob")
    match_ac = await rdv.pair("alice", "carol")

    ports = {"ws_port": node.ws_port, "http_port": node.http_port}  # unreadable once stopped

    async def restart() -> Node:
        old = control.node
        await old.stop()
        return await node_factory(data_dir=old.config.data_dir, **ports, **options)

    control = Control(node, restart)
    control_url = await control.start()
    alice_exp_later = 7200
    env = {
        **os.environ,
        "NPM_CONFIG_UPDATE_NOTIFIER": "false",
        "NPM_CONFIG_FUND": "false",
        "RDV_WS_URL": rdv.ws_url,
        "RDV_HTTP_URL": rdv.http_url,
        "RDV_CONTROL_URL": control_url,
        "RDV_MATCH_AB": match_ab,
        "RDV_MATCH_AC": match_ac,
        "RDV_TOKEN_ALICE": rdv.token("alice"),
        "RDV_TOKEN_ALICE_LATER": rdv.token("alice", alice_exp_later),
        "RDV_TOKEN_BOB": rdv.token("bob"),
        "RDV_TOKEN_CAROL": rdv.token("carol"),
        # the right shape, the wrong key: the server must refuse it (4001)
        "RDV_TOKEN_FORGED": mint_token(SECRET[::-1], "alice"),
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            npm, "test", cwd=JS_DIR, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=540)
    finally:
        await control.stop()
    output = out.decode(errors="replace")
    print(output)  # shown by pytest -s, and on failure
    assert proc.returncode == 0, f"the JS SDK tests failed (npm test exit {proc.returncode}):\n" \
                                 f"{output[-30000:]}"
    # nothing skipped or left as todo: a test that did not run must not look like a pass
    for counter in ("fail", "skipped", "todo", "cancelled"):
        assert re.search(rf"^(?:\S+ )?{counter} 0$", output, re.M), f"{counter}: not 0"
    passed = re.search(r"^(?:\S+ )?pass (\d+)$", output, re.M)
    assert passed and int(passed.group(1)) > 0, "no Node test passed"
    # the Node tests did use the server-side closes (a test calling nothing would pass too)
    assert any(c.startswith("/close") for c in control.calls), control.calls
    assert "/restart" in control.calls, control.calls
