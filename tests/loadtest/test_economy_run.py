"""The load tester drives the swipe economy: `swipe_burst` against a real node with quotas,
its quota refusals counted as answers, the undo, likes and deck filter steps timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.scenario import parse_scenario
from loadtest.yamlread import ScenarioError
from server.node import Node
from tests.conftest import SECRET, NodeFactory
from tests.loadtest.test_smoke_run import run_cli, secret_file, summary_of, target

SWIPE_BURST = Path(__file__).resolve().parents[2] / "loadtest" / "scenarios" / "swipe_burst.yaml"


async def test_swipe_burst_exercises_quotas_undo_likes_and_the_deck(
        node_factory: NodeFactory, tmp_path: Path) -> None:
    node: Node = await node_factory(likes_per_day=10, superlikes_per_day=1, swipe_burst=1000,
                                    swipes_per_s=1000.0)
    out = tmp_path / "out"
    code = await run_cli(str(SWIPE_BURST), "--target",
                         target("solo", node.ws_port, node.http_port),
                         "--secret-file", secret_file(tmp_path, SECRET),
                         "--duration-scale", "0.08", "--out", str(out))
    summary = summary_of(out)
    counters = summary["counters"]
    assert counters["http_requests"] > 0
    assert counters.get("refused.http_quota_exceeded", 0) > 0, counters  # past 10 likes
    # no error the server answered (a transport hiccup of the loaded machine, like httpx's
    # ReadError on a reused connection, is named by its exception class)
    answered = [k for k in counters if k.startswith("errors.http_")
                and not k.removeprefix("errors.http_")[:1].isupper()]
    assert answered == [], counters
    ops = _routes(node)
    for route in ("/v1/swipes/undo", "/v1/likes", "/v1/deck/filter", "/v1/me/quota"):
        assert ops.get(route, 0) > 0, (route, ops)
    # correctness thresholds hold; the latency ones are for a node with a machine of its
    # own (here the generator, the node and the test share one loop's process)
    verdicts = {t["rule"]: t["ok"] for t in summary["thresholds"]}
    assert verdicts["rate(http_errors) < 0.01"] and verdicts["lost == 0"], verdicts
    assert code in (0, 1)


def _routes(node: Node) -> dict[str, int]:
    """Requests the node answered, by route (its `rendezvous_http_requests_total`)."""
    totals: dict[str, int] = {}
    for line in node.metrics.render().decode().splitlines():
        if line.startswith("rendezvous_http_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            route = labels.split('route="', 1)[1].split('"', 1)[0]
            totals[route] = totals.get(route, 0) + int(float(value))
    return totals


@pytest.mark.parametrize(("step", "named"), [
    ("{op: deck_filter, candidates: 501}", "at most 500"),
    ("{op: swipe, candidates: 5}", "candidates goes with op: deck_filter"),
    ("{op: unsend}", "expected one of"),
])
def test_bad_economy_steps_are_named(step: str, named: str) -> None:
    text = SWIPE_BURST.read_text().replace("{op: deck_filter, candidates: 200}", step)
    with pytest.raises(ScenarioError, match=named):
        parse_scenario(text, "swipe_burst.yaml")
