"""Structured logs of a real node process: JSON lines with node and request ids, and never a
message body, a JWT or a push token, even at debug level.

The node runs as `rendezvous serve --log-level DEBUG --log-format json`; the test drives a
full flow (a refused token, good tokens on both subprotocols, matches, messages with a unique
marker body, a device registration with a unique push token, a push to an offline user,
errors over WebSocket and HTTP, a drain on SIGTERM) and then reads everything it wrote.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import ConnectionRejected, RendezvousClient, ServerError
from server.logs import JsonFormatter, ScrubFilter, TextFormatter
from tests.node_process import NodeProcess

REQUIRED = ("ts", "level", "logger", "msg", "node")


async def collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
    """Read stderr while the node runs, so a full pipe never blocks it."""
    while line := await stream.readline():
        lines.append(line.decode())


async def run_flow(node: NodeProcess, marker: str, push_token: str) -> dict[str, Any]:
    """Everything an app and an attacker do; returns the secrets and ids to look for."""
    ann_token, bob_token = node.token("ann"), node.token("bob")
    bad_token = ann_token[:-6] + "AAAAAA"
    seen: dict[str, Any] = {"tokens": [ann_token, bob_token, bad_token]}
    with pytest.raises(ConnectionRejected):
        await RendezvousClient.connect(node.ws_url, bad_token)
    with pytest.raises(ConnectionRejected):
        await RendezvousClient.connect(node.ws_url, bad_token, auth="frame")
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        ann_h = {"Authorization": f"Bearer {ann_token}"}
        bob_h = {"Authorization": f"Bearer {bob_token}", "X-Request-Id": "ops-test-req-1"}
        response = await http.post("/v1/swipes", json={"target": "bob", "action": "like"},
                                   headers=ann_h)
        assert response.status_code == 200
        assert response.headers["x-request-id"]  # generated when the client sends none
        seen["generated_request_id"] = response.headers["x-request-id"]
        response = await http.post("/v1/swipes", json={"target": "ann", "action": "like"},
                                   headers=bob_h)
        assert response.headers["x-request-id"] == "ops-test-req-1"  # honoured and echoed
        match_id = response.json()["match"]["id"]
        response = await http.put(f"/v1/devices/{push_token}", json={"platform": "fcm"},
                                  headers=bob_h)
        assert response.status_code == 204
        response = await http.get("/v1/matches", headers={"Authorization": f"Bearer {bad_token}"})
        assert response.status_code == 401
        response = await http.get("/v1/matches/nope/messages", headers=ann_h)
        assert response.status_code == 403
        response = await http.post("/v1/swipes", content=f'{{"target": "{marker}"',
                                   headers={**ann_h, "content-type": "application/json"})
        assert response.status_code in (400, 422)
        ann = await RendezvousClient.connect(node.ws_url, ann_token)
        # bob is offline: the first message goes to the push dispatcher with his token
        await ann.send(match_id, f"{marker} first")
        bob = await RendezvousClient.connect(node.ws_url, bob_token, subprotocol="rdv.v1.json",
                                             auth="frame")
        await ann.typing(match_id)
        ack = await ann.send(match_id, f"{marker} second")
        event = await bob.next_event("msg")
        assert marker in event["body"]
        await bob.read(match_id, ack["id"], ack=True)
        await bob.sync()
        with pytest.raises(ServerError):
            await bob.send("m-not-a-match", f"{marker} forbidden")
        with pytest.raises(ServerError):
            await bob.refresh(bad_token)
        await ann.send_raw(b"\xc1 not msgpack")
        assert (await ann.next_event("error"))["code"] == "bad_frame"
        await bob.close()
        await node.stop()  # drain: ann is told to reconnect
        await ann.wait_closed()
        await ann.close()
    return seen


async def test_logs_are_json_with_ids_and_no_secrets(tmp_path: Path) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    push_token = f"fcm-{uuid.uuid4().hex}:{uuid.uuid4().hex}"
    node = NodeProcess(tmp_path / "data", "--log-level", "DEBUG", "--log-format", "json",
                       "--node-name", "ops-node")
    await node.start()
    assert node.proc is not None and node.proc.stderr is not None
    lines: list[str] = []
    reader = asyncio.create_task(collect(node.proc.stderr, lines))
    try:
        seen = await run_flow(node, marker, push_token)
    finally:
        if node.running:
            await node.stop()
        await asyncio.wait_for(reader, 10)

    output = "".join(lines) + "\n".join(node.banner + node.output)
    assert marker not in output
    assert push_token not in output and push_token.split(":")[1] not in output
    for token in seen["tokens"]:
        assert token not in output
        assert token.split(".")[2] not in output  # not even the signature
    assert "eyJ" not in output  # nothing that looks like a JWT header at all

    records = []
    for line in lines:
        record = json.loads(line)  # every stderr line is one JSON object
        assert isinstance(record, dict)
        for key in REQUIRED:
            assert key in record, (key, line)
        assert record["node"] == "ops-node"
        records.append(record)
    assert {"debug", "info"} <= {r["level"] for r in records}

    http = [r for r in records if r["logger"] == "rendezvous.http" and r["msg"] == "http request"]
    assert len(http) >= 6 and all(r.get("request_id") for r in http)
    assert {r["request_id"] for r in http} >= {"ops-test-req-1", seen["generated_request_id"]}
    assert {r["route"] for r in http} >= {"/v1/swipes", "/v1/devices/{token}"}
    ws = [r for r in records if r["logger"] == "rendezvous.gateway"]
    assert any(r["msg"] == "connection authenticated" and r.get("conn_id") for r in ws)
    refused = [r for r in ws if r["msg"] == "refused a connection"]
    assert len(refused) == 2 and all(r.get("conn_id") and r["reason"] for r in refused)
    assert any(r["msg"] == "drained" for r in records)
    assert all(not r.get("request_id") for r in ws)  # ids do not leak across contexts


def record(msg: str, *args: Any, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("rendezvous.test", logging.INFO, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_the_scrub_filter_redacts_by_key_and_by_shape(formatter: logging.Formatter) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl"
    apns = "ab" * 32
    rec = record("auth header %s for %s", f"Bearer {jwt}", "/v1/devices/secret-device",
                 exc=True, body="hello there", push_token="tok-1", text="words",
                 Authorization="Bearer x", entry={"token": "t", "nested": [apns]},
                 user_count=3)
    assert ScrubFilter("n1").filter(rec)
    out = formatter.format(rec)
    for secret in (jwt, "hello there", "tok-1", "words", apns, "secret-device",
                   "c2lnbmF0dXJl"):
        assert secret not in out, (secret, out)
    assert "user_count" in out and "3" in out  # harmless extras pass through
    if isinstance(formatter, JsonFormatter):
        data = json.loads(out)
        assert data["body"] == "[redacted]" and data["node"] == "n1"
        assert data["entry"]["token"] == "[redacted]" and "exc" in data
