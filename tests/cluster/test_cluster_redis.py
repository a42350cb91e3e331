"""Two or three nodes sharing fan-out, presence and state through one real redis-server."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import httpx
import pytest

from client import RendezvousClient, ServerError
from tests.cluster.conftest import PRESENCE_TTL_S, StartNode, Users
from tests.redis_servers import RedisServer


def node_id(banner: list[str]) -> int:
    match = re.search(r"node id (\d+)", banner[0])
    assert match, banner
    return int(match.group(1))


async def test_users_on_two_nodes_complete_the_whole_flow(
        redis_server: RedisServer, start_node: StartNode, users: Users) -> None:
    a = await start_node("--redis-url", redis_server.url, "--node-name", "A")
    b = await start_node("--redis-url", redis_server.url, "--node-name", "B")
    assert node_id(a.banner) != node_id(b.banner)
    alice = await users.connect(a, "alice")
    bob = await users.connect(b, "bob")
    assert (alice.welcome["node"], bob.welcome["node"]) == ("A", "B")

    m = await users.pair(a, "alice", b, "bob")  # each like through its own node
    assert (await alice.next_event("match"))["peer"] == "bob"
    assert (await bob.next_event("match"))["peer"] == "alice"
    # they were not matched when they connected: the presence query answers now
    assert (await bob.presence())["users"] == [{"u": "alice", "on": True}]

    ack = await alice.send(m, "hello across nodes")
    msg = await bob.next_event("msg")
    assert msg["id"] == ack["id"] and msg["body"] == "hello across nodes"
    reply = await bob.send(m, "hi from B")
    assert (await alice.next_event("msg"))["id"] == reply["id"]
    assert reply["id"] != ack["id"]

    await bob.typing(m, True)
    assert (await alice.next_event("typing"))["on"] is True
    await bob.read(m, ack["id"], ack=True)
    assert (await alice.next_event("read"))["id"] == ack["id"]

    bob_tablet = await users.connect(a, "bob")  # a second device on the other node
    await alice.send(m, "both devices")
    assert (await bob.next_event("msg"))["body"] == "both devices"
    assert (await bob_tablet.next_event("msg"))["body"] == "both devices"
    await bob_tablet.close()
    await bob.close()
    offline = await alice.next_event("presence", predicate=lambda f: f["on"] is False)
    assert offline["u"] == "bob"

    bob = await users.connect(b, "bob")
    await users.http(b, "bob").unmatch(m)  # unmatch on B: A's membership cache must drop it
    assert (await alice.next_event("unmatch"))["m"] == m
    with pytest.raises(ServerError) as refused:
        await alice.send(m, "after unmatch")
    assert refused.value.code == "forbidden"


async def test_block_across_nodes_stops_everything(
        redis_server: RedisServer, start_node: StartNode, users: Users) -> None:
    a = await start_node("--redis-url", redis_server.url)
    b = await start_node("--redis-url", redis_server.url)
    m = await users.pair(a, "carol", b, "dave")
    carol = await users.connect(a, "carol")
    dave = await users.connect(b, "dave")
    assert (await carol.next_event("presence"))["on"] is True  # from before the block
    await users.http(a, "carol").block("dave")
    assert (await dave.next_event("unmatch"))["m"] == m
    for attempt in (dave.send(m, "still there?"), dave.history(m)):
        with pytest.raises(ServerError) as refused:
            await attempt
        assert refused.value.code == "forbidden"
    await dave.typing(m, True)
    await dave.close()
    assert await carol.no_event({"typing", "presence", "msg"}, within=0.5)


async def test_message_ids_stay_unique_across_nodes(
        redis_server: RedisServer, start_node: StartNode, users: Users) -> None:
    a = await start_node("--redis-url", redis_server.url)
    b = await start_node("--redis-url", redis_server.url)
    m = await users.pair(a, "erin", b, "frank")
    erin = await users.connect(a, "erin")
    frank = await users.connect(b, "frank")
    acks = await asyncio.gather(*(erin.send(m, f"e{i}") for i in range(40)),
                                *(frank.send(m, f"f{i}") for i in range(40)))
    assert len({x["id"] for x in acks}) == 80


async def test_same_client_id_on_two_nodes_is_one_message(
        redis_server: RedisServer, start_node: StartNode, users: Users) -> None:
    a = await start_node("--redis-url", redis_server.url)
    b = await start_node("--redis-url", redis_server.url)
    m = await users.pair(a, "gina", b, "hal")
    phone = await users.connect(a, "gina")
    laptop = await users.connect(b, "gina")
    first = await phone.send(m, "once", c="same-c")
    # a resend through another node: the same id (or, while the first node is still
    # marking its claim done, `unavailable` with a retry_ms, as docs/protocol.md allows)
    for _ in range(20):
        try:
            again = await laptop.send(m, "once", c="same-c")
            break
        except ServerError as refused:
            assert refused.code == "unavailable", refused
            await asyncio.sleep((refused.retry_ms or 250) / 1000)
    assert again["id"] == first["id"]
    page = await phone.history(m)
    assert [x["body"] for x in page["msgs"]] == ["once"]


async def test_killed_node_users_go_offline_within_the_ttl(
        redis_server: RedisServer, start_node: StartNode, users: Users) -> None:
    a = await start_node("--redis-url", redis_server.url)
    b = await start_node("--redis-url", redis_server.url)
    await users.pair(a, "ivy", b, "jack")
    ivy = await users.connect(a, "ivy")
    await users.connect(b, "jack")
    assert (await ivy.next_event("presence"))["on"] is True
    killed = time.monotonic()
    await b.stop(signal.SIGKILL)
    offline = await ivy.next_event("presence", timeout=PRESENCE_TTL_S * 4)
    took = time.monotonic() - killed
    print(f"\nkill -9: jack offline on the other node after {took:.2f} s "
          f"(presence TTL {PRESENCE_TTL_S} s)")
    assert offline == {"t": "presence", "u": "jack", "on": False, "seen": offline["seen"]}
    assert took < PRESENCE_TTL_S * 2 + 1
    assert (await ivy.presence())["users"][0]["on"] is False


async def test_redis_restart_mid_conversation_loses_nothing(
        redis_server: RedisServer, start_node: StartNode, users: Users) -> None:
    a = await start_node("--redis-url", redis_server.url)
    b = await start_node("--redis-url", redis_server.url)
    m = await users.pair(a, "kim", b, "lee")
    kim = await users.connect(a, "kim")
    lee = await users.connect(b, "lee")
    cursor = (await lee.sync())["cursor"]
    await kim.send(m, "before the outage")
    await lee.next_event("msg")

    redis_server.stop(kill=True)
    during = [(await kim.send(m, f"during {i}"))["id"] for i in range(5)]  # stored and acked
    assert await readyz_becomes(a.http_url, 503), "/readyz stayed ready without Redis"
    redis_server.start()
    restarted = time.monotonic()
    resumed = None
    while resumed is None and time.monotonic() - restarted < 15:
        probe = await kim.send(m, "probe")
        try:
            await lee.next_event("msg", timeout=0.5,
                                 predicate=lambda f, i=probe["id"]: f["id"] == i)
            resumed = time.monotonic() - restarted
        except TimeoutError:
            continue
    assert resumed is not None, "fan-out did not resume within 15 s of Redis returning"
    print(f"\nRedis restart: fan-out resumed {resumed:.2f} s after Redis came back")
    assert await readyz_becomes(a.http_url, 200)
    synced = await lee.sync(cursor)
    got = {x["id"] for x in synced["msgs"]}
    assert set(during) <= got, "a message acked during the outage is missing from sync"


async def test_drain_moves_every_client_without_loss(
        redis_server: RedisServer, start_node: StartNode, users: Users) -> None:
    a = await start_node("--redis-url", redis_server.url)
    b = await start_node("--redis-url", redis_server.url, "--node-name", "B")
    m = await users.pair(a, "mona", b, "ned")
    others = [await users.pair(a, f"peer{i}", b, f"on_b{i}") for i in range(3)]
    mona = await users.connect(a, "mona")
    on_b = [await users.connect(b, "ned")] + [await users.connect(b, f"on_b{i}")
                                             for i in range(3)]
    cursors = [(await c.sync())["cursor"] for c in on_b]
    sender = asyncio.create_task(_send_for(mona, m, 1.5))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await b.stop(signal.SIGTERM)
    drained = time.monotonic() - started
    sent = await sender
    for client in on_b:
        reconnect = await client.next_event("reconnect")
        assert 50 <= reconnect["after_ms"] <= 300
        assert await client.wait_closed() == 1012
    print(f"\ndrain: {len(on_b)} clients handed off, node exited in {drained:.2f} s")
    ned = await RendezvousClient.connect(a.ws_url, a.token("ned"))
    users.clients.append(ned)
    page = await ned.sync(cursors[0])
    got = [x["id"] for x in page["msgs"] if x["m"] == m]
    assert got == sent and page["more"] is False
    assert len(others) == 3


async def readyz_becomes(http_url: str, status: int, within_s: float = 10) -> bool:
    """Whether GET /readyz answers `status` within `within_s` (the canary needs a few s)."""
    async with httpx.AsyncClient(base_url=http_url) as http:
        for _ in range(int(within_s / 0.2)):
            if (await http.get("/readyz")).status_code == status:
                return True
            await asyncio.sleep(0.2)
    return False


async def _send_for(client: RendezvousClient, m: str, seconds: float) -> list[int]:
    ids = []
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        ids.append((await client.send(m, f"n{len(ids)}"))["id"])
        await asyncio.sleep(0.02)
    return ids


async def test_workers_share_the_ports(
        redis_server: RedisServer, start_node: StartNode, users: Users) -> None:
    node = await start_node("--redis-url", redis_server.url, "--workers", "2")
    await node.wait_banner()  # the second worker
    clients = [await users.connect(node, f"w{i}") for i in range(16)]
    names = {c.welcome["node"] for c in clients}
    assert len(names) == 2, f"16 connections all landed on {names}"
    by_node: dict[str, list[RendezvousClient]] = {}
    for client in clients:
        by_node.setdefault(client.welcome["node"], []).append(client)
    x, y = (group[0] for group in by_node.values())
    m = await users.pair(node, x.user or "", node, y.user or "")
    ack = await x.send(m, "across workers")
    assert (await y.next_event("msg"))["id"] == ack["id"]
