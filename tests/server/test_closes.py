"""Closes the server starts are counted, the library's own (1009, 1007, 1002) included, and a
close a slow reader never takes does not keep its connection alive (docs/protocol.md, "Close
codes"; docs/architecture.md, "Fan-out and backpressure"), over real sockets.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from protocol.codec import codec_for
from server.edge.gateway import LIBRARY_CLOSES
from server.node import Node
from tests.conftest import Harness, NodeFactory
from tests.helpers import wait_until
from tests.server.test_bad_input import is_slow_closed, open_stalled


async def metric(rdv: Harness, sample: str) -> float:
    """One sample of the node's /metrics, read over HTTP (0 when not exported yet)."""
    text = (await rdv.http(None).raw("GET", "/metrics")).text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def closes(code: int) -> str:
    return f'rendezvous_closes_total{{code="{code}"}}'


async def open_raw(rdv: Harness, subprotocol: str, user: str | None = "alice"
                   ) -> ClientConnection:
    headers = {"Authorization": f"Bearer {rdv.token(user)}"} if user else None
    ws = await connect(rdv.ws_url, subprotocols=[Subprotocol(subprotocol)], compression=None,
                       additional_headers=headers, max_size=None)
    if user:
        assert codec_for(subprotocol).decode(await ws.recv())["t"] == "welcome"
    return ws


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code


def oversized(rdv: Harness, subprotocol: str) -> bytes | str:
    size = rdv.node.config.limits.max_frame_bytes + 1
    return b"\x80" * size if subprotocol == "rdv.v1.msgpack" else "x" * size


async def send_invalid_utf8_text(ws: ClientConnection) -> None:
    await ws.send(b'{"t":"ping","x":"\xff\xfe"}', text=True)


async def send_reserved_opcode(ws: ClientConnection) -> None:
    ws.transport.write(b"\x83\x80\x00\x00\x00\x00")  # FIN, opcode 3 (reserved), masked, empty


CLOSERS: dict[str, tuple[int, Callable[..., object]]] = {
    "too-big": (1009, lambda ws, rdv, sp: ws.send(oversized(rdv, sp))),
    "invalid-utf8": (1007, lambda ws, rdv, sp: send_invalid_utf8_text(ws)),
    "reserved-opcode": (1002, lambda ws, rdv, sp: send_reserved_opcode(ws)),
}


def test_every_library_close_code_has_a_case() -> None:
    assert {code for code, _ in CLOSERS.values()} == LIBRARY_CLOSES - {1011}


@pytest.mark.parametrize("authenticated", [True, False], ids=["after-auth", "before-auth"])
@pytest.mark.parametrize("kind", sorted(CLOSERS))
async def test_library_closes_are_counted(rdv: Harness, subprotocol: str, kind: str,
                                          authenticated: bool) -> None:
    code, act = CLOSERS[kind]
    before = await metric(rdv, closes(code))
    ws = await open_raw(rdv, subprotocol, "alice" if authenticated else None)
    result = act(ws, rdv, subprotocol)
    if asyncio.iscoroutine(result):
        await result
    assert await closed_with(ws) == code

    async def counted_once() -> bool:
        return await metric(rdv, closes(code)) == before + 1
    await wait_until(counted_once, timeout=3)
    # a close the client starts is not one of ours
    polite = await open_raw(rdv, subprotocol)
    await polite.close(1000)
    await asyncio.sleep(0.2)
    assert await metric(rdv, closes(code)) == before + 1
    assert await metric(rdv, closes(1000)) == 0


# -- a slow reader's close --------------------------------------------------------------------

async def flood_until_closed(rdv: Harness, node: Node, m: str) -> None:
    bob = await rdv.connect("bob")
    deadline = time.monotonic() + 15
    while not is_slow_closed(node, "alice"):
        assert time.monotonic() < deadline, "alice was never closed"
        await asyncio.gather(*(bob.send(m, "z" * 4000) for _ in range(4)))


async def test_a_slow_reader_that_never_takes_its_close_is_dropped(
        node_factory: NodeFactory, harness_for: Callable[[Node], Harness]) -> None:
    """4009 goes into a full pipe; after close_timeout_s the node drops the connection:
    its session leaves the hub and the transport's buffer is freed, though the client still
    reads nothing. When it reads at last it gets what the kernel held, then 1006."""
    close_timeout = 0.5
    node = await node_factory(send_queue_frames=8, inflight_per_connection=4,
                              sends_per_s=1e6, send_burst=10**6, frames_per_s=1e6,
                              frame_burst=10**6, close_timeout_s=close_timeout)
    rdv = harness_for(node)
    m = await rdv.pair("alice", "bob")
    stalled = await open_stalled(rdv, "alice")
    try:
        session = next(s for s in node.hub.sessions() if s.user == "alice")
        transport = session.sink.transport  # type: ignore[attr-defined]
        before = await metric(rdv, "rendezvous_close_timeouts_total")
        await flood_until_closed(rdv, node, m)
        closing_at = time.monotonic()
        assert transport.get_write_buffer_size() > 0  # the close frame sits behind the rest
        await wait_until(lambda: transport.is_closing() and not node.hub.has_user("alice"),
                         timeout=close_timeout + 3)
        took = time.monotonic() - closing_at
        assert took < close_timeout + 2, took
        assert transport.get_write_buffer_size() == 0
        assert node.services.gateway.server is not None
        assert all(c.transport is not transport for c in node.services.gateway.server.connections)
        assert await metric(rdv, "rendezvous_close_timeouts_total") == before + 1
        assert await metric(rdv, closes(4009)) >= 1
        received = 0
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(stalled.recv(), 10)
                received += 1
        assert stalled.close_code == 1006  # what app developers are told to expect
    finally:
        stalled.transport.abort()


async def test_a_reader_that_takes_its_close_in_time_gets_4009(
        node_factory: NodeFactory, harness_for: Callable[[Node], Harness]) -> None:
    node = await node_factory(send_queue_frames=8, inflight_per_connection=4,
                              sends_per_s=1e6, send_burst=10**6, frames_per_s=1e6,
                              frame_burst=10**6, close_timeout_s=20)
    rdv = harness_for(node)
    m = await rdv.pair("alice", "bob")
    stalled = await open_stalled(rdv, "alice")
    try:
        await flood_until_closed(rdv, node, m)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(stalled.recv(), 10)
        assert stalled.close_code == 4009
        await wait_until(lambda: not node.hub.has_user("alice"), timeout=5)
    finally:
        stalled.transport.abort()
