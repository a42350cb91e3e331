"""Fixtures that run every storage test against every `Store` backend.

To add a backend, add its name to `BACKENDS` and a branch to `_new_store`; every contract
test then runs against it unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from storage.base import Store
from storage.sqlite import SqliteStore

BACKENDS = ["sqlite", "cassandra"]

OpenStore = Callable[[], Awaitable[Store]]


def _keyspace(request: pytest.FixtureRequest) -> str:
    return "t_" + hashlib.blake2b(request.node.nodeid.encode(), digest_size=8).hexdigest()


def _new_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    """A new, unstarted store over this test's data: the same data on every call (for
    Cassandra: a keyspace of this test's own on the session's real node)."""
    if backend == "sqlite":
        return SqliteStore(tmp_path / "rendezvous.db")
    if backend == "cassandra":
        from storage.cassandra import CassandraStore

        node = request.getfixturevalue("cassandra_node")
        return CassandraStore([node.contact_point], keyspace=_keyspace(request))
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
    # Each test's keyspace is dropped after it: a keyspace of the current schema is some twenty
    # tables, and the session's node (512 MB of heap) ran out of memory holding those of
    # some seventy tests.
    cql = request.getfixturevalue("cassandra_cql") if backend == "cassandra" else None

    async def open_() -> Store:
        store = _new_store(backend, tmp_path, request)
        await store.start()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()
    if cql is not None and opened:
        try:
            await asyncio.to_thread(cql.execute,
                                    f"DROP KEYSPACE IF EXISTS {_keyspace(request)}", timeout=60)
        except Exception as exc:  # only memory is at stake: the test itself has passed
            warnings.warn(f"keyspace {_keyspace(request)} not dropped: {exc!r}", stacklevel=1)


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()
