"""Node processes joined through a real Redis: the cluster mode of docs/cluster.md."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from client import RendezvousClient, RendezvousHttp
from server.node import Node
from tests.conftest import Harness, NodeFactory
from tests.node_process import SECRET, NodeProcess, env_without_secret
from tests.redis_servers import RedisServer

PRESENCE_TTL_S = 2.0
StartNode = Callable[..., Awaitable[NodeProcess]]


def cluster_env(**extra: str) -> dict[str, str]:
    return {**env_without_secret(), "RENDEZVOUS_JWT_SECRET": SECRET,
            "RENDEZVOUS_PRESENCE_TTL_S": str(PRESENCE_TTL_S),
            "RENDEZVOUS_RECONNECT_JITTER_MS": "50,300", "RENDEZVOUS_PRESENCE_GRACE_S": "0",
            **extra}


TwoNodes = Callable[..., Awaitable[tuple[Harness, Harness]]]


@pytest.fixture
def two_nodes(node_factory: NodeFactory, harness_for: Callable[[Node], Harness],
              redis_server: RedisServer, tmp_path: Path) -> TwoNodes:
    """In-process nodes A and B over `redis_server`, sharing one data dir (one SQLite file,
    as cluster nodes share Cassandra); their clients and the nodes close at teardown."""
    async def make(**overrides: object) -> tuple[Harness, Harness]:
        a, b = [harness_for(await node_factory(redis_url=redis_server.url, node_name=name,
                                               data_dir=tmp_path / "shared", **overrides))
                for name in ("A", "B")]
        return a, b
    return make


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[StartNode]:
    """Start node processes sharing one data dir (one SQLite file) and the given Redis."""
    nodes: list[NodeProcess] = []

    async def start(*args: str, **env: str) -> NodeProcess:
        node = NodeProcess(tmp_path / "data", *args, env=cluster_env(**env))
        await node.start()
        nodes.append(node)
        return node

    yield start
    await asyncio.gather(*(n.stop(signal.SIGKILL) for n in nodes if n.running))


class Users:
    """Clients for users spread over nodes; closed at teardown."""

    def __init__(self) -> None:
        self.clients: list[RendezvousClient] = []
        self.apis: list[RendezvousHttp] = []

    async def connect(self, node: NodeProcess, user: str, **options: object
                      ) -> RendezvousClient:
        client = await RendezvousClient.connect(node.ws_url, node.token(user), **options)
        self.clients.append(client)
        return client

    def http(self, node: NodeProcess, user: str) -> RendezvousHttp:
        api = RendezvousHttp(node.http_url, node.token(user))
        self.apis.append(api)
        return api

    async def pair(self, node_a: NodeProcess, a: str, node_b: NodeProcess, b: str) -> str:
        await self.http(node_a, a).swipe(b)
        result = await self.http(node_b, b).swipe(a)
        match_id: str = result["match"]["id"]
        return match_id

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for api in self.apis:
            await api.client.aclose()


@pytest.fixture
async def users() -> AsyncIterator[Users]:
    pool = Users()
    yield pool
    await pool.close()
