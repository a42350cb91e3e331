"""`GET /v1/me/export` on a real embedded node (SQLite): the document holds exactly the
caller's data, one export at a time per user, and a store failure is a 503 before the first
byte and a cut-off body after it (docs/privacy.md, "Export")."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import server.services.export as export_module
from protocol.errors import ProtocolError
from server.metrics import Metrics
from server.node import Node
from server.services.export import ExportContext, ExportService, Paged
from storage import StoreUnavailable
from storage.sqlite import SqliteStore
from tests.conftest import Harness, make_config
from tests.export_scenario import Tombstone, check_export, make_scenario
from tests.export_seed import seed_match
from tests.helpers import wait_until


def sqlite_tombstone(db: Path) -> Tombstone:
    async def tombstone(match_id: str, message_id: int) -> None:
        def clear() -> None:
            with sqlite3.connect(db, timeout=10) as conn:
                done = conn.execute("UPDATE messages SET body = NULL, media = NULL"
                                    " WHERE match_id = ? AND id = ?", (match_id, message_id))
                assert done.rowcount == 1
        await asyncio.to_thread(clear)
    return tombstone


def counter(node: Node, outcome: str) -> float:
    value = node.metrics.registry.get_sample_value("rendezvous_exports_total",
                                                   {"outcome": outcome})
    return value or 0.0


@pytest.mark.parametrize("page", [2, 500])
async def test_the_export_holds_exactly_the_users_data(
        rdv: Harness, page: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With pages of 2, every paged section spans pages (and ends on a full one)."""
    monkeypatch.setattr(export_module, "PAGE", page)
    s = await make_scenario(rdv.http, rdv.connect,
                            sqlite_tombstone(rdv.node.config.data_dir / "rendezvous.db"))
    response = await rdv.http("alice").raw("GET", "/v1/me/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers.get("transfer-encoding") == "chunked"  # streamed, not sized
    await check_export(response.content, s, rdv.http("alice"))
    # bob's export holds his side of the same match, and his own match with erin
    bob = await rdv.http("bob").export()
    assert [m["peer"] for m in bob["matches"]] == ["erin", "alice"]
    assert {x["m"] for x in bob["messages"]} == {s.ab, s.be}
    assert counter(rdv.node, "done") == 2


async def test_a_user_with_nothing_gets_an_empty_document(rdv: Harness) -> None:
    doc = await rdv.http("nobody").export()
    settings = (await rdv.http("nobody").raw("GET", "/v1/me/settings")).json()
    assert doc.pop("exported_at") > 0
    assert doc == {"user": "nobody", "settings": settings, "devices": [], "swipes": [],
                   "matches": [], "mutes": [], "blocks": [], "messages": []}


async def test_without_a_token_401(rdv: Harness) -> None:
    response = await rdv.http(None).raw("GET", "/v1/me/export")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_one_export_at_a_time_per_user(rdv: Harness) -> None:
    """While alice's export streams (she reads nothing: far more than the socket buffers
    hold is left), a second one of hers is refused 429 with Retry-After; bob's runs. Once
    she hangs up, the node notices, stops reading for her and she may export again."""
    await seed_match(rdv.node.store, "alice", "bob", 20_000, body_chars=1000)
    async with httpx.AsyncClient(base_url=rdv.http_url, timeout=30) as first:
        headers = {"Authorization": f"Bearer {rdv.token('alice')}"}
        async with first.stream("GET", "/v1/me/export", headers=headers) as running:
            assert running.status_code == 200
            again = await rdv.http("alice").raw("GET", "/v1/me/export")
            assert again.status_code == 429
            assert again.json()["error"]["code"] == "rate_limited"
            assert int(again.headers["retry-after"]) >= 1
            other = await rdv.http("carl").raw("GET", "/v1/me/export")
            assert other.status_code == 200 and other.json()["user"] == "carl"
    await wait_until(lambda: counter(rdv.node, "left") == 1, timeout=10)
    doc = await rdv.http("alice").export()
    assert len(doc["messages"]) == 20_000
    assert rdv.node.metrics.registry.get_sample_value(
        "rendezvous_rate_limited_total", {"kind": "export"}) == 1


class FailingStore:
    """A real SqliteStore whose chosen reads fail on demand (a store outage at a moment
    of the test's choosing)."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.failing: set[str] = set()
        self.after_calls = 0  # messages_after calls to let through before failing

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def matches_ever(self, user: str) -> Any:
        if "matches_ever" in self.failing:
            raise StoreUnavailable("injected")
        return await self.inner.matches_ever(user)

    async def messages_after(self, *args: Any, **kwargs: Any) -> Any:
        if "messages_after" in self.failing:
            if self.after_calls <= 0:
                raise StoreUnavailable("injected")
            self.after_calls -= 1
        return await self.inner.messages_after(*args, **kwargs)


@pytest.fixture
async def failing(tmp_path: Path) -> AsyncIterator[tuple[Harness, FailingStore]]:
    store = FailingStore(SqliteStore(tmp_path / "data" / "rendezvous.db"))
    node = Node(make_config(tmp_path / "data"), store=store)
    await node.start()
    harness = Harness(node)
    yield harness, store
    await harness.close()
    await node.stop()


async def test_a_store_failure_before_the_first_byte_is_a_503(
        failing: tuple[Harness, FailingStore]) -> None:
    rdv, store = failing
    await rdv.pair("alice", "bob")
    store.failing = {"matches_ever"}
    response = await rdv.http("alice").raw("GET", "/v1/me/export")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert "retry-after" in response.headers
    store.failing = set()
    assert len((await rdv.http("alice").export())["matches"]) == 1  # the slot was freed


async def test_a_store_failure_mid_stream_cuts_the_body_off(
        failing: tuple[Harness, FailingStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """The status is sent: the body stops without the document's closing and without the
    last chunk, so the client sees a broken transfer and JSON that does not parse."""
    monkeypatch.setattr(export_module, "PAGE", 100)
    rdv, store = failing
    await seed_match(rdv.node.store, "alice", "bob", 1000)
    store.failing, store.after_calls = {"messages_after"}, 3
    received = b""
    async with httpx.AsyncClient(base_url=rdv.http_url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {rdv.token('alice')}"}
        async with client.stream("GET", "/v1/me/export", headers=headers) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                async for chunk in response.aiter_bytes():
                    received += chunk
    assert received.startswith(b'{"user":"alice"')
    assert received.count(b'"body"') == 300  # the three pages read before the failure
    with pytest.raises(json.JSONDecodeError):
        json.loads(received)
    assert counter(rdv.node, "cut") == 1
    store.failing = set()
    assert len((await rdv.http("alice").export())["messages"]) == 1000


async def test_a_client_that_stops_reading_holds_the_store_reads_back(rdv: Harness) -> None:
    """Backpressure: while the client reads nothing, the node reads a few pages ahead (what
    the socket buffers take) and then waits; once the client reads on, the rest follows."""
    await seed_match(rdv.node.store, "alice", "bob", 20_000, body_chars=1000)
    pages = 20_000 // export_module.PAGE + 1  # the last read finds nothing more

    def reads() -> float:
        return rdv.node.metrics.registry.get_sample_value(
            "rendezvous_store_op_seconds_count", {"op": "messages_after"}) or 0.0

    start = reads()
    async with httpx.AsyncClient(base_url=rdv.http_url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {rdv.token('alice')}"}
        async with client.stream("GET", "/v1/me/export", headers=headers) as response:
            assert response.status_code == 200
            seen = -1.0
            while reads() != seen:  # until the node stops reading ahead
                seen = reads()
                await asyncio.sleep(0.3)
            held = seen - start
            assert 0 < held < pages / 2, (held, pages)
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert len(json.loads(body)["messages"]) == 20_000
    assert reads() - start == pages
    print(f"\nheld back at {held:.0f} of {pages} page reads while the client read nothing")


async def test_the_node_runs_a_bounded_number_of_exports(tmp_path: Path) -> None:
    """Past `max_running` exports on the node, another user's is refused too; an empty
    page from a section adds nothing to the document."""
    async def pages(ctx: ExportContext) -> AsyncIterator[list[Any]]:
        yield []
        yield [1, 2]
        yield []
        yield [3]

    store = SqliteStore(tmp_path / "rendezvous.db")
    await store.start()
    try:
        metrics = Metrics()
        exports = ExportService(store, metrics, max_running=1,
                                sections=(*export_module.SECTIONS, Paged("more", pages)))
        ann = exports.stream("ann")
        first = await anext(ann)
        with pytest.raises(ProtocolError) as refused:
            await anext(exports.stream("bob"))
        assert refused.value.code == "rate_limited" and refused.value.retry_ms
        doc = json.loads(first + b"".join([chunk async for chunk in ann]))
        assert doc["more"] == [1, 2, 3] and doc["messages"] == []
        bob = exports.stream("bob")  # ann's is done: bob's may run
        assert json.loads(b"".join([chunk async for chunk in bob]))["user"] == "bob"
        assert metrics.registry.get_sample_value("rendezvous_exports_total",
                                                 {"outcome": "done"}) == 2
    finally:
        await store.close()
