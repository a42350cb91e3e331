"""The swipe economy on a real embedded node (SQLite, HTTP on a free port): quotas, undo,
the super-like push, who liked me and the deck filter, with their races and bad input.
The same flows on Cassandra and Redis: tests/cluster/test_swipe_economy_cluster.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import RendezvousHttp
from client.errors import HttpError
from server.config import ConfigError
from server.config_load import load
from server.node import Node
from tests.conftest import Harness, NodeFactory
from tests.helpers import stays, wait_until

Wrap = Callable[[Node], Harness]


async def economy(node_factory: NodeFactory, harness_for: Wrap, **config: Any) -> Harness:
    return harness_for(await node_factory(**{"likes_per_day": 3, "superlikes_per_day": 1,
                                             **config}))


async def refused(call: Any) -> HttpError:
    with pytest.raises(HttpError) as error:
        await call
    return error.value


# -- quotas ----------------------------------------------------------------------------------
async def test_quota_counts_likes_and_superlikes_and_refuses_past_it(
        node_factory: NodeFactory, harness_for: Wrap) -> None:
    rdv = await economy(node_factory, harness_for)
    ann = rdv.http("ann")
    start = await ann.quota()
    assert (start["likes_left"], start["superlikes_left"]) == (3, 1)
    day_ms = 86_400_000
    assert start["reset_at"] % day_ms == 0 and 0 < start["reset_at"] - time.time() * 1000 <= day_ms
    await ann.swipe("b1", "like")
    await ann.swipe("b1", "like")  # the same swipe again: spends nothing
    await ann.swipe("p1", "pass")  # passes are free
    await ann.swipe("b2", "like")
    assert (await ann.quota())["likes_left"] == 1
    await ann.swipe("b3", "like")
    error = await refused(ann.swipe("b4", "like"))
    assert (error.status, error.code, error.reset_at) == (429, "quota_exceeded",
                                                          start["reset_at"])
    assert error.retry_after is not None and error.retry_after > 0
    assert await rdv.http("b4").likes() == {"likes": []}  # a refused like is not stored
    await ann.swipe("s1", "superlike")
    error = await refused(ann.swipe("s2", "superlike"))
    assert error.code == "quota_exceeded"
    assert await ann.quota() == {"likes_left": 0, "superlikes_left": 0,
                                 "reset_at": start["reset_at"]}
    await ann.swipe("p2", "pass")  # still free past the quota
    assert (await rdv.http("bob").quota())["likes_left"] == 3  # per user


async def test_the_reset_hour_and_an_unlimited_node(node_factory: NodeFactory,
                                                    harness_for: Wrap) -> None:
    rdv = await economy(node_factory, harness_for, quota_reset_hour_utc=7)
    reset = (await rdv.http("ann").quota())["reset_at"]
    assert reset % 86_400_000 == 7 * 3_600_000
    free = harness_for(await node_factory())
    assert await free.http("ann").quota() == {"likes_left": None, "superlikes_left": None,
                                              "reset_at": None}
    for i in range(20):
        await free.http("ann").swipe(f"t{i}", "superlike")


async def test_an_exempt_claim_lifts_the_quota(node_factory: NodeFactory,
                                               harness_for: Wrap) -> None:
    rdv = await economy(node_factory, harness_for, likes_per_day=1,
                        quota_exempt_claim="plan", quota_exempt_values=("premium", "gold"))
    premium = rdv.http("vip", rdv.token("vip", plan="premium"))
    listed = rdv.http("lst", rdv.token("lst", plan=["beta", "gold"]))
    free = rdv.http("ann", rdv.token("ann", plan="free"))
    assert await premium.quota() == {"likes_left": None, "superlikes_left": None,
                                     "reset_at": None}
    for i in range(5):
        await premium.swipe(f"t{i}", "like")
        await listed.swipe(f"t{i}", "like")
    await free.swipe("t0", "like")
    assert (await refused(free.swipe("t1", "like"))).code == "quota_exceeded"


async def test_two_devices_spending_the_last_likes_at_once(node_factory: NodeFactory,
                                                           harness_for: Wrap) -> None:
    rdv = await economy(node_factory, harness_for, likes_per_day=5, swipe_burst=1000)
    token = rdv.token("ann")
    devices = [RendezvousHttp(rdv.http_url, token) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(devices[i % 4].swipe(f"t{i}", "like") for i in range(24)),
            return_exceptions=True)
    finally:
        await asyncio.gather(*(d.aclose() for d in devices))
    ok = [r for r in results if isinstance(r, dict)]
    errors = [r for r in results if isinstance(r, HttpError)]
    assert len(ok) == 5 and len(errors) == 19, results
    assert {e.code for e in errors} == {"quota_exceeded"}
    assert (await rdv.http("ann").quota())["likes_left"] == 0
    stored = [i for i in range(24) if (await rdv.http(f"t{i}").likes())["likes"]]
    assert len(stored) == 5  # exactly the five that were answered 200


def test_a_negative_quota_is_a_config_error_naming_it(tmp_path: Path) -> None:
    secret = {"RENDEZVOUS_JWT_SECRET": "a-long-enough-secret-for-hs256-0123456789"}
    with pytest.raises(ConfigError, match=r"likes_per_day must not be negative .* \(from env\)"):
        load(None, {}, {**secret, "RENDEZVOUS_LIKES_PER_DAY": "-1"})
    (tmp_path / "rdv.toml").write_text("superlikes_per_day = -1\n")
    with pytest.raises(ConfigError, match=r"superlikes_per_day must not be negative"):
        load(tmp_path / "rdv.toml", {}, secret)
    with pytest.raises(ConfigError, match=r"quota_reset_hour_utc must be 0..23, got 24"):
        load(None, {}, {**secret, "RENDEZVOUS_QUOTA_RESET_HOUR_UTC": "24"})


# -- undo ------------------------------------------------------------------------------------
async def test_undo_takes_back_the_latest_swipe_and_its_quota(node_factory: NodeFactory,
                                                              harness_for: Wrap) -> None:
    rdv = await economy(node_factory, harness_for)
    ann = rdv.http("ann")
    error = await refused(ann.undo())
    assert (error.status, error.code) == (404, "not_found")  # nothing swiped yet
    await ann.swipe("bob", "pass")
    await ann.swipe("cat", "superlike")
    assert [x["user"] for x in (await rdv.http("cat").likes())["likes"]] == ["ann"]
    undone = (await ann.undo())["undone"]
    assert (undone["target"], undone["action"]) == ("cat", "superlike")
    assert isinstance(undone["ts"], int)
    assert (await ann.quota())["superlikes_left"] == 1  # given back
    assert (await rdv.http("cat").likes())["likes"] == []
    assert await ann.deck_filter(["bob", "cat"]) == ["cat"]  # cat is in the deck again
    error = await refused(ann.undo())  # one undo: the pass before it stays
    assert (error.status, error.code) == (404, "not_found")
    await ann.swipe("cat", "superlike")  # the given-back super like can be spent again
    assert (await ann.quota())["superlikes_left"] == 0


async def test_undo_never_undoes_a_match(node_factory: NodeFactory, harness_for: Wrap) -> None:
    rdv = await economy(node_factory, harness_for)
    match_id = await rdv.pair("bob", "ann")  # ann's like made the match
    error = await refused(rdv.http("ann").undo())
    assert (error.status, error.code) == (404, "not_found") and "match" in (error.msg or "")
    assert [m["id"] for m in (await rdv.http("ann").matches())["matches"]] == [match_id]


async def test_undo_past_the_window(node_factory: NodeFactory, harness_for: Wrap) -> None:
    rdv = await economy(node_factory, harness_for, undo_window_s=0.3)
    await rdv.http("ann").swipe("bob", "like")
    await asyncio.sleep(0.5)
    assert (await refused(rdv.http("ann").undo())).code == "not_found"
    assert (await rdv.http("bob").likes())["likes"][0]["user"] == "ann"  # still there


async def test_undo_racing_the_peers_like_never_leaves_a_half_match(
        node_factory: NodeFactory, harness_for: Wrap) -> None:
    rdv = await economy(node_factory, harness_for, likes_per_day=0, swipe_burst=1000)
    outcomes = []
    for i in range(25):
        a, b = f"a{i}", f"b{i}"
        await rdv.http(a).swipe(b, "like")
        undo, like = await asyncio.gather(rdv.http(a).undo(),
                                          later(i, rdv.http(b).swipe(a, "like")),
                                          return_exceptions=True)
        matched = [m["peer"] for m in (await rdv.http(a).matches())["matches"]] == [b]
        a_likes = [x["user"] for x in (await rdv.http(b).likes())["likes"]]
        if isinstance(undo, HttpError):
            assert undo.code == "not_found", undo
            assert matched, f"pair {i}: undo refused but no match"
        else:
            assert not matched, f"pair {i}: undone like but a match"
            assert a_likes == [] and isinstance(like, dict) and like["match"] is None
            assert await rdv.http(a).deck_filter([b]) == [b]
        outcomes.append(isinstance(undo, HttpError))
    print("undo refused (match made) in", sum(outcomes), "of", len(outcomes))
    assert any(outcomes) and not all(outcomes)  # the race went both ways, within the rule


async def later(i: int, call: Awaitable[Any]) -> Any:
    """`call`, after 0, 70, 140 or 210 ms by turns: the peer's like lands before, during or
    after the undo's steps, so both outcomes of the race happen."""
    await asyncio.sleep(i % 4 * 0.07)
    return await call


# -- super like push ---------------------------------------------------------------------------
async def test_a_superlike_sends_a_discreet_like_push_collapsed_per_liker(
        node_factory: NodeFactory, harness_for: Wrap) -> None:
    node = await node_factory(superlikes_per_day=0)
    rdv = harness_for(node)
    await rdv.http("zoe").put_device("zoe-phone", "apns")
    await rdv.http("ann").swipe("zoe", "superlike")
    await rdv.http("bob").swipe("zoe", "superlike")
    await rdv.http("cat").swipe("zoe", "like")  # a plain like sends nothing
    path = node.config.data_dir / "pushes.jsonl"

    def likes() -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return [r for r in map(json.loads, path.read_text().splitlines()) if r["user"] == "zoe"]

    await wait_until(lambda: len(likes()) == 2)
    records = likes()
    assert {r["kind"] for r in records} == {"like"}
    assert {r["m"] for r in records} == {None}
    assert records[0]["collapse_id"] != records[1]["collapse_id"]  # two likers
    text = json.dumps(records)
    assert "ann" not in text and "bob" not in text  # the liker is never in the push
    await rdv.http("ann").swipe("zoe", "pass")
    await rdv.http("ann").swipe("zoe", "superlike")  # again: same collapse id as before
    await wait_until(lambda: len(likes()) == 3)
    assert likes()[2]["collapse_id"] == records[0]["collapse_id"]
    await rdv.http("ann").swipe("zoe", "superlike")  # a repeat of the standing one: no push
    await rdv.http("zoe").block("dan")
    await rdv.http("dan").swipe("zoe", "superlike")  # blocked: no push
    assert await stays(lambda: len(likes()) == 3, within=0.5)
    await rdv.http("zoe").put_settings(push_kinds={"like": False})  # likes switched off
    await rdv.http("eve").swipe("zoe", "superlike")
    assert await stays(lambda: len(likes()) == 3, within=0.5)


# -- who liked me ----------------------------------------------------------------------------
async def test_likes_newest_first_paged_without_swiped_back_or_blocked(
        node_factory: NodeFactory, harness_for: Wrap) -> None:
    rdv = harness_for(await node_factory())
    for i in range(7):
        await rdv.http(f"u{i}").swipe("zoe", "superlike" if i == 6 else "like")
        await asyncio.sleep(0.002)  # distinct ms
    zoe = rdv.http("zoe")
    await zoe.swipe("u0", "pass")  # swiped back: gone
    await zoe.block("u1")  # zoe blocked u1: gone
    await rdv.http("u2").block("zoe")  # u2 blocked zoe: gone
    await rdv.http("u3").swipe("zoe", "pass")  # u3 changed their mind: gone
    everything = await zoe.likes()
    assert [(x["user"], x["action"]) for x in everything["likes"]] == [
        ("u6", "superlike"), ("u5", "like"), ("u4", "like")]
    assert "next" not in everything
    first = await zoe.likes(limit=2)
    assert [x["user"] for x in first["likes"]] == ["u6", "u5"]
    second = await zoe.likes(limit=2, cursor=first["next"])
    assert [x["user"] for x in second["likes"]] == ["u4"] and "next" not in second
    await zoe.swipe("u5", "like")  # a match: gone from the list
    assert [x["user"] for x in (await zoe.likes())["likes"]] == ["u6", "u4"]
    bad = await rdv.http("zoe").raw("GET", "/v1/likes", params={"cursor": "not-ours"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_request")
    big = await rdv.http("zoe").raw("GET", "/v1/likes", params={"limit": 101})
    assert (big.status_code, big.json()["error"]["code"]) == (422, "bad_request")


# -- deck filter -----------------------------------------------------------------------------
async def test_deck_filter_keeps_order_and_drops_swiped_matched_blocked(
        node_factory: NodeFactory, harness_for: Wrap) -> None:
    rdv = harness_for(await node_factory())
    ann = rdv.http("ann")
    await ann.swipe("passed", "pass")
    await ann.swipe("liked", "like")
    await rdv.pair("ann", "matched")
    await ann.block("blocked")
    await rdv.http("blocker").block("ann")
    await rdv.http("admirer").swipe("ann", "like")  # liked ann: still shown
    candidates = ["z", "passed", "ann", "admirer", "liked", "matched", "blocked", "blocker",
                  "a", "z"]
    assert await ann.deck_filter(candidates) == ["z", "admirer", "a", "z"]
    assert await ann.deck_filter([]) == []


async def test_deck_filter_takes_500_and_refuses_501(rdv: Harness) -> None:
    ann = rdv.http("ann")
    await ann.swipe("c7", "pass")
    kept = await ann.deck_filter([f"c{i}" for i in range(500)])
    assert len(kept) == 499 and "c7" not in kept
    answer = await ann.raw("POST", "/v1/deck/filter",
                           json={"candidates": [f"c{i}" for i in range(501)]})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"
    assert "500" in answer.json()["error"]["msg"]
    for body in ({"candidates": [""]}, {"candidates": "ann"}, {}, {"candidates": ["x" * 65]}):
        bad = await ann.raw("POST", "/v1/deck/filter", json=body)
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "bad_request"), body


async def test_the_new_endpoints_need_a_token(rdv: Harness) -> None:
    anonymous = rdv.http(None)
    for method, path in (("GET", "/v1/me/quota"), ("POST", "/v1/swipes/undo"),
                         ("GET", "/v1/likes"), ("POST", "/v1/deck/filter")):
        answer = await anonymous.raw(method, path, json={"candidates": []})
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, "unauthorized")


async def test_openapi_shows_the_new_endpoints(rdv: Harness) -> None:
    async with httpx.AsyncClient(base_url=rdv.http_url) as client:
        spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert "get" in paths["/v1/me/quota"]
    assert "post" in paths["/v1/swipes/undo"] and "404" in paths["/v1/swipes/undo"]["post"][
        "responses"]
    assert "get" in paths["/v1/likes"]
    deck = paths["/v1/deck/filter"]["post"]
    assert "413" in deck["responses"] and deck.get("security")
    assert "quota_exceeded" in paths["/v1/swipes"]["post"]["responses"]["429"]["description"]


def test_config_check_refuses_a_negative_quota(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "rdv.toml").write_text("likes_per_day = -1\n")
    out = subprocess.run([sys.executable, "-m", "server.cli", "config", "check",
                          str(tmp_path / "rdv.toml")], capture_output=True, text=True, cwd=repo,
                         env={"RENDEZVOUS_JWT_SECRET": "a-long-enough-secret-for-hs256-012345"})
    assert out.returncode == 2 and "likes_per_day must not be negative" in out.stderr
