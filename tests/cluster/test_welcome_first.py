"""The node-kill drill (docs/cluster.md, "When things fail"): clients of a killed node
reconnect to another at once, their matches' presence flying between them, and each
connection's first frame is its `welcome` (tests/server/test_welcome_first.py pins the cause
deterministically)."""

from __future__ import annotations

import asyncio
import signal

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from client import RendezvousHttp
from protocol.codec import codec_for
from tests.cluster.conftest import StartNode, Users
from tests.node_process import NodeProcess
from tests.redis_servers import RedisServer

USERS = [f"k{i}" for i in range(12)]


async def open_raw(node: NodeProcess, token: str, subprotocol: str) -> ClientConnection:
    return await connect(node.ws_url, subprotocols=[Subprotocol(subprotocol)],
                         compression=None,
                         additional_headers={"Authorization": f"Bearer {token}"})


async def test_clients_reconnecting_after_a_node_kill_get_welcome_first(
        redis_server: RedisServer, start_node: StartNode, users: Users) -> None:
    a = await start_node("--redis-url", redis_server.url)
    b = await start_node("--redis-url", redis_server.url)
    tokens = {u: a.token(u) for u in USERS}
    apis = {u: RendezvousHttp(a.http_url, tokens[u]) for u in USERS}
    users.apis.extend(apis.values())
    for i, user in enumerate(USERS):  # everyone matched with everyone: presence flies
        for peer in USERS[i + 1:]:
            await apis[user].swipe(peer)
            assert (await apis[peer].swipe(user))["match"] is not None
    subprotocols = {u: ("rdv.v1.msgpack", "rdv.v1.json")[i % 2] for i, u in enumerate(USERS)}
    on_b = [await open_raw(b, tokens[u], subprotocols[u]) for u in USERS]
    await b.stop(signal.SIGKILL)
    for ws in on_b:
        ws.transport.abort()
    for _ in range(5):  # the storm, then more rounds of everyone reconnecting at once
        sockets = await asyncio.gather(*(open_raw(a, tokens[u], subprotocols[u])
                                         for u in USERS))
        firsts = []
        for user, ws in zip(USERS, sockets, strict=True):
            firsts.append(codec_for(subprotocols[user]).decode(
                await asyncio.wait_for(ws.recv(), 10))["t"])
        assert firsts == ["welcome"] * len(USERS), firsts
        for ws in sockets:
            ws.transport.abort()  # as phones losing the network: presence churns
