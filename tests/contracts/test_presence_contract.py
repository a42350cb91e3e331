"""The `Presence` contract (server/backends/presence.py): sessions with a TTL that their node
refreshes, one user however many sessions and nodes, a node that stops refreshing loses its
users, and reapers report each of them once.

A "node" is a presence of its own with its own client (Redis); memory is one process, so
every node asks the same presence. Scripts, keys, slots and outages are in
tests/redis/test_redis_presence.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from server.backends.presence import MemoryPresence, Presence, Status, coarse
from server.backends.redis_presence import RedisPresence
from server.metrics import Metrics
from tests.contracts.conftest import Backing

Nodes = Callable[..., Awaitable[Presence]]


@pytest.fixture
def nodes(backing: Backing) -> Nodes:
    """Makes presence "nodes"; memory: one presence per TTL, whichever node asks."""
    memory: dict[float, Presence] = {}

    async def make(name: str, ttl_s: float = 60.0,
                   clock: Callable[[], float] = time.time) -> Presence:
        if not backing.shared:
            return memory.setdefault(ttl_s, MemoryPresence(ttl_s=ttl_s, clock=clock))
        return RedisPresence(await backing.client(), node=name, prefix=backing.prefix,
                             ttl_s=ttl_s, metrics=Metrics(), clock=clock)

    return make


class Clock:
    """A fake clock: only the test decides when sessions expire (a stall of the loaded
    machine must not)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def now_seen() -> int:
    return coarse(int(time.time() * 1000))


# -- one user, many sessions ---------------------------------------------------------------

async def test_first_connect_and_last_disconnect(nodes: Nodes) -> None:
    clock = Clock()
    presence = await nodes("node-a", ttl_s=10, clock=clock)
    assert await presence.connect("u", "s1") is True
    assert await presence.connect("u", "s2") is False
    assert await presence.disconnect("u", "s1") is None
    assert await presence.disconnect("u", "s2") == coarse(int(clock.now * 1000))
    assert await presence.disconnect("u", "s2") is None


async def test_sessions_on_two_nodes_are_one_user(nodes: Nodes) -> None:
    a, b = await nodes("node-a"), await nodes("node-b")
    assert await a.connect("alice", "s1") is True
    assert await b.connect("alice", "s2") is False
    assert await a.connect("alice", "s3") is False
    assert await b.status(["alice", "bob"]) == {"alice": Status(True, None),
                                                "bob": Status(False, None)}
    assert await a.disconnect("alice", "s1") is None
    assert await b.disconnect("alice", "s2") is None
    assert await b.disconnect("alice", "nope") is None
    before = now_seen()
    seen = await a.disconnect("alice", "s3")
    assert seen is not None and before <= seen <= now_seen()
    assert seen % 60_000 == 0
    assert await a.disconnect("alice", "s3") is None  # once
    assert await b.status(["alice"]) == {"alice": Status(False, seen)}
    assert await b.connect("alice", "s4") is True
    assert await a.status(["alice"]) == {"alice": Status(True, seen)}


async def test_status_of_many_users(nodes: Nodes) -> None:
    a, b = await nodes("node-a"), await nodes("node-b")
    users = [f"user-{i}" for i in range(40)] + ["with|pipe", "{braces}", "ünï", "a:b"]
    for i, user in enumerate(users):
        assert await (a if i % 2 else b).connect(user, f"s{i}")
    offline = [f"ghost-{i}" for i in range(10)]
    status = await a.status(users + offline + users[:3])
    assert set(status) == set(users + offline)
    assert all(status[u] == Status(True, None) for u in users)
    assert all(status[u] == Status(False, None) for u in offline)
    assert await a.status([]) == {}


# -- refresh and expiry --------------------------------------------------------------------

async def test_refresh_keeps_sessions_alive(nodes: Nodes) -> None:
    clock = Clock()
    a = await nodes("node-a", ttl_s=1.0, clock=clock)
    b = await nodes("node-b", ttl_s=1.0, clock=clock)
    await a.connect("alice", "s1")
    await a.connect("bob", "s2")
    for _ in range(4):
        clock.now += 0.6
        await a.refresh([("alice", "s1"), ("bob", "s2")])
    assert await b.status(["alice", "bob"]) == {"alice": Status(True, None),
                                                "bob": Status(True, None)}
    assert await b.reap() == []


async def test_refresh_never_resurrects_a_session(nodes: Nodes) -> None:
    # A long TTL here: on a busy machine a 0.3 s session could expire before its disconnect.
    slow_a, slow_b = await nodes("node-a"), await nodes("node-b")
    await slow_a.connect("alice", "s1")
    seen = await slow_a.disconnect("alice", "s1")
    assert seen is not None
    await slow_a.refresh([("alice", "s1")])
    assert await slow_b.status(["alice"]) == {"alice": Status(False, seen)}
    # Nor one that a reaper removed while its node hung.
    a, b = await nodes("node-a", ttl_s=0.3), await nodes("node-b", ttl_s=0.3)
    await a.connect("bob", "s2")
    await asyncio.sleep(0.4)
    assert [user for user, _ in await b.reap()] == ["bob"]
    await a.refresh([("bob", "s2")])
    assert not (await b.status(["bob"]))["bob"].online
    await asyncio.sleep(0.4)
    assert await b.reap() == []  # the entry that refresh wrote leads nowhere: no report
    assert await a.connect("bob", "s3")


async def test_an_unrefreshed_session_expires_and_is_reaped_once(nodes: Nodes) -> None:
    clock = Clock()
    presence = await nodes("node-a", ttl_s=10, clock=clock)
    await presence.connect("u", "s1")
    clock.now += 11
    status = (await presence.status(["u"]))["u"]
    assert status.online is False and status.seen is not None
    assert await presence.reap() == [("u", status.seen)]  # status did not consume it
    assert await presence.reap() == []


async def test_connect_after_expiry_counts_as_coming_online(nodes: Nodes) -> None:
    clock = Clock()
    a = await nodes("node-a", ttl_s=0.3, clock=clock)
    b = await nodes("node-b", ttl_s=0.3, clock=clock)
    await a.connect("alice", "s1")
    clock.now += 0.4
    assert await b.connect("alice", "s2") is True
    assert await b.reap() == []  # connect dropped the expired session: nothing to announce
    assert await b.disconnect("alice", "s2") is not None


# -- a node that stops refreshing ----------------------------------------------------------

async def test_a_dead_nodes_users_go_offline_and_are_reaped_once(nodes: Nodes) -> None:
    clock = Clock()

    async def node(name: str) -> Presence:
        return await nodes(name, ttl_s=1.0, clock=clock)

    dead, live = await node("node-dead"), await node("node-live")
    reapers = [live, await node("node-other")]
    started = int(clock.now * 1000)
    await dead.connect("alice", "a1")
    await live.connect("alice", "a2")  # alice stays online through the live node
    await dead.connect("bob", "b1")
    await dead.connect("bob", "b2")  # two dead sessions, one offline event
    await dead.connect("carol", "c1")
    clock.now += 0.5
    await live.refresh([("alice", "a2")])
    assert await reapers[1].reap() == []  # nothing expired yet
    clock.now += 0.6
    await live.refresh([("alice", "a2")])
    status = await live.status(["alice", "bob", "carol"])
    expected_seen = coarse(started)  # the last refresh of the dead sessions
    assert status["alice"].online
    assert status["bob"] == Status(False, expected_seen)
    assert status["carol"] == Status(False, expected_seen)
    results = await asyncio.gather(*(r.reap() for r in reapers))
    reported = sorted(user for result in results for user, _ in result)
    assert reported == ["bob", "carol"]
    assert all(seen == expected_seen for result in results for _, seen in result)
    assert [await r.reap() for r in reapers] == [[], []]
    assert (await live.status(["alice"]))["alice"].online
    assert (await live.status(["bob"]))["bob"] == status["bob"]


async def test_racing_reapers_report_each_dead_user_once(nodes: Nodes) -> None:
    dead = [await nodes(f"dead-{i}", ttl_s=0.3) for i in range(2)]
    reapers = [await nodes(f"reaper-{i}", ttl_s=0.3) for i in range(4)]
    users = [f"user-{i}" for i in range(150)]
    rng = random.Random(7)
    for i, user in enumerate(users):
        await dead[0].connect(user, f"s{i}")
        if rng.random() < 0.5:
            await dead[1].connect(user, f"t{i}")
    await asyncio.sleep(0.4)
    reported: list[str] = []
    for _ in range(3):
        results = await asyncio.gather(*(r.reap() for r in reapers))
        reported += [user for result in results for user, _ in result]
    assert sorted(reported) == sorted(users)
