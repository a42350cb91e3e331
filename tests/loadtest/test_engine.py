"""Sessions in the test's own loop against a real in-process node: what each step records.

These drive `Session` directly (no worker processes), so each check is about one behaviour:
loss accounting across a flap, dropped sends when the generator is late, chaos reconnects.
"""

from __future__ import annotations

import secrets

from loadtest.engine import WorkerContext, wait_until
from loadtest.scenario import Scenario, parse_scenario
from loadtest.session import Session
from server.node import Node
from tests.conftest import SECRET, NodeFactory


def scenario_for(node: Node, flow: str, options: str = "{}") -> Scenario:
    return parse_scenario(f"""\
targets:
  - {{name: solo, ws: "ws://127.0.0.1:{node.ws_port}/v1/ws",
     http: "http://127.0.0.1:{node.http_port}"}}
personas:
  - flow: {flow}
phases: [{{users: 1, duration: 1s}}]
options: {options}
""", "engine.yaml")


async def run_session(node: Node, flow: str, options: str = "{}") -> WorkerContext:
    ctx = WorkerContext(scenario_for(node, flow, options), SECRET,
                        run_id=secrets.token_hex(3), worker=0, seed=7)
    await Session(ctx, ctx.scenario.personas[0]).run()
    assert await wait_until(lambda: not ctx.tracker.lost(), 5.0)
    await ctx.close_transports()
    return ctx


async def test_a_flap_loses_nothing_and_measures_the_way_back(
        node_factory: NodeFactory) -> None:
    node = await node_factory()
    ctx = await run_session(node, """
      - connect
      - pair
      - send: {rate: 50/s, count: 10}
      - typing
      - expect: {type: typing, who: b, timeout: 2s}
      - flap: {who: b, offline: 200ms}
      - expect: {type: presence, who: a, timeout: 2s}
      - send: {rate: 50/s, count: 5}""")
    summary = ctx.recorder.summary()
    counters = summary["counters"]
    assert counters["sent"] == counters["acked"] == counters["delivered"] == 30
    assert counters["reconnects"] == counters["disconnects"] == 1
    assert "expect_timeouts" not in counters
    latency = summary["latency_ms"]
    assert latency["reconnect_sync"]["count"] == 1
    assert latency["typing"]["count"] == 1
    assert latency["presence"]["count"] == 2  # b away, then back, as seen by a
    assert latency["match"]["count"] == 2     # both sockets got `match`
    assert latency["delivery"]["nodes"]["solo"]["count"] == 30


async def test_sends_later_than_max_lag_are_dropped_not_sent(
        node_factory: NodeFactory) -> None:
    node = await node_factory()
    ctx = await run_session(node, "[connect, pair, {send: {rate: 200/s, count: 40}}]",
                            "{max_send_lag: 1us}")
    counters = ctx.recorder.summary()["counters"]
    dropped = counters.get("dropped_sends", 0)
    assert dropped > 0  # a timer never fires within 1 us of its due time
    assert counters.get("sent", 0) + dropped == 80  # 40 per user
    assert counters.get("delivered", 0) == counters.get("sent", 0)


async def test_chaos_cuts_the_socket_and_the_user_comes_back_and_syncs(
        node_factory: NodeFactory) -> None:
    node = await node_factory()
    ctx = await run_session(node, """
      - connect
      - pair
      - send: {rate: 50/s, count: 5, who: a}
      - chaos: {drop: 1.0, who: b}
      - send: {rate: 50/s, count: 5}""")
    counters = ctx.recorder.summary()["counters"]
    assert counters["chaos_drops"] == 1
    assert counters["reconnects"] == 1
    assert counters["disconnects"] == 1
    assert not [name for name in counters if name.startswith("errors.")]  # chaos is no error
    assert counters["sent"] == counters["delivered"] == 15


def two_targets(weight_a: int) -> Scenario:
    return parse_scenario(f"""\
targets:
  - {{name: a, ws: "ws://127.0.0.1:1/v1/ws", http: "http://127.0.0.1:2", weight: {weight_a}}}
  - {{name: b, ws: "ws://127.0.0.1:3/v1/ws", http: "http://127.0.0.1:4"}}
personas:
  - flow: [connect]
phases: [{{users: 1, duration: 1s}}]
""", "spread.yaml")


async def test_sessions_spread_over_targets_by_weight_from_the_first_picks() -> None:
    ctx = WorkerContext(two_targets(3), SECRET, run_id="r", worker=0)
    names = [ctx.pick_target().name for _ in range(8)]
    assert names.count("a") == 6 and names.count("b") == 2
    assert "b" in names[:4]  # a short run reaches both, not only by luck
    first = [WorkerContext(two_targets(1), SECRET, run_id="r", worker=w).pick_target().name
             for w in (0, 1)]
    assert first == ["a", "b"]  # two workers with one session each do not share a target


async def test_an_unsend_step_is_seen_by_the_partner_and_measured(
        node_factory: NodeFactory) -> None:
    node = await node_factory()
    ctx = await run_session(node, """
      - connect
      - pair
      - send: {rate: 50/s, count: 3}
      - unsend
      - expect: {type: unsent, who: b, timeout: 2s}
      - unsend: {who: both}""")
    summary = ctx.recorder.summary()
    counters = summary["counters"]
    assert counters["unsent"] == 3 and "expect_timeouts" not in counters
    assert counters["sent"] == counters["delivered"] == 6  # the unsent ones are not counted
    assert summary["latency_ms"]["unsend"]["count"] == 3
