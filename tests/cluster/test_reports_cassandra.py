"""Reports on a cluster: two in-process nodes over a real redis-server, storing in a real
Cassandra node (a keyspace per test). A report filed on one node blocks across the cluster
and is read by moderators on the other; its evidence is a copy in the report tables, so
truncating `messages` leaves it whole; paging walks the by-day listing; the purge drops
expired reports from Cassandra's tables; the metric and the hook move on the filing node.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

import pytest

from client import HttpError, ServerError
from storage.base import REPORT_REASONS
from tests.cassandra_node import CassandraNode
from tests.conftest import Harness, NodeFactory
from tests.helpers import wait_until
from tests.redis_servers import RedisServer
from tests.server import report_hooks

MOD = "mod"


@pytest.fixture
def keyspace() -> str:
    return f"rep_{secrets.token_hex(4)}"


@pytest.fixture
def cql(cassandra_cql: Any) -> Any:
    return cassandra_cql


@pytest.fixture
async def nodes(node_factory: NodeFactory, harness_for: Any, redis_server: RedisServer,
                cassandra_node: CassandraNode, keyspace: str) -> tuple[Harness, Harness]:
    """Nodes A and B of one cluster: Redis for fan-out, Cassandra for the store. A calls
    the recording hook."""
    made = []
    for name, hook in (("A", "tests.server.report_hooks:record"), ("B", None)):
        made.append(harness_for(await node_factory(
            redis_url=redis_server.url, node_name=name, admin_subjects=(MOD,),
            cassandra_contact_points=(cassandra_node.contact_point,),
            cassandra_keyspace=keyspace, report_hook=hook)))
    return made[0], made[1]


def reports_metric(text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^rendezvous_reports_total\{reason="(\w+)"\} (\S+)$', text, re.MULTILINE)}


async def look(cql: Any, query: str) -> list[Any]:
    return await asyncio.to_thread(lambda: list(cql.execute(query)))


async def test_a_report_on_one_node_blocks_and_is_read_on_the_other(
        nodes: tuple[Harness, Harness], cql: Any, keyspace: str) -> None:
    a, b = nodes
    m = await a.pair("ann", "bob")
    ann, bob = await a.connect("ann"), await b.connect("bob", subprotocol="rdv.v1.json")
    acks = [await (ann if i % 2 == 0 else bob).send(m, f"line {i}") for i in range(4)]
    history = (await b.http("bob").raw("GET", f"/v1/matches/{m}/messages")).json()["msgs"]
    report_hooks.CALLS.clear()
    report_hooks.STORE[:] = [a.node.store]
    try:
        report_id = await a.http("ann").report("bob", "harassment", note="on node A")
        await wait_until(lambda: report_hooks.CALLS, timeout=5)
        [(seen, stored)] = report_hooks.CALLS
        assert stored and seen.id == report_id and len(seen.evidence) == 4
    finally:
        report_hooks.STORE.clear()
        report_hooks.CALLS.clear()
    # the block, across nodes: bob hears unmatch on B and nothing after it (what came
    # before is the chat itself); sends are refused
    before: list[dict[str, Any]] = []
    while not before or before[-1]["t"] != "unmatch":
        before.append(await bob.next_event(timeout=5))
    assert before[-1] == {"t": "unmatch", "m": m}
    assert {f["t"] for f in before[:-1]} <= {"msg", "presence", "read", "delivered"}
    assert await bob.no_event(within=0.5)
    with pytest.raises(ServerError) as refused:
        await bob.send(m, "still there?")
    assert refused.value.code == "forbidden"
    # moderators on B, by subject and by scope, see the evidence in the JSON of history
    for moderator in (b.http(MOD), b.http("zoe", b.token("zoe", scope="admin"))):
        raw = (await moderator.raw("GET", f"/v1/admin/reports/{report_id}")).json()
        assert raw["evidence"] == history
        assert (raw["reporter"], raw["reported"], raw["reason"], raw["note"]) == (
            "ann", "bob", "harassment", "on node A")
        listed = (await moderator.raw("GET", "/v1/admin/reports")).json()
        assert [r["id"] for r in listed["reports"]] == [report_id]
    for user in ("bob", "ann", "eve"):
        with pytest.raises(HttpError) as forbidden:
            await b.http(user).admin_reports()
        assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    # unmatch first, report after: the closed match's messages are the evidence
    m2 = await a.pair("cat", "dan")
    cat = await a.connect("cat")
    kept = [await cat.send(m2, f"cat {i}") for i in range(2)]
    await b.http("dan").unmatch(m2)
    second = await b.http("cat").report("dan", "scam")
    # the messages table emptied (as erasure would rewrite it): the copies stay
    await look(cql, f"TRUNCATE {keyspace}.messages")
    assert await look(cql, f"SELECT id FROM {keyspace}.messages") == []
    first = await a.http(MOD).admin_report(report_id)
    assert [e["id"] for e in first["evidence"]] == [x["id"] for x in reversed(acks)]
    assert [e["body"] for e in first["evidence"]] == [f"line {i}" for i in (3, 2, 1, 0)]
    assert [e["id"] for e in (await a.http(MOD).admin_report(second))["evidence"]] == [
        x["id"] for x in reversed(kept)]


async def test_evidence_outlives_the_erasure_of_either_account_on_cassandra(
        nodes: tuple[Harness, Harness], cql: Any, keyspace: str) -> None:
    a, b = nodes
    m = await a.pair("ann", "bob")
    ann, bob = await a.connect("ann"), await b.connect("bob")
    for i in range(4):
        await (ann if i % 2 == 0 else bob).send(m, f"line {i}")
    report_id = await a.http("ann").report("bob", "scam")
    before = (await b.http(MOD).admin_report(report_id))["evidence"]
    assert [e["body"] for e in before] == [f"line {i}" for i in (3, 2, 1, 0)]
    assert (await b.http("bob").raw("DELETE", "/v1/me")).status_code == 202
    assert (await a.http("ann").raw("DELETE", "/v1/me")).status_code == 202
    rows = await look(cql, f"SELECT body, media FROM {keyspace}.messages")
    assert len(rows) == 4 and all(r["body"] is None and r["media"] is None for r in rows)
    for moderator in (a.http(MOD), b.http(MOD)):
        assert (await moderator.admin_report(report_id))["evidence"] == before


async def test_paging_bad_input_and_the_metric_on_cassandra(
        nodes: tuple[Harness, Harness]) -> None:
    a, b = nodes
    await a.http("ann").swipe("zed", "like")  # zed was only seen in the deck
    ids = [await a.http("ann").report("zed", "spam")]
    ids += [await (a if n % 2 else b).http(f"u{n}").report("zed", REPORT_REASONS[n % 6])
            for n in range(6)]
    first = await b.http(MOD).admin_report(ids[0])
    assert first["evidence"] == [] and await b.node.store.is_blocked("ann", "zed")
    pages, cursor = [], None
    while True:
        page = await a.http(MOD).admin_reports(limit=2, cursor=cursor)
        pages.append([r["id"] for r in page["reports"]])
        cursor = page.get("next")
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [i for p in pages for i in p] == ids[::-1]
    for body, status in (({"user": "zed", "reason": "boring"}, 400),
                         ({"user": "ann", "reason": "spam"}, 400),
                         ({"user": "z" * 65, "reason": "spam"}, 400),
                         ({"user": "zed", "reason": "spam", "note": "n" * 1001}, 413)):
        response = await a.http("ann").raw("POST", "/v1/reports", json=body)
        assert response.status_code == status, body
    assert len((await a.http(MOD).admin_reports(limit=100))["reports"]) == 7
    # each node counts the reports filed through it: A ann's spam and u1, u3, u5's
    counted = reports_metric((await a.http(None).raw("GET", "/metrics")).text)
    assert counted == {"spam": 1.0, "scam": 1.0, "harassment": 0.0, "underage": 1.0,
                       "nudity": 0.0, "other": 1.0}
    counted = reports_metric((await b.http(None).raw("GET", "/metrics")).text)
    assert counted == {"spam": 1.0, "scam": 0.0, "harassment": 1.0, "underage": 0.0,
                       "nudity": 1.0, "other": 0.0}


async def test_the_purge_empties_cassandra_of_expired_reports(
        nodes: tuple[Harness, Harness], cql: Any, keyspace: str) -> None:
    a, b = nodes
    real = time.time
    old = [await a.http(f"o{n}").report("bob", "spam") for n in range(3)]
    b.node.services.reports.clock = lambda: real() + 60 * 86_400
    a.node.services.reports.clock = lambda: real() + 60 * 86_400
    recent = await a.http("ann").report("cat", "nudity")  # filed 60 days on
    b.node.services.reports.clock = lambda: real() + 91 * 86_400
    listed = await b.http(MOD).admin_reports()
    assert [r["id"] for r in listed["reports"]] == [recent]  # hidden at once
    rows = await look(cql, f"SELECT id FROM {keyspace}.reports")
    assert sorted(r["id"] for r in rows) == sorted([*old, recent])
    assert await b.node.services.reports.purge() == 3
    rows = await look(cql, f"SELECT id FROM {keyspace}.reports")
    assert [r["id"] for r in rows] == [recent]
    days = await look(cql, f"SELECT day FROM {keyspace}.report_days WHERE shard = 0")
    assert [r["day"] for r in days] == [(int(real() * 1000) + 60 * 86_400_000) // 86_400_000]
    assert await a.node.services.reports.purge() == 0  # another node's purge finds nothing
