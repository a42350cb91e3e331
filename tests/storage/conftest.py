"""Fixtures that run every storage test against every `Store` backend.

To add a backend, add its name to `BACKENDS` and a branch to `_new_store`; every contract
test then runs against it unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from storage.base import Store
from storage.sqlite import SqliteStore

BACKENDS = ["sqlite", "cassandra"]

OpenStore = Callable[[], Awaitable[Store]]


def _new_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    """A new, unstarted store over this test's data: the same data on every call (for
    Cassandra: a keyspace of this test's own on the session's real node)."""
    if backend == "sqlite":
        return SqliteStore(tmp_path / "rendezvous.db")
    if backend == "cassandra":
        from storage.cassandra import CassandraStore

        node = request.getfixturevalue("cassandra_node")
        keyspace = "t_" + hashlib.blake2b(request.node.nodeid.encode(),
                                          digest_size=8).hexdigest()
        return CassandraStore([node.contact_point], keyspace=keyspace)
    raise AssertionError(f"unknown backend {backend!r}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_store(backend: str, tmp_path: Path,
                     request: pytest.FixtureRequest) -> AsyncIterator[OpenStore]:
    """Opens a started store over this test's data; each call a new instance (as after a
    restart), every one closed at teardown."""
    opened: list[Store] = []

    async def open_() -> Store:
        store = _new_store(backend, tmp_path, request)
        await store.start()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()
    if backend == "cassandra" and opened:
        await asyncio.to_thread(_drop_keyspace, opened[0])


def _drop_keyspace(store: Any) -> None:
    """Free the test's keyspace: the session's one node has a small heap, and the schema of
    every keyspace a session made (some twenty tables each) stays in it until dropped:
    about forty of them ran it out of memory."""
    from storage.cassandra_schema import connect

    cluster, session = connect(store.settings)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {store.keyspace}", timeout=60)
    finally:
        cluster.shutdown()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()
