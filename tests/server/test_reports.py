"""Reports against a real node (SQLite in tmp_path), over real HTTP and WebSockets:
`POST /v1/reports` blocks and freezes the chat as evidence, the moderators' endpoints, the
purge past the retention, the metric and the `on_report` hook (docs/protocol.md, "Reports";
docs/privacy.md, "Reports").
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from typing import Any

import pytest

from client import HttpError, RendezvousClient
from server.config import ConfigError
from server.node import Node
from storage.base import DAY_MS, REPORT_REASONS
from tests.conftest import Harness, NodeFactory, make_config
from tests.helpers import wait_until
from tests.server import report_hooks

MOD = "mod"  # in admin_subjects on every node of this file


@pytest.fixture
async def rdv(node_factory: NodeFactory, harness_for: Any) -> Harness:
    harness: Harness = harness_for(await node_factory(admin_subjects=(MOD,)))
    return harness


async def expect_error(call: Any, status: int, code: str) -> HttpError:
    with pytest.raises(HttpError) as info:
        await call
    assert (info.value.status, info.value.code) == (status, code), info.value
    return info.value


async def chat(rdv: Harness, a: str, b: str, n: int) -> tuple[str, list[dict[str, Any]]]:
    """Match `a` and `b`, send `n` messages alternately; the match id and the acks."""
    m = await rdv.pair(a, b)
    clients = {a: await rdv.connect(a), b: await rdv.connect(b)}
    acks = []
    for i in range(n):
        sender = a if i % 2 == 0 else b
        acks.append(await clients[sender].send(m, f"{sender} says {i}"))
    return m, acks


def db_rows(node: Node, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(node.config.data_dir / "rendezvous.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def reports_metric(text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^rendezvous_reports_total\{reason="(\w+)"\} (\S+)$', text, re.MULTILINE)}


async def refused(api: Any, path: str, status: int, code: str) -> None:
    response = await api.raw("GET", path)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), path


async def scrape(rdv: Harness) -> str:
    return (await rdv.http(None).raw("GET", "/metrics")).text


# -- filing ---------------------------------------------------------------------------------
async def test_a_report_freezes_the_last_messages_as_evidence(
        node_factory: NodeFactory, harness_for: Any) -> None:
    rdv: Harness = harness_for(await node_factory(admin_subjects=(MOD,),
                                                  report_evidence_msgs=5))
    m, acks = await chat(rdv, "ann", "bob", 7)
    history = await rdv.http("ann").raw("GET", f"/v1/matches/{m}/messages",
                                        params={"limit": 5})
    before = time.time() * 1000
    response = await rdv.http("ann").raw("POST", "/v1/reports", json={
        "user": "bob", "reason": "harassment", "note": "rude \u2603"})
    assert response.status_code == 201, response.text
    report_id = response.json()["id"]
    assert set(response.json()) == {"id"} and isinstance(report_id, str)
    raw = await rdv.http(MOD).raw("GET", f"/v1/admin/reports/{report_id}")
    assert raw.status_code == 200
    report = raw.json()
    assert set(report) == {"id", "reporter", "reported", "reason", "note", "ts", "evidence"}
    assert (report["id"], report["reporter"], report["reported"], report["reason"],
            report["note"]) == (report_id, "ann", "bob", "harassment", "rude \u2603")
    assert before <= report["ts"] <= time.time() * 1000
    # the five newest, newest first, in exactly the JSON of history (ids as strings)
    assert report["evidence"] == history.json()["msgs"]
    assert [e["id"] for e in report["evidence"]] == [str(a["id"]) for a in acks[:1:-1]]
    assert [e["from"] for e in report["evidence"]] == ["ann", "bob", "ann", "bob", "ann"]
    assert report["evidence"][0]["body"] == "ann says 6" and report["evidence"][0]["m"] == m
    listed = (await rdv.http(MOD).raw("GET", "/v1/admin/reports")).json()
    assert listed == {"reports": [report]}


async def test_the_report_blocks_and_tells_the_reported_user_nothing(rdv: Harness) -> None:
    m, _ = await chat(rdv, "ann", "bob", 2)
    bob = await rdv.connect("bob", subprotocol="rdv.v1.json")
    await rdv.http("ann").report("bob", "scam")
    before: list[dict[str, Any]] = []  # what came before the unmatch is the chat itself
    while not before or before[-1]["t"] != "unmatch":
        before.append(await bob.next_event(timeout=5))
    assert before[-1] == {"t": "unmatch", "m": m}
    assert {f["t"] for f in before[:-1]} <= {"msg", "presence", "read", "delivered"}
    assert await bob.no_event(within=0.5)  # the block's unmatch, and nothing after it
    assert (await bob.ping())["t"] == "pong"
    assert bob.drain_events() == []
    assert await rdv.node.store.is_blocked("ann", "bob")
    with pytest.raises(Exception) as refused:
        await bob.send(m, "hello?")
    assert getattr(refused.value, "code", None) == "forbidden"
    assert (await rdv.http("bob").matches())["matches"] == []
    # a match never comes back: likes again on both sides make none
    await rdv.http("ann").swipe("bob", "like")
    assert (await rdv.http("bob").swipe("ann", "like"))["match"] is None


async def test_evidence_outlives_unmatch_and_the_messages_rows(rdv: Harness) -> None:
    m, acks = await chat(rdv, "ann", "bob", 3)
    await rdv.http("bob").unmatch(m)  # bob unmatches first; ann reports afterwards
    report_id = await rdv.http("ann").report("bob", "nudity")
    evidence = (await rdv.http(MOD).admin_report(report_id))["evidence"]
    assert [e["id"] for e in evidence] == [a["id"] for a in reversed(acks)]
    # the message rows go (as erasure rewrites them): the copies in the report stay
    conn = sqlite3.connect(rdv.node.config.data_dir / "rendezvous.db")
    try:
        assert conn.execute("DELETE FROM messages").rowcount == 3
        conn.commit()
    finally:
        conn.close()
    assert (await rdv.http(MOD).admin_report(report_id))["evidence"] == evidence
    assert [e["body"] for e in evidence] == ["ann says 2", "bob says 1", "ann says 0"]


async def test_a_user_only_seen_in_the_deck_is_reported_with_no_evidence(
        rdv: Harness) -> None:
    await rdv.http("ann").swipe("bob", "pass")  # seen, never matched
    report_id = await rdv.http("ann").report("bob", "underage")
    report = await rdv.http(MOD).admin_report(report_id)
    assert report["evidence"] == [] and "note" not in report
    assert await rdv.node.store.is_blocked("bob", "ann")
    stranger = await rdv.http("ann").report("carl", "other", note="")  # never even seen
    assert (await rdv.http(MOD).admin_report(stranger))["note"] == ""


BAD_REPORTS = [
    ({"user": "bob", "reason": "fraud"}, 400, "bad_request"),
    ({"user": "bob", "reason": "SPAM"}, 400, "bad_request"),
    ({"user": "ann", "reason": "spam"}, 400, "bad_request"),  # herself
    ({"user": "b" * 65, "reason": "spam"}, 400, "bad_request"),
    ({"user": "", "reason": "spam"}, 400, "bad_request"),
    ({"user": "bob", "reason": "spam", "note": "n" * 1001}, 413, "too_large"),
    ({"user": "bob"}, 422, "bad_request"),
    ({"reason": "spam"}, 422, "bad_request"),
    ({"user": 7, "reason": "spam"}, 422, "bad_request"),
    ({"user": "bob", "reason": "spam", "note": 3}, 422, "bad_request"),
    ({"user": ["bob"], "reason": "spam"}, 422, "bad_request"),
]


async def test_bad_reports_get_clear_codes_and_leave_nothing(rdv: Harness) -> None:
    ann = rdv.http("ann")
    before = reports_metric(await scrape(rdv))
    for body, status, code in BAD_REPORTS:
        response = await ann.raw("POST", "/v1/reports", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == code, body
    for content, status in ((b'{"user": "\\ud800", "reason": "spam"}', 400),
                            (b'{"user": "bob", "reason": "spam", "note": "\\udfff"}', 400),
                            (b"{not json", 400)):
        response = await ann.raw("POST", "/v1/reports", content=content,
                                 headers={"Content-Type": "application/json"})
        assert (response.status_code, response.json()["error"]["code"]) == (
            status, "bad_request"), content
    unauthenticated = await rdv.http(None).raw("POST", "/v1/reports",
                                               json={"user": "bob", "reason": "spam"})
    assert unauthenticated.status_code == 401
    assert (await rdv.http(MOD).admin_reports())["reports"] == []
    assert not await rdv.node.store.is_blocked("ann", "bob")
    assert reports_metric(await scrape(rdv)) == before
    # the bounds themselves are fine
    longest = await ann.report("b" * 64, "spam", note="n" * 1000)
    assert (await rdv.http(MOD).admin_report(longest))["note"] == "n" * 1000


# -- moderators -----------------------------------------------------------------------------
async def test_only_moderators_read_reports(rdv: Harness) -> None:
    report_id = await rdv.http("ann").report("bob", "spam")
    for path in ("/v1/admin/reports", f"/v1/admin/reports/{report_id}",
                 "/v1/admin/reports/r-none"):
        for user in ("eve", "bob", "ann"):  # the reported and the reporter too
            await refused(rdv.http(user), path, 403, "forbidden")
    for scope in ("administrator", "read admin:reports", ["moderator"], ""):
        token = rdv.token("eve", scope=scope)
        await expect_error(rdv.http("eve", token).admin_report(report_id), 403, "forbidden")
    assert (await rdv.http(None).raw("GET", "/v1/admin/reports")).status_code == 401
    moderators = [rdv.http(MOD)]  # by subject (admin_subjects)
    for scope in ("admin", "read admin", ["admin", "x"]):  # by the scope claim
        moderators.append(rdv.http("zoe", rdv.token("zoe", scope=scope)))
    for moderator in moderators:
        listed = await moderator.admin_reports()
        assert [r["id"] for r in listed["reports"]] == [report_id]
        assert (await moderator.admin_report(report_id))["reported"] == "bob"
        await expect_error(moderator.admin_report("r-none"), 404, "not_found")
    bad_scope = await rdv.http("x", rdv.token("x", scope=5)).raw("GET", "/v1/admin/reports")
    assert bad_scope.status_code == 401  # a malformed claim refuses the token
    too_long = await rdv.http(MOD).raw("GET", "/v1/admin/reports/" + "r" * 65)
    assert too_long.status_code == 422


async def test_the_listing_pages_newest_first(rdv: Harness) -> None:
    ids = [await rdv.http(f"u{n}").report("bob", REPORT_REASONS[n % 6]) for n in range(7)]
    moderator = rdv.http(MOD)
    pages, cursor = [], None
    while True:
        page = await moderator.admin_reports(limit=3, cursor=cursor)
        pages.append(page["reports"])
        cursor = page.get("next")
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = [r for p in pages for r in p]
    assert [r["id"] for r in listed] == ids[::-1]
    assert [r["reporter"] for r in listed] == [f"u{n}" for n in range(6, -1, -1)]
    assert [r["ts"] for r in listed] == sorted((r["ts"] for r in listed), reverse=True)
    everything = await moderator.admin_reports(limit=100)
    assert [r["id"] for r in everything["reports"]] == ids[::-1] and "next" not in everything
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}):
        response = await moderator.raw("GET", "/v1/admin/reports", params=params)
        assert response.status_code == 422, params
    await expect_error(moderator.admin_reports(cursor="bm90LWEtY3Vyc29y"), 400, "bad_request")


# -- retention ------------------------------------------------------------------------------
async def test_reports_past_the_retention_are_hidden_then_purged(rdv: Harness) -> None:
    reports = rdv.node.services.reports
    real = time.time
    old = await rdv.http("ann").report("bob", "spam")
    reports.clock = lambda: real() + 50 * 86_400  # 50 days later
    recent = await rdv.http("cat").report("dan", "scam")
    reports.clock = lambda: real() + 91 * 86_400  # the first is past 90 days, not the second
    moderator = rdv.http(MOD)
    assert [r["id"] for r in (await moderator.admin_reports())["reports"]] == [recent]
    await expect_error(moderator.admin_report(old), 404, "not_found")
    assert len(db_rows(rdv.node, "SELECT id FROM reports")) == 2  # hidden, not yet purged
    assert await reports.purge() == 1
    assert db_rows(rdv.node, "SELECT id FROM reports") == [(recent,)]
    assert await reports.purge() == 0
    assert "rendezvous_reports_purged_total 1.0" in await scrape(rdv)
    # the purge took the report, never the block it made
    assert await rdv.node.store.is_blocked("ann", "bob")


async def test_the_node_purges_by_itself(node_factory: NodeFactory, harness_for: Any) -> None:
    node = await node_factory(admin_subjects=(MOD,), report_retention_days=1,
                              report_purge_interval_s=0.05)
    rdv: Harness = harness_for(node)
    kept = await rdv.http("ann").report("bob", "spam")
    assert db_rows(node, "SELECT id FROM reports") == [(kept,)]
    real = time.time
    node.services.reports.clock = lambda: real() + DAY_MS / 1000 - 60  # not a day yet
    await asyncio.sleep(0.3)  # several purge rounds
    assert db_rows(node, "SELECT id FROM reports") == [(kept,)]
    node.services.reports.clock = lambda: real() + DAY_MS / 1000 + 60
    await wait_until(lambda: db_rows(node, "SELECT id FROM reports") == [], timeout=5)


# -- metric and hook ------------------------------------------------------------------------
async def test_the_metric_counts_reports_by_reason(rdv: Harness) -> None:
    assert reports_metric(await scrape(rdv)) == {reason: 0.0 for reason in REPORT_REASONS}
    for user, reason in (("a1", "spam"), ("a2", "spam"), ("a3", "nudity")):
        await rdv.http(user).report("bob", reason)
    counted = reports_metric(await scrape(rdv))
    assert counted == {**{reason: 0.0 for reason in REPORT_REASONS}, "spam": 2.0,
                       "nudity": 1.0}


async def test_the_hook_is_called_with_the_stored_report(
        node_factory: NodeFactory, harness_for: Any) -> None:
    node = await node_factory(admin_subjects=(MOD,),
                              report_hook="tests.server.report_hooks:record")
    rdv: Harness = harness_for(node)
    report_hooks.CALLS.clear()
    report_hooks.STORE[:] = [node.store]
    try:
        m, acks = await chat(rdv, "ann", "bob", 2)
        report_id = await rdv.http("ann").report("bob", "harassment", note="see chat")
        await wait_until(lambda: report_hooks.CALLS, timeout=3)
        [(seen, was_stored)] = report_hooks.CALLS
        assert was_stored  # the hook ran once the report was durable
        assert (seen.id, seen.reporter, seen.reported, seen.reason, seen.note) == (
            report_id, "ann", "bob", "harassment", "see chat")
        assert [e.id for e in seen.evidence] == [a["id"] for a in reversed(acks)]
        assert seen.evidence[0].match_id == m
    finally:
        report_hooks.STORE.clear()
        report_hooks.CALLS.clear()


async def test_a_failing_or_hanging_hook_never_holds_the_request(
        node_factory: NodeFactory, harness_for: Any, caplog: pytest.LogCaptureFixture) -> None:
    failing: Harness = harness_for(await node_factory(
        admin_subjects=(MOD,), report_hook="tests.server.report_hooks:fail"))
    caplog.set_level(logging.WARNING, logger="rendezvous.reports")
    secret_note = "my secret note 4711"
    report_id = await failing.http("ann").report("bob", "spam", note=secret_note)
    assert (await failing.http(MOD).admin_report(report_id))["note"] == secret_note
    await wait_until(lambda: any(r.getMessage() == "report hook failed"
                                 for r in caplog.records))
    [record] = [r for r in caplog.records if r.getMessage() == "report hook failed"]
    assert record.__dict__["error"] == "RuntimeError" and record.__dict__["report"] == report_id
    assert secret_note not in json.dumps({k: str(v) for k, v in record.__dict__.items()})
    assert secret_note not in caplog.text
    assert "rendezvous_report_hook_failures_total 1.0" in await scrape(failing)

    report_hooks.RELEASE = asyncio.Event()
    report_hooks.CALLS.clear()
    hanging: Harness = harness_for(await node_factory(
        admin_subjects=(MOD,), report_hook="tests.server.report_hooks:hang"))
    started = time.monotonic()
    hung = await hanging.http("ann").report("bob", "spam")
    assert time.monotonic() - started < 2  # answered while the hook still waits
    assert report_hooks.CALLS == []
    report_hooks.RELEASE.set()
    await wait_until(lambda: [r.id for r, _ in report_hooks.CALLS] == [hung])
    report_hooks.CALLS.clear()


@pytest.mark.parametrize("path,message", [
    ("tests.server.no_such_module:record", "cannot load"),
    ("tests.server.report_hooks:no_such_thing", "cannot load"),
    ("tests.server.report_hooks:not_callable", "not callable"),
    ("no colon", "is not"),
])
def test_a_bad_report_hook_is_a_config_error(tmp_path: Any, path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"report_hook: .*{message}"):
        Node(make_config(tmp_path, report_hook=path))


@pytest.mark.parametrize("setting,value", [
    ("report_evidence_msgs", -1), ("report_evidence_msgs", 501),
    ("report_retention_days", 0), ("report_retention_days", 3651),
    ("report_purge_interval_s", 0.0), ("admin_subjects", ("",)),
    ("admin_subjects", ("x" * 65,)),
])
def test_report_settings_are_checked(tmp_path: Any, setting: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=setting):
        make_config(tmp_path, **{setting: value}).validate()


async def test_a_report_by_a_websocket_user_shows_on_their_socket_as_a_block(
        rdv: Harness) -> None:
    """The reporter's own devices hear the block's `unmatch`: the chat closes there too."""
    m, _ = await chat(rdv, "ann", "bob", 1)
    ann: RendezvousClient = await rdv.connect("ann")
    await rdv.http("ann").report("bob", "other")
    assert (await ann.next_event("unmatch"))["m"] == m


async def test_evidence_shows_unsent_messages_as_unsent_and_keeps_later_tombstones_out(
        rdv: Harness) -> None:
    """An unsend before the report is in the evidence as the chat showed it (a tombstone);
    a message turned into a tombstone afterwards (as erasure does) stays whole in it."""
    m = await rdv.pair("ann", "bob")
    bob = await rdv.connect("bob")
    acks = [await bob.send(m, f"bob {i}") for i in range(3)]
    await bob.unsend(m, acks[0]["id"])
    report_id = await rdv.http("ann").report("bob", "harassment")
    assert await rdv.node.store.tombstone_message(m, acks[2]["id"])  # after the report
    assert (await rdv.http("bob").raw("GET", f"/v1/matches/{m}/messages")).status_code == 403
    evidence = (await rdv.http(MOD).admin_report(report_id))["evidence"]
    assert [e.get("body") for e in evidence] == ["bob 2", "bob 1", None]
    assert evidence[2] == {"m": m, "id": acks[0]["id"], "from": "bob", "ts": acks[0]["ts"],
                           "deleted": True}


async def test_evidence_outlives_the_erasure_of_either_account(rdv: Harness) -> None:
    """The reported user erases their account, then the reporter erases theirs: the
    messages of both become tombstones in the store, the report's copies stay whole."""
    m, _ = await chat(rdv, "ann", "bob", 4)
    report_id = await rdv.http("ann").report("bob", "harassment")
    before = (await rdv.http(MOD).admin_report(report_id))["evidence"]
    assert [e["body"] for e in before] == ["bob says 3", "ann says 2", "bob says 1",
                                           "ann says 0"]
    for user in ("bob", "ann"):
        assert (await rdv.http(user).raw("DELETE", "/v1/me")).status_code == 202
    senders = {sender for sender, body in db_rows(
        rdv.node, "SELECT sender, body FROM messages WHERE match_id = ?", m) if body is None}
    assert senders == {"ann", "bob"}  # every message of the chat is a tombstone now
    after = await rdv.http(MOD).admin_report(report_id)
    assert after["evidence"] == before
    assert (after["reporter"], after["reported"]) == ("ann", "bob")
