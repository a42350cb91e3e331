"""`ReconnectingClient` (client/reconnecting.py) against real nodes: a server-side close
(4009) and a node restart (drain, `reconnect`, 1012, a new node on the same ports and data)
each end in a reconnect and a `sync` that brings exactly the missed messages, once each; a
`send` during the restart is stored once; closes that say "stop" stop it.

The client's waits go through a gated `sleep`: the test holds the gate while it sends what
the offline user must miss, so no timing decides what is missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from client import GaveUp, Listener, ReconnectingClient, RendezvousClient
from client.close_policy import close_action
from server.node import Node
from tests.conftest import Harness, NodeFactory
from tests.helpers import wait_until


class Gate:
    """A `sleep` for the client that records each delay and waits for the gate first."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.open = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.waiting.set()
        await self.open.wait()
        await asyncio.sleep(seconds)


class Reports(Listener):
    def __init__(self) -> None:
        self.msgs: list[tuple[Any, bool]] = []
        self.duplicates: list[Any] = []
        self.disconnects: list[int | None] = []
        self.reconnects = 0
        self.gave_up: BaseException | None = None

    def on_msg(self, frame: dict[str, Any], live: bool) -> None:
        self.msgs.append((frame.get("body"), live))

    def on_duplicate(self, frame: dict[str, Any], live: bool) -> None:
        self.duplicates.append(frame.get("id"))

    def on_disconnected(self, client: RendezvousClient, dropped: bool) -> None:
        self.disconnects.append(client.close_code)

    def on_reconnected(self, took_s: float) -> None:
        self.reconnects += 1

    def on_gave_up(self, error: BaseException | None) -> None:
        self.gave_up = error


def close_sockets_of(node: Node, user: str, code: int) -> int:
    sessions = [s for s in node.hub.sessions() if s.user == user]
    for session in sessions:
        session.close_now(code, "closed by the test")
    return len(sessions)


async def bodies(client: ReconnectingClient, n: int) -> list[str]:
    return [(await client.next_event("msg", timeout=15))["body"] for _ in range(n)]


async def test_a_server_close_4009_reconnects_and_syncs_the_missed_messages(
        rdv: Harness) -> None:
    match = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    gate = Gate()
    bob = ReconnectingClient(rdv.ws_url, lambda: rdv.token("bob"), sleep=gate)
    try:
        assert await bob.connect()
        await alice.send(match, "before")
        assert await bodies(bob, 1) == ["before"]
        cursor = bob.cursor
        assert close_sockets_of(rdv.node, "bob", 4009) == 1
        await asyncio.wait_for(gate.waiting.wait(), 10)  # bob is away, waiting to come back
        assert not bob.online and 0 <= gate.delays[0] < 0.5  # full jitter: [0, base)
        for text in ("one", "two", "three"):
            await alice.send(match, text)
        gate.open.set()
        assert await bodies(bob, 3) == ["one", "two", "three"]  # from the sync, in order
        assert bob.online and bob.cursor != cursor
        await alice.send(match, "live again")
        assert await bodies(bob, 1) == ["live again"]
        with pytest.raises(TimeoutError):  # each message once: no second copy follows
            await bob.next_event("msg", timeout=0.3)
    finally:
        await bob.close()


@pytest.mark.timeout(60)
async def test_a_node_restart_reconnects_after_the_nodes_delay_and_syncs(
        node_factory: NodeFactory, harness_for: Callable[[Node], Harness]) -> None:
    options: dict[str, Any] = {"reconnect_jitter_ms": (300, 600), "drain_timeout_s": 5.0}
    node = await node_factory(**options)
    rdv = harness_for(node)
    match = await rdv.pair("alice", "bob")
    ports = {"ws_port": node.ws_port, "http_port": node.http_port}
    gate = Gate()
    reports = Reports()
    bob = ReconnectingClient(rdv.ws_url, lambda: rdv.token("bob"), subprotocol="rdv.v1.json",
                             listener=reports, sleep=gate)
    try:
        assert await bob.connect()
        await node.stop()  # drain: `reconnect` with after_ms in 300..600, then 1012
        await asyncio.wait_for(gate.waiting.wait(), 10)
        assert reports.disconnects == [1012]
        assert 0.3 <= gate.delays[0] <= 0.6, gate.delays  # the node's delay, not a backoff
        new = await node_factory(data_dir=node.config.data_dir, **ports, **options)
        alice = await harness_for(new).connect("alice")
        for text in ("while", "you", "were", "away"):
            await alice.send(match, text)
        # a send from bob while he is offline waits for the reconnect, and is stored once
        sending = asyncio.create_task(bob.send(match, "back!", c="bob-1", timeout=30))
        gate.open.set()
        ack = await sending
        assert await wait_until(lambda: reports.reconnects == 1, 10)
        assert [b for b, live in reports.msgs if not live] == ["while", "you", "were", "away"]
        assert reports.duplicates == []
        again = await bob.send(match, "back!", c="bob-1")  # the same c: the same message
        assert again["id"] == ack["id"]
        history = await alice.history(match)
        assert [m.get("body") for m in history["msgs"]].count("back!") == 1
    finally:
        await bob.close()


async def test_a_drop_comes_back_after_the_given_delay_and_syncs(rdv: Harness) -> None:
    match = await rdv.pair("alice", "bob")
    alice = await rdv.connect("alice")
    gate = Gate()
    reports = Reports()
    bob = ReconnectingClient(rdv.ws_url, rdv.token("bob"), listener=reports, sleep=gate)
    try:
        assert await bob.connect()
        assert bob.drop(0.05)
        await asyncio.wait_for(gate.waiting.wait(), 10)
        assert gate.delays == [0.05] and reports.disconnects == [1006]
        await alice.send(match, "missed")
        gate.open.set()
        assert await wait_until(lambda: reports.reconnects == 1, 10)
        assert reports.msgs == [("missed", False)]
    finally:
        await bob.close()


@pytest.mark.parametrize("code", [4003, 4001])
async def test_closes_that_say_stop_stop_it(rdv: Harness, code: int) -> None:
    # 4003: forbidden; 4001 with a token string: there is no other token to try
    reports = Reports()
    bob = ReconnectingClient(rdv.ws_url, rdv.token("bob"), listener=reports)
    try:
        assert await bob.connect()
        close_sockets_of(rdv.node, "bob", code)
        assert await wait_until(lambda: reports.gave_up is not None, 10)
        assert isinstance(reports.gave_up, GaveUp) and reports.gave_up.code == code
        assert not bob.wanted and reports.reconnects == 0
        with pytest.raises(GaveUp):
            await bob.wait_online(1)
        assert [s for s in rdv.node.hub.sessions() if s.user == "bob"] == []
    finally:
        await bob.close()


async def test_an_expired_token_is_replaced_by_the_provider(rdv: Harness) -> None:
    issued: list[str] = []

    async def token() -> str:
        issued.append(rdv.token("bob", 3600 + len(issued)))  # a new token each time
        return issued[-1]

    reports = Reports()
    bob = ReconnectingClient(rdv.ws_url, token, listener=reports, backoff_base_s=0.01)
    try:
        assert await bob.connect()
        close_sockets_of(rdv.node, "bob", 4002)
        assert await wait_until(lambda: reports.reconnects == 1, 10)
        assert len(issued) == 2 and issued[0] != issued[1]
        assert (await bob.wait_online(5)).welcome["user"] == "bob"
    finally:
        await bob.close()


@pytest.mark.parametrize("code, reason, reconnect, window, new_token", [
    (1001, "", True, "restart", False),
    (1012, "node draining", True, "restart", False),
    (1006, "", True, "backoff", False),
    (1009, "", True, "backoff", False),
    (4009, "", True, "backoff", False),
    (None, None, True, "backoff", False),
    (4001, "", True, "backoff", True),
    (4001, "tokens revoked (log out everywhere): get a new token", True, "backoff", True),
    (1013, "storage unavailable", True, "backoff", False),  # the token could not be checked
    (4002, "", True, "backoff", True),
    (4003, "", False, "backoff", False),
    (4008, "rate limited", True, "slow", False),
    (4008, "max_connections_per_user (10) reached", False, "backoff", False),
])
def test_close_policy(code: int | None, reason: str | None, reconnect: bool, window: str,
                      new_token: bool) -> None:
    action = close_action(code, reason)
    assert (action.reconnect, action.window, action.new_token) == (reconnect, window,
                                                                   new_token)
    assert bool(action.why) == (not reconnect)

