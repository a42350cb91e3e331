"""Account erasure on a real embedded node (SQLite): `DELETE /v1/me` leaves nothing of the
user in any table but the residue of `tests/erasure_checks.ALLOWED`, the peer keeps the
history with tombstones and gets `unmatch`, old tokens are refused, a second call changes
nothing, and an erasure a store failure cut short is finished by a retry or a restart.
The same on Cassandra with Redis: tests/cluster/test_erasure_cassandra.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client import ConnectionRejected
from storage import StoreUnavailable
from tests.conftest import Harness, NodeFactory
from tests.erasure_checks import (
    DEVICE,
    PEER,
    RULES_ON,
    USER,
    after_second_of,
    build,
    leftovers,
    memory_leftovers,
    sqlite_tables,
)


async def test_erasure_leaves_only_the_allowed_residue(node_factory: NodeFactory) -> None:
    rdv = Harness(await node_factory(**RULES_ON))
    try:
        await _erasure_leaves_only_the_allowed_residue(rdv)
    finally:
        await rdv.close()


async def _erasure_leaves_only_the_allowed_residue(rdv: Harness) -> None:
    scene = await build(rdv)
    before = sqlite_tables(rdv.node.config.data_dir / "rendezvous.db")
    assert set(leftovers(before)) >= {  # the scenario put the user in all of these
        "messages", "message_client_ids", "conversations_by_user", "read_cursors",
        "swipes_by_swiper", "likes_received", "matches_by_user", "blocks",
        "devices_by_user", "device_owner", "settings", "last_swipes", "mutes"}
    assert set(memory_leftovers(rdv.node)) >= {"presence", "connection_cap", "push_gates",
                                               "send_limiter", "swipe_limiter", "quotas",
                                               "openers"}
    api = rdv.http(None, token=scene.token)
    response = await api.raw("DELETE", "/v1/me")
    assert response.status_code == 202
    erased_at = response.json()["erased_at"]
    assert isinstance(erased_at, int) and erased_at > 0
    # the user's socket closes 4001; the peer is told the match is over
    assert await scene.erin.wait_closed(3) == 4001
    assert (await scene.pat.next_event("unmatch"))["m"] == scene.match
    # every table: nothing of the user but the allowed residue
    tables = sqlite_tables(rdv.node.config.data_dir / "rendezvous.db")
    assert {"messages", "matches", "blocks", "erasures", "swipes_by_swiper",
            "devices_by_user", "device_owner"} <= set(tables)
    assert leftovers(tables) == {}
    assert [r["sender"] for r in tables["messages"] if r["sender"] == USER] == [USER] * 4
    assert rdv.node.backends.push_queue.depth() == 0  # both queued jobs named the user
    assert memory_leftovers(rdv.node) == {}
    # the peer's history: their own messages, the user's as tombstones
    history = await rdv.http(PEER).messages(scene.match)
    by_id = {m["id"]: m for m in history["msgs"]}
    for mid in scene.user_msgs:
        assert by_id[mid] == {"m": scene.match, "id": mid, "from": USER,
                              "ts": by_id[mid]["ts"], "deleted": True}
    assert [by_id[mid]["body"] for mid in scene.peer_msgs] == [
        "from pat, erin offline", "from pat 0", "from pat 1"]
    ws_history = await scene.pat.history(scene.match)
    assert {m["id"]: m.get("deleted", False) for m in ws_history["msgs"]} == {
        **{mid: True for mid in scene.user_msgs}, **{mid: False for mid in scene.peer_msgs}}
    synced = await scene.pat.sync()
    assert scene.match not in [c["m"] for c in synced["convs"]]  # closed: left the sync
    assert USER not in [m["from"] for m in synced["msgs"]]
    assert (await rdv.http(PEER).matches())["matches"] == []
    # the old token: 401 on HTTP, 4001 on the socket; a second DELETE: the same erased_at
    status = (await api.raw("GET", "/v1/matches")).status_code
    assert status == 401
    with pytest.raises(ConnectionRejected) as refused:
        await rdv.connect("x", token=scene.token)
    assert refused.value.code == 4001
    again = await api.raw("DELETE", "/v1/me")
    assert (again.status_code, again.json()) == (202, {"erased_at": erased_at})
    assert leftovers(sqlite_tables(rdv.node.config.data_dir / "rendezvous.db")) == {}
    # a later token is the account used anew: it starts empty, and erasing it again
    # erases what it made since (a new erased_at)
    await after_second_of(erased_at)
    fresh = rdv.http(USER, token=rdv.token(USER))
    assert (await fresh.matches())["matches"] == []
    await fresh.swipe(PEER, "like")
    await fresh.put_settings(show_online=False)
    second = await fresh.erase_account()
    assert second > erased_at
    assert leftovers(sqlite_tables(rdv.node.config.data_dir / "rendezvous.db")) == {}
    assert await api.erase_account() == second  # the first token: a repeat, no change


async def test_a_token_revoked_by_logout_all_cannot_erase(rdv: Harness) -> None:
    token = rdv.token("ann")
    api = rdv.http(None, token=token)
    await api.logout_all()
    assert (await api.raw("DELETE", "/v1/me")).status_code == 401
    assert await rdv.node.store.get_erasure("ann") is None


def fail_once(store: Any, kind: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make `erase_user_data(kind)` raise StoreUnavailable once (the store failing there)."""
    failed: list[str] = []
    real = store.erase_user_data

    async def flaky(user: str, k: str) -> None:
        if k == kind and not failed:
            failed.append(k)
            raise StoreUnavailable("injected")
        await real(user, k)
    monkeypatch.setattr(store, "erase_user_data", flaky)
    return failed


async def test_a_failed_erasure_is_finished_by_a_retry(
        rdv: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = await build(rdv)
    failed = fail_once(rdv.node.store, "devices", monkeypatch)
    api = rdv.http(None, token=scene.token)
    first = await api.raw("DELETE", "/v1/me")
    assert first.status_code == 503 and first.json()["error"]["code"] == "unavailable"
    assert failed == ["devices"]
    pending = await rdv.node.store.pending_erasures(10)
    steps = [name for name, _ in rdv.node.services.erasure.steps]
    assert [(e.user, e.step) for e in pending] == [(USER, steps.index("devices"))]
    assert [d.token for d in await rdv.node.store.devices(USER)] == [DEVICE]  # not yet
    assert (await api.raw("GET", "/v1/matches")).status_code == 401  # refused already
    retry = await api.raw("DELETE", "/v1/me")  # the same old token: accepted here
    assert retry.status_code == 202
    assert await rdv.node.store.pending_erasures(10) == []
    assert leftovers(sqlite_tables(rdv.node.config.data_dir / "rendezvous.db")) == {}


async def test_a_failed_erasure_is_finished_by_the_node_at_start(
        node_factory: NodeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "shared"
    node = await node_factory(data_dir=data)
    h = Harness(node)
    try:
        scene = await build(h)
        fail_once(node.store, "settings", monkeypatch)
        assert (await h.http(None, token=scene.token).raw("DELETE", "/v1/me")).status_code == 503
    finally:
        await h.close()
    await node.stop()
    assert leftovers(sqlite_tables(data / "rendezvous.db")) != {}  # half-way
    restarted = await node_factory(data_dir=data)  # its resumer runs at start
    for _ in range(100):
        erasure = await restarted.store.get_erasure(USER)
        if erasure is not None and erasure.done:
            break
        await asyncio.sleep(0.05)
    assert erasure is not None and erasure.done
    assert leftovers(sqlite_tables(data / "rendezvous.db")) == {}


async def test_racing_erasures_of_one_user_agree(rdv: Harness) -> None:
    scene = await build(rdv)
    api = rdv.http(None, token=scene.token)
    answers = await asyncio.gather(*(api.raw("DELETE", "/v1/me") for _ in range(4)))
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.json()["erased_at"] for a in answers}) == 1
    assert rdv.node.services.erasure.completed == 1  # the others waited, then found it done
    assert leftovers(sqlite_tables(rdv.node.config.data_dir / "rendezvous.db")) == {}
