"""The alert rules, checked and evaluated by Prometheus' own `promtool` (Debian's `prometheus`
package; `make system-deps` installs it): a healthy single embedded node must page nobody.

The node's real `/metrics` is scraped and fed to `promtool test rules` as constant series
(with `up` 1, as Prometheus would add), and every alert of deploy/prometheus/alerts.yml is
evaluated after 10 minutes of them: none may fire. This is how
`RendezvousNoBrokerSubscription` paged on single nodes, whose gauge was 0 without Redis.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from server.node import Node
from tests.ops.test_metrics_queries import ALERTS, alert_rules, scrape

LABELS = {"job": "rendezvous", "instance": "node1:8081"}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make system-deps` installs Debian's prometheus"
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def series_name(name: str, labels: dict[str, str]) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return name + "{" + ", ".join(f"{k}={quoted(v)}" for k, v in sorted(labels.items())) + "}"


def input_series(text: str) -> list[dict[str, str]]:
    """Each sample of a scrape as a series that keeps its value for 15 minutes."""
    out = [{"series": series_name("up", LABELS), "values": "1x15"}]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.append({"series": series_name(sample.name, {**sample.labels, **LABELS}),
                        "values": f"{sample.value!r}x15"})
    return out


def test_promtool_checks_the_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_healthy_single_node_fires_no_alert(node: Node, tmp_path: Path) -> None:
    assert not node.config.clustered
    text = await scrape(node)
    assert "rendezvous_broker_subscription_healthy 1.0" in text  # as /readyz says
    names = [rule["alert"] for rule in alert_rules()]
    assert "RendezvousNoBrokerSubscription" in names
    tests = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": input_series(text),
                        "alert_rule_test": [{"eval_time": "10m", "alertname": name,
                                             "exp_alerts": []} for name in names]}]}
    path = tmp_path / "healthy_node_test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = await asyncio.to_thread(run_promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


FIRING = {  # an alert, and series (promtool's notation, one value a minute) that fire it
    "RendezvousNoBrokerSubscription": {"rendezvous_broker_subscription_healthy": "0x25"},
    "RendezvousHttpServerErrors": {  # 1 a second of 11 fail
        'rendezvous_http_requests_total{route="/v1/matches", status="503"}': "0+60x25",
        'rendezvous_http_requests_total{route="/v1/matches", status="200"}': "0+600x25"},
    "RendezvousMemoryHigh": {"process_resident_memory_bytes": "3e9x25"},
    "RendezvousPushQueueBacklog": {"rendezvous_push_queue_depth": "60000x25"},
}


@pytest.mark.parametrize("alert", sorted(FIRING))
def test_an_unhealthy_node_fires_the_alert(alert: str, tmp_path: Path) -> None:
    """The evaluation can fail: series that should fire `alert` do (promtool reports the
    alert it did not expect)."""
    series = []
    for name, values in FIRING[alert].items():
        base, _, rest = name.partition("{")
        labels = dict(LABELS)
        for pair in filter(None, rest.rstrip("}").split(", ")):
            key, _, value = pair.partition("=")
            labels[key] = value.strip('"')
        series.append({"series": series_name(base, labels), "values": values})
    tests = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": series,
                        "alert_rule_test": [{"eval_time": "20m", "alertname": alert,
                                             "exp_alerts": []}]}]}
    path = tmp_path / "unhealthy_node_test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = run_promtool("test", "rules", str(path))
    assert result.returncode != 0, f"{alert} did not fire"
    assert alert in result.stdout + result.stderr
