"""The real CLI against real nodes: a smoke run, a failing threshold, and two nodes.

`main()` runs in a thread (it has its own event loop and worker processes) while the test's
loop serves the in-process node; the two-node run uses node processes sharing a real
redis-server, as the cluster suite does.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from loadtest.cli import main
from server.node import Node
from tests.cluster.conftest import cluster_env
from tests.conftest import SECRET, NodeFactory
from tests.node_process import SECRET as PROCESS_SECRET
from tests.node_process import NodeProcess
from tests.redis_servers import RedisServer

SMOKE = Path(__file__).resolve().parents[2] / "loadtest" / "scenarios" / "smoke.yaml"


def target(name: str, ws_port: int, http_port: int) -> str:
    return f"{name}=ws://127.0.0.1:{ws_port}/v1/ws,http://127.0.0.1:{http_port}"


async def run_cli(*args: str) -> int:
    return await asyncio.to_thread(main, ["--quiet", *args])


def secret_file(tmp_path: Path, secret: str) -> str:
    path = tmp_path / "secret"
    path.write_text(secret + "\n")
    return str(path)


def summary_of(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data


def assert_sane(summary: dict[str, Any]) -> None:
    counters = summary["counters"]
    assert counters["sent"] > 0
    assert counters["delivered"] == counters["sent"] == counters["acked"]
    assert counters["lost"] == 0
    assert counters.get("duplicated", 0) == 0
    assert counters["connects"] > 0 and counters["reconnects"] > 0
    for metric in ("delivery", "ack", "typing", "presence", "match", "connect",
                   "reconnect_sync", "http"):
        stats = summary["latency_ms"][metric]
        assert stats["count"] > 0, metric
        assert 0 <= stats["min"] <= stats["p50"] <= stats["p99"] <= stats["max"], metric


async def test_smoke_run_against_a_real_node_loses_nothing_and_writes_the_report(
        node_factory: NodeFactory, tmp_path: Path) -> None:
    node: Node = await node_factory()
    out = tmp_path / "out"
    code = await run_cli(str(SMOKE), "--target", target("solo", node.ws_port, node.http_port),
                         "--secret-file", secret_file(tmp_path, SECRET),
                         "--duration-scale", "0.3", "--out", str(out))
    assert code == 0
    summary = summary_of(out)
    assert_sane(summary)
    assert summary["latency_ms"]["delivery"]["nodes"].keys() == {"solo"}
    assert summary["counters_by_node"]["solo"]["delivered"] == summary["counters"]["delivered"]
    assert all(t["ok"] for t in summary["thresholds"])
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 4  # latency over time and percentile charts
    for heading in ("Latency over time", "Percentile distribution", "Thresholds"):
        assert heading in html
    assert "http://" not in html.split("<body", 1)[1].replace("http://127.0.0.1", "")
    assert (out / "latency.hlog").read_text().strip()


async def test_an_impossible_threshold_exits_1(node_factory: NodeFactory,
                                               tmp_path: Path) -> None:
    node: Node = await node_factory()
    scenario = tmp_path / "strict.yaml"
    scenario.write_text(f"""\
targets:
  - {{name: n, ws: "ws://127.0.0.1:{node.ws_port}/v1/ws",
     http: "http://127.0.0.1:{node.http_port}"}}
auth: {{secret: {SECRET}}}
personas:
  - flow: [connect, pair, {{send: {{rate: 10/s, count: 3}}}}]
phases: [{{users: 1, duration: 1s}}]
options: {{drain: 5s, grace: 1s}}
thresholds:
  - lost == 0
  - p50(delivery) < 1us
""")
    out = tmp_path / "out"
    assert await run_cli(str(scenario), "--out", str(out)) == 1
    summary = summary_of(out)
    assert summary["counters"]["delivered"] == summary["counters"]["sent"] > 0
    results = {t["rule"]: t["ok"] for t in summary["thresholds"]}
    assert results == {"lost == 0": True, "p50(delivery) < 1us": False}


async def test_a_bad_scenario_exits_2_naming_the_line(tmp_path: Path, capsys: Any) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(SMOKE.read_text().replace("users: 3 ", "users: lots "))
    assert await run_cli(str(scenario), "--secret-file", secret_file(tmp_path, SECRET)) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(scenario.read_text().splitlines(), 1)
                if "users: lots" in text)
    assert f"bad.yaml:{line}: phases[0].users: expected a whole number" in err


async def test_two_nodes_report_per_node_figures(redis_server: RedisServer,
                                                 tmp_path: Path) -> None:
    nodes = [NodeProcess(tmp_path / "data", "--redis-url", redis_server.url, "--node-name",
                         name, env=cluster_env()) for name in ("A", "B")]
    try:
        await asyncio.gather(*(n.start() for n in nodes))
        out = tmp_path / "out"
        code = await run_cli(
            str(SMOKE), "--target", target("east", nodes[0].ws_port, nodes[0].http_port),
            "--target", target("west", nodes[1].ws_port, nodes[1].http_port),
            "--secret-file", secret_file(tmp_path, PROCESS_SECRET), "--workers", "2",
            "--source-addresses", "127.0.0.1,127.0.0.2", "--duration-scale", "0.3",
            "--out", str(out))
    finally:
        await asyncio.gather(*(n.stop(signal.SIGKILL) for n in nodes if n.running))
    summary = summary_of(out)
    # p99 < 200 ms is the smoke test's business; here two nodes, Redis and two load workers
    # share the machine, so only the loss thresholds decide
    assert code in (0, 1)
    verdicts = {t["rule"]: t["ok"] for t in summary["thresholds"]}
    assert verdicts["lost == 0"] and verdicts["duplicated == 0"], verdicts
    assert_sane(summary)
    by_node = summary["counters_by_node"]
    assert by_node.keys() == {"east", "west"}
    assert sum(c.get("delivered", 0) for c in by_node.values()) == \
        summary["counters"]["delivered"]
    for metric in ("delivery", "connect"):
        nodes_seen = summary["latency_ms"][metric]["nodes"]
        assert nodes_seen.keys() == {"east", "west"}, metric
        assert sum(n["count"] for n in nodes_seen.values()) == \
            summary["latency_ms"][metric]["count"]
    assert "east" in (out / "report.html").read_text()
