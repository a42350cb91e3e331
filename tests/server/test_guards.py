"""Connect-time guards on a real embedded node (docs/operations.md, "Connection limits"): the
per-user connection cap, failed-auth throttling per client IP on the gateway and the HTTP
API, and presence damping. The cluster-wide versions are in
tests/cluster/test_cluster_guards.py."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from client import ConnectionRejected, RendezvousClient
from server.backends.guards import MemoryAuthThrottle, MemoryConnectionCap, MemoryFlapMarks
from tests.conftest import Harness, NodeFactory
from tests.helpers import wait_until


async def test_the_oldest_connections_past_the_cap_are_closed_with_4008(
        rdv: Harness, subprotocol: str) -> None:
    """Default cap 10: 13 sockets all get a welcome; the 3 oldest are closed with 4008 and
    a reason naming the setting; the 10 newest stay and still work."""
    assert rdv.node.config.max_connections_per_user == 10
    clients = [await rdv.connect("ann", subprotocol=subprotocol) for _ in range(13)]
    assert all(c.welcome["t"] == "welcome" for c in clients)
    for old in clients[:3]:
        assert await old.wait_closed() == 4008
        assert "max_connections_per_user (10)" in (old.close_reason or "")
    await asyncio.sleep(0.2)
    assert not any(c.closed for c in clients[3:])
    assert [(await c.ping())["t"] for c in clients[3:]] == ["pong"] * 10
    assert len(rdv.node.hub) == 10
    for c in clients[3:]:
        await c.close()
    await wait_until(lambda: len(rdv.node.hub) == 0)
    assert rdv.node.backends.connection_cap.count("ann") == 0  # type: ignore[attr-defined]


async def test_a_user_at_the_cap_does_not_affect_another_user(node_factory: NodeFactory
                                                              ) -> None:
    rdv = Harness(await node_factory(max_connections_per_user=2))
    try:
        bob = await rdv.connect("bob")
        anns = [await rdv.connect("ann") for _ in range(3)]
        assert await anns[0].wait_closed() == 4008
        assert not bob.closed and not anns[1].closed and not anns[2].closed
    finally:
        await rdv.close()


async def bad_upgrade(url: str, token: str = "not-a-jwt") -> int | str:
    """One upgrade with a bad token: the close code, or the HTTP status and Retry-After."""
    try:
        await RendezvousClient.connect(url, token)
    except ConnectionRejected as exc:
        if exc.status is not None:
            return exc.status
        assert exc.code is not None
        return exc.code
    raise AssertionError("a bad token was accepted")


async def test_failed_auths_from_one_ip_get_429_on_the_gateway_and_the_api(
        node_factory: NodeFactory, subprotocol: str) -> None:
    rdv = Harness(await node_factory(auth_failures_per_ip=5, auth_failure_window_s=30))
    try:
        codes = [await bad_upgrade(rdv.ws_url) for _ in range(5)]
        assert codes == [4001] * 5
        # past the limit even a good token is refused before it is verified, with Retry-After
        with pytest.raises(InvalidStatus) as refused:
            async with connect(rdv.ws_url, subprotocols=[subprotocol],  # type: ignore[list-item]
                               additional_headers={"Authorization":
                                                   f"Bearer {rdv.token('ann')}"}):
                pass
        response = refused.value.response
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 30
        api = rdv.http("ann")  # the HTTP API shares the count: the IP is blocked there too
        answer = await api.raw("GET", "/v1/matches")
        assert answer.status_code == 429
        assert answer.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(answer.headers["Retry-After"]) <= 30
    finally:
        await rdv.close()


async def test_failed_http_auths_are_throttled_too(node_factory: NodeFactory) -> None:
    rdv = Harness(await node_factory(auth_failures_per_ip=4))
    try:
        bad = rdv.http(None, token="bad-token")
        statuses = [(await bad.raw("GET", "/v1/matches")).status_code for _ in range(6)]
        assert statuses == [401] * 4 + [429] * 2
        assert (await rdv.http(None).raw("GET", "/healthz")).status_code == 200
        assert await bad_upgrade(rdv.ws_url) == 429
    finally:
        await rdv.close()


async def presence_events(client: RendezvousClient, within_s: float) -> list[dict[str, object]]:
    events = []
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            events.append(await client.next_event("presence", timeout=left))
        except TimeoutError:
            break
    return events


async def test_a_flapping_user_does_not_go_offline_and_online_for_their_matches(
        node_factory: NodeFactory, subprotocol: str) -> None:
    """150 connect/disconnect flaps: the match sees one online, and one offline a grace
    after the last disconnect, not 300 events. (The grace is long enough that a flap on a
    loaded test machine, one close to the next connect, stays well inside it.)"""
    rdv = Harness(await node_factory(presence_grace_s=2.5))
    try:
        await rdv.pair("ann", "bob")
        bob = await rdv.connect("bob", subprotocol=subprotocol)
        for _ in range(150):
            ann = await rdv.connect("ann", subprotocol=subprotocol)
            await ann.close()
        events = await presence_events(bob, 4.5)
        assert [(e["u"], e["on"]) for e in events] == [("ann", True), ("ann", False)]
        # and a real departure is still announced: once, about a grace after it
        ann = await rdv.connect("ann")
        assert (await bob.next_event("presence"))["on"] is True
        await ann.close()
        started = time.monotonic()
        offline = await bob.next_event("presence", timeout=6)
        assert offline["on"] is False and 2.3 <= time.monotonic() - started < 5.0
    finally:
        await rdv.close()


async def test_a_stopping_node_announces_pending_offlines(node_factory: NodeFactory) -> None:
    node = await node_factory(presence_grace_s=0.5)
    rdv = Harness(node)
    announced: list[tuple[str, bool]] = []

    async def record(user: str, online: bool, seen: int | None) -> None:
        announced.append((user, online))
    node.services.presence.damper.announce = record
    ann = await rdv.connect("ann")
    await ann.close()
    await wait_until(lambda: node.services.presence.damper.pending() == 1)
    await rdv.close()
    await node.stop()
    assert announced == [("ann", True), ("ann", False)]


# -- the in-process parts alone ------------------------------------------------------------
def test_memory_cap_evicts_the_oldest_and_never_the_new_one() -> None:
    cap = MemoryConnectionCap(2, "n")
    gone: list[tuple[str, str]] = []
    for s in ("a", "b", "c", "d"):
        cap.opened("u", s, gone.extend)
    assert gone == [("n", "a"), ("n", "b")]
    cap.closed("u", "c")
    cap.closed("u", "a")  # evicted already: no error
    assert cap.count("u") == 1


async def test_memory_throttle_blocks_for_the_rest_of_the_window() -> None:
    now = [100.0]
    throttle = MemoryAuthThrottle(3, 10.0, clock=lambda: now[0])
    assert [await throttle.failed("1.2.3.4") for _ in range(2)] == [0.0, 0.0]
    assert throttle.blocked("1.2.3.4") == 0.0
    now[0] += 4
    assert await throttle.failed("1.2.3.4") == pytest.approx(6.0)
    assert throttle.blocked("1.2.3.4") == pytest.approx(6.0)
    assert throttle.blocked("5.6.7.8") == 0.0
    now[0] += 6.1
    assert throttle.blocked("1.2.3.4") == 0.0
    assert await throttle.failed("1.2.3.4") == 0.0  # a new window
    assert await MemoryAuthThrottle(0, 10.0).failed("x") == 0.0  # 0: off


async def test_flap_marks_go_to_exactly_one_taker() -> None:
    marks = MemoryFlapMarks()
    await marks.mark("u", 5)
    assert await asyncio.gather(marks.take("u"), marks.take("u")) in ([True, False],
                                                                       [False, True])
    await marks.mark("u", 0.0)
    assert not await marks.take("u")  # expired
