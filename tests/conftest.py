"""Shared fixtures: a real node on free ports over real sockets, and clients for it.

`rdv` is a `Harness` around one started node (SQLite in tmp_path); `node_factory` starts
nodes with config overrides (short timeouts, small queues) for tests that need them.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from client import RendezvousClient, RendezvousHttp, mint_token
from server.backends.redis_state import connect_redis
from server.config import Config, JwtKey
from server.node import Node
from tests.cassandra_node import CassandraNode
from tests.redis_servers import RedisCluster, RedisServer

if TYPE_CHECKING:
    from tests.helpers import Apis

SECRET = "rendezvous-test-secret-0123456789abcdef"
_node_numbers = itertools.count()

NodeFactory = Callable[..., Awaitable[Node]]


def make_config(data_dir: Path, **overrides: Any) -> Config:
    base: dict[str, Any] = {"ws_port": 0, "http_port": 0, "data_dir": data_dir,
                            "jwt_keys": (JwtKey("HS256", SECRET),),
                            "sqlite_synchronous": "NORMAL",
                            # offline at once, as most tests expect; damping has its tests
                            "presence_grace_s": 0.0}
    base.update(overrides)
    return Config(**base)


@pytest.fixture
async def node_factory(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    nodes: list[Node] = []

    async def make(**overrides: Any) -> Node:
        data_dir = overrides.pop("data_dir", tmp_path / f"node{next(_node_numbers)}")
        node = Node(make_config(data_dir, **overrides))
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if node.started:
            await node.stop()


class Harness:
    """One node plus helpers to mint tokens, open clients and make matches."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.clients: list[RendezvousClient] = []
        self.https: dict[tuple[str | None, str | None], RendezvousHttp] = {}

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.node.ws_port}/v1/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.node.http_port}"

    def token(self, user: str, ttl_s: int = 3600, **claims: Any) -> str:
        return mint_token(SECRET, user, ttl_s, **claims)

    async def connect(self, user: str, **options: Any) -> RendezvousClient:
        token = options.pop("token", None) or self.token(user)
        client = await RendezvousClient.connect(self.ws_url, token, **options)
        self.clients.append(client)
        return client

    def http(self, user: str | None, token: str | None = None) -> RendezvousHttp:
        """The user's HTTP client (one per user and token, reused: each costs a connect)."""
        key = (user, token)
        api = self.https.get(key)
        if api is None:
            if token is None and user is not None:
                token = self.token(user)
            api = self.https[key] = RendezvousHttp(self.http_url, token)
        return api

    async def pair(self, a: str, b: str) -> str:
        """Make `a` and `b` like each other; the id of their match."""
        await self.http(a).swipe(b, "like")
        result = await self.http(b).swipe(a, "like")
        assert result["match"] is not None, result
        match_id: str = result["match"]["id"]
        return match_id

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for api in self.https.values():
            await api.client.aclose()


@pytest.fixture
async def node(node_factory: NodeFactory) -> Node:
    return await node_factory()


@pytest.fixture
async def rdv(node: Node) -> AsyncIterator[Harness]:
    harness = Harness(node)
    yield harness
    await harness.close()


@pytest.fixture
async def harness_for() -> AsyncIterator[Callable[[Node], Harness]]:
    """Wrap another node (from `node_factory`) in a Harness closed at teardown."""
    made: list[Harness] = []

    def wrap(node: Node) -> Harness:
        made.append(Harness(node))
        return made[-1]

    yield wrap
    for harness in made:
        await harness.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, real redis-server for one test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster shared by the session: tests use their own keys."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@contextlib.asynccontextmanager
async def redis_client_maker(kind: str, request: pytest.FixtureRequest
                             ) -> AsyncIterator[Callable[[], Any]]:
    """Makes node clients (`connect_redis`) of a fresh standalone Redis (`kind`
    "standalone") or of the session's Redis Cluster ("cluster"); closes them at the end."""
    if kind == "standalone":
        config = Config(redis_url=request.getfixturevalue("redis_server").url)
    elif kind == "cluster":
        config = Config(redis_cluster_nodes=request.getfixturevalue("redis_cluster").seeds)
    else:
        raise AssertionError(f"unknown Redis kind {kind!r}")
    made: list[Any] = []

    def make() -> Any:
        made.append(connect_redis(config))
        return made[-1]

    try:
        yield make
    finally:
        for client in made:
            await client.aclose()


@pytest.fixture(params=["standalone", "cluster"])
async def redis_clients(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], Any]]:
    """Makes Redis clients (one per simulated node) of a fresh standalone Redis, then of the
    session's Redis Cluster: a test using it runs against both."""
    async with redis_client_maker(request.param, request) as make:
        yield make


@pytest.fixture(scope="session")
def cassandra_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraNode]:
    """A real Cassandra node shared by the session: each test uses its own keyspace.

    Starts once (about 10 s; the first run on a machine also fetches about 70 MB of jars from
    Maven Central). A test that stops it must start it again before it returns.
    """
    # 1 GB of heap: the schema of every keyspace a test makes (some thirty tables each) stays
    # in it until dropped, and 512 MB ran out (OutOfMemoryError) over a whole run
    node = CassandraNode(tmp_path_factory.mktemp("cassandra"), heap="1g")
    node.start()
    yield node
    node.kill()  # its data goes with the tmp dir: no need to drain


@pytest.fixture(scope="session")
def cassandra_cql(cassandra_node: CassandraNode) -> Iterator[Any]:
    """A plain blocking driver session on the session's Cassandra node, for looking at
    tables directly (rows as dicts)."""
    from storage.cassandra_schema import ClusterSettings, connect, host_port

    cluster, session = connect(ClusterSettings((host_port(cassandra_node.contact_point,
                                                         9042),)))
    yield session
    cluster.shutdown()


@pytest.fixture
async def http() -> AsyncIterator[Apis]:
    """HTTP API clients per (harness, user) on one shared transport."""
    from tests.helpers import Apis

    apis = Apis()
    yield apis
    await apis.aclose()


@pytest.fixture(params=["rdv.v1.msgpack", "rdv.v1.json"])
def subprotocol(request: pytest.FixtureRequest) -> str:
    """Run a test once per subprotocol."""
    value: str = request.param
    return value
