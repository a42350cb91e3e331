"""Metrics move under load, and the dashboard and alert rules only use names a node exports.

A real node (embedded, and a cluster node on a real redis-server) gets matches, messages,
typing, receipts, presence queries, a bad token, a missing token, a rate limit and a store
outage; `/metrics` is scraped before and after over HTTP. The names in every PromQL expression
of deploy/grafana/dashboards/rendezvous.json and deploy/prometheus/alerts.yml are checked
against what the node exports, so the dashboard cannot drift from the code.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from client import ConnectionRejected, ServerError
from protocol.errors import ErrorCode
from server.metrics import (
    AUTH_FAILURE_REASONS,
    CLOSE_CODES,
    EXPORT_OUTCOMES,
    PRESENCE_OPS,
    PUSH_OUTCOMES,
    PUSH_SKIPPED,
    RATE_LIMITED_KINDS,
    REDIS_FALLBACKS,
    STORE_OPS,
    Metrics,
    TimedStore,
)
from server.node import Node
from storage.base import REPORT_REASONS
from storage.sqlite import SqliteStore
from tests.conftest import Harness, NodeFactory
from tests.helpers import wait_until
from tests.redis_servers import RedisServer

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy/grafana/dashboards/rendezvous.json"
ALERTS = REPO / "deploy/prometheus/alerts.yml"
PROMETHEUS = REPO / "deploy/prometheus/prometheus.yml"
METRIC_NAME = re.compile(r"\b(?:rendezvous|process)_[a-zA-Z0-9_]+")
SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
            "summary": ("", "_count", "_sum"), "info": ("",)}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(node: Node) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{node.http_port}/metrics")
    assert response.status_code == 200
    return response.text


def exported_names(text: str) -> set[str]:
    """Every series name a query may use, from the `# TYPE` lines (a labelled metric with no
    children yet has no sample lines, but it is exported)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.update(name + suffix for suffix in SUFFIXES[kind])
    return names


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(values: Samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and wanted <= ls)


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


async def drive_load(rdv: Harness) -> None:
    """Matches, messages both ways, typing, receipts, history, sync, presence, a bad and a
    missing token, a send rate limit, then a store outage."""
    match_ab = await rdv.pair("ann", "bob")
    match_ac = await rdv.pair("ann", "cyd")
    ann, bob = await rdv.connect("ann"), await rdv.connect("bob")
    cyd = await rdv.connect("cyd", subprotocol="rdv.v1.json")
    await ann.typing(match_ab)
    await bob.next_event("typing")
    acks = [await ann.send(match_ab, f"hello {i}") for i in range(3)]  # send_burst is 3
    for _ in acks:
        await bob.next_event("msg")
    with pytest.raises(ServerError) as limited:
        await ann.send(match_ab, "one too many")
    assert limited.value.code == "rate_limited"
    await cyd.send(match_ac, "hi ann")
    await ann.next_event("msg")
    await bob.read(match_ab, acks[-1]["id"], ack=True)
    await bob.history(match_ab)
    await bob.sync()
    await ann.presence()
    with pytest.raises(ConnectionRejected):
        await rdv.connect("eve", token=rdv.token("eve")[:-4] + "AAAA")  # bad signature
    response = await rdv.http(None).raw("GET", "/v1/matches")  # no token
    assert response.status_code == 401
    await rdv.node.store.close()  # the store goes away under the node
    with pytest.raises(ServerError) as down:
        await bob.send(match_ab, "while the store is down")
    assert down.value.code == "unavailable"


@pytest.fixture(params=["embedded", "redis"])
async def loaded(request: pytest.FixtureRequest, node_factory: NodeFactory) -> Any:
    """(mode, metrics text before, during and after) of a node that served `drive_load`
    and then drained with its clients connected."""
    overrides: dict[str, Any] = {"send_burst": 3, "sends_per_s": 0.1}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        overrides.update(redis_url=server.url, node_id=7)
    node = await node_factory(**overrides)
    rdv = Harness(node)
    try:
        before = await scrape(node)
        await drive_load(rdv)
        await wait_until(lambda: len(node.hub) == 3)
        during = await scrape(node)
        await node.drain()
        after = await scrape(node)
    finally:
        await rdv.close()
    return request.param, before, during, after


async def test_metrics_move_under_load(loaded: Any) -> None:
    mode, before_text, during_text, after_text = loaded
    before, during, after = samples(before_text), samples(during_text), samples(after_text)

    def grew(name: str, **labels: str) -> None:
        assert total(after, name, **labels) > total(before, name, **labels), (name, labels)

    assert total(during, "rendezvous_connections") == 3
    assert total(after, "rendezvous_connections") == 0
    for kind in ("send", "typing", "read", "history", "sync", "presencequery"):
        grew("rendezvous_frames_in_total", type=kind)
    for kind in ("welcome", "ack", "msg", "typing", "history", "sync", "presence", "error",
                 "reconnect"):
        grew("rendezvous_frames_out_total", type=kind)
    grew("rendezvous_send_to_ack_seconds_count")
    grew("rendezvous_send_to_ack_seconds_bucket", le="+Inf")
    grew("rendezvous_message_delivery_seconds_count")
    for op in ("save_message", "get_match", "record_swipe", "create_match", "history",
               "conversations", "advance_cursor"):
        grew("rendezvous_store_op_seconds_count", op=op)
    grew("rendezvous_store_errors_total", op="save_message")
    grew("rendezvous_matches_created_total")
    grew("rendezvous_rate_limited_total", kind="send")
    grew("rendezvous_auth_failures_total", reason="signature")
    grew("rendezvous_auth_failures_total", reason="missing")
    grew("rendezvous_errors_total", code="rate_limited")
    grew("rendezvous_errors_total", code="unavailable")
    grew("rendezvous_http_requests_total", route="/v1/swipes", status="200")
    grew("rendezvous_closes_total", code="4001")
    for op in ("connect", "disconnect", "status"):
        grew("rendezvous_presence_ops_total", op=op)
    assert total(after, "rendezvous_draining") == 1
    assert total(before, "rendezvous_draining") == 0
    assert ("rendezvous_drain_sessions_left", frozenset()) in after
    assert total(during, "rendezvous_send_queue_frames") >= 0
    build = [labels for (name, labels), _ in after.items() if name == "rendezvous_build_info"]
    assert len(build) == 1 and dict(build[0])["node"] and dict(build[0])["version"]
    if mode == "redis":
        assert dict(build[0])["node_id"] == "7"
        grew("rendezvous_broker_publish_seconds_count")
        assert total(during, "rendezvous_broker_subscription_healthy") == 1


def test_every_store_operation_is_timed(tmp_path: Path) -> None:
    # the wrapper times what the Store protocol declares: a new operation is timed too
    assert {"save_message", "history", "get_match", "put_device", "ping"} <= set(STORE_OPS)
    inner = SqliteStore(tmp_path / "unopened.db")
    timed = vars(TimedStore(inner, Metrics()))
    for op in STORE_OPS:  # each one a wrapper of the operation of the same name
        assert op in timed, op
        assert timed[op].__wrapped__ == getattr(inner, op), op


async def test_dashboard_and_alerts_use_only_exported_names(node: Node) -> None:
    exported = exported_names(await scrape(node))
    used: dict[str, list[str]] = defaultdict(list)
    for expr in dashboard_exprs() + [rule["expr"] for rule in alert_rules()]:
        for name in METRIC_NAME.findall(expr):
            used[name].append(expr)
    assert len(used) >= 20, sorted(used)  # the parser found the dashboard's metrics
    missing = {name: exprs[0] for name, exprs in used.items() if name not in exported}
    assert not missing, f"not exported by a node: {missing}"


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_alert_rules_structure() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    names = []
    for group in doc["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            assert re.fullmatch(r"\d+[smh]", str(rule.get("for", "0m")))
            assert rule["labels"]["severity"] in ("page", "warn")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    for topic in ("NodeDown", "NoBrokerSubscription", "SendToAck", "StoreErrors", "StoreSlow",
                  "PushConfig", "SlowConsumers", "AuthFailures", "DrainStuck", "HttpServerErrors",
                  "MemoryHigh", "PushQueueBacklog"):
        assert any(topic in name for name in names), topic


def test_prometheus_config_structure() -> None:
    doc = yaml.safe_load(PROMETHEUS.read_text())
    assert doc["global"]["scrape_interval"]
    assert "/etc/prometheus/alerts.yml" in doc["rule_files"]
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    targets = [t for sc in jobs["rendezvous"]["static_configs"] for t in sc["targets"]]
    assert targets == ["node1:8081", "node2:8081"]
    # the alerts select this job by name
    assert 'job="rendezvous"' in ALERTS.read_text()


async def test_a_fresh_node_exports_every_known_counter_at_zero(node: Node) -> None:
    """Panels and rate() have a series before the first close, refusal or push."""
    values = samples(await scrape(node))
    expected = [("rendezvous_closes_total", {"code": str(int(code))}) for code in CLOSE_CODES]
    expected += [("rendezvous_errors_total", {"code": str(code)}) for code in ErrorCode]
    expected += [("rendezvous_rate_limited_total", {"kind": kind})
                 for kind in RATE_LIMITED_KINDS]
    expected += [("rendezvous_auth_failures_total", {"reason": reason})
                 for reason in AUTH_FAILURE_REASONS]
    expected += [("rendezvous_redis_fallbacks_total", {"what": what}) for what in REDIS_FALLBACKS]
    expected += [("rendezvous_presence_ops_total", {"op": op}) for op in PRESENCE_OPS]
    expected += [("rendezvous_push_skipped_total", {"reason": reason})
                 for reason in PUSH_SKIPPED]
    expected += [("rendezvous_exports_total", {"outcome": outcome})
                 for outcome in EXPORT_OUTCOMES]
    expected += [("rendezvous_reports_total", {"reason": reason}) for reason in REPORT_REASONS]
    expected += [("rendezvous_pushes_total", {"provider": "any", "outcome": "abandoned"}),
                 ("rendezvous_push_shed_total", {"provider": "queue"})]
    for provider in {p.provider for p in node.backends.pushers.values()}:
        expected += [("rendezvous_pushes_total", {"provider": provider, "outcome": str(o)})
                     for o in PUSH_OUTCOMES]
        expected.append(("rendezvous_push_shed_total", {"provider": provider}))
    assert len(expected) > 50
    missing = [(name, labels) for name, labels in expected
               if values.get((name, frozenset(labels.items()))) != 0.0]
    assert not missing, missing


def test_the_known_label_values_cover_the_code() -> None:
    """Every literal label value the code counts is in the list initialised at start-up."""
    source = "\n".join(path.read_text() for folder in ("server", "push")
                       for path in sorted((REPO / folder).rglob("*.py")))
    found = {
        "rate_limited": set(re.findall(r'rate_limited_by\["(\w+)"\]', source)),
        "push_skipped": set(re.findall(r'_skip\("(\w+)"\)', source)),
        "redis_fallbacks": set(re.findall(r'Outage\("(\w+)"', source))
        | set(re.findall(r'redis_fallbacks\.labels\("(\w+)"\)', source)),
        "auth_failures": set(re.findall(r'AuthError\("(\w+)"', source)),
        "presence_ops": set(re.findall(r'_ops\.labels\("(\w+)"\)', source)),
        "exports": set(re.findall(r'exports_by\["(\w+)"\]', source)),
    }
    known = {"rate_limited": set(RATE_LIMITED_KINDS), "push_skipped": set(PUSH_SKIPPED),
             "redis_fallbacks": set(REDIS_FALLBACKS),
             "auth_failures": set(AUTH_FAILURE_REASONS), "presence_ops": set(PRESENCE_OPS),
             "exports": set(EXPORT_OUTCOMES)}
    for metric, values in found.items():
        assert values, metric  # the pattern still finds the call sites
        assert values <= known[metric], (metric, values - known[metric])


async def test_a_node_exports_process_and_loop_lag_metrics(node: Node) -> None:
    values = samples(await scrape(node))
    assert total(values, "process_resident_memory_bytes") > 1_000_000
    assert total(values, "process_open_fds") > 0
    assert ("process_cpu_seconds_total", frozenset()) in values
    assert ("process_max_fds", frozenset()) in values

    async def lag_observed() -> bool:
        return total(samples(await scrape(node)), "rendezvous_event_loop_lag_seconds_count") > 0
    await wait_until(lag_observed, timeout=5)
