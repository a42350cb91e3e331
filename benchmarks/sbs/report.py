"""The table and the JSON: medians over rounds, and ratios computed within each round.

Figures on a shared machine drift from minute to minute; a ratio taken between two servers
measured in the same round, a few seconds apart, drifts much less. So each round's msg/s is
divided by the bare relay's and python-socketio's of that same round and load, and the
table shows the median of those ratios next to the median raw figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from benchmarks.sbs.servers import SERVERS, sio_baseline


def _median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Per record: msg/s over the relay's and the matching python-socketio row's, same round
    and load."""
    index = {(r["round"], r["server"], r["load"]): r["msg_per_s"] for r in records}
    for r in records:
        for key, base in (("x_relay", "relay"), ("x_sio", sio_baseline(r["server"]))):
            other = index.get((r["round"], base, r["load"]))
            r[key] = r["msg_per_s"] / other if other else None


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per server and load, in the order first measured."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["server"], r["load"]), []).append(r)
    rows = []
    for (server, load), rs in groups.items():
        rates = [r["msg_per_s"] for r in rs]
        rows.append({
            "server": server, "title": SERVERS[server][0], "load": load, "rounds": len(rs),
            "msg_per_s": _median(rates), "msg_per_s_min": min(rates),
            "msg_per_s_max": max(rates),
            "p50_ms": _median(r.get("p50_ms") for r in rs),
            "p99_ms": _median(r.get("p99_ms") for r in rs),
            "cpu_s_per_1k": _median(r.get("cpu_s_per_1k") for r in rs),
            "x_relay": _median(r.get("x_relay") for r in rs),
            "x_sio": _median(r.get("x_sio") for r in rs),
            "lost": sum(r.get("lost", 0) for r in rs),
            "load_cores": _median(r.get("load_cores") for r in rs),
            "capped": any(r.get("capped") for r in rs),
        })
    return rows


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'server':<40} {'load':<11} {'msg/s':>8} {'range':>13} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'CPU s/1k':>8} {'x relay':>7} {'x sio':>6} {'lost':>5} "
            f"{'load cores':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rate = _num(r["msg_per_s"], ",.0f") + ("+" if r["capped"] else "")
        span = f"{r['msg_per_s_min']:,.0f}-{r['msg_per_s_max']:,.0f}"
        lines.append(
            f"{r['title']:<40} {r['load']:<11} {rate:>8} {span:>13} "
            f"{_num(r['p50_ms'], '.1f'):>7} {_num(r['p99_ms'], '.1f'):>7} "
            f"{_num(r['cpu_s_per_1k'], '.3f'):>8} {_num(r['x_relay'], '.2f'):>7} "
            f"{_num(r['x_sio'], '.2f'):>6} {r['lost']:>5} {_num(r['load_cores'], '.2f'):>10}")
    return "\n".join(lines)


LEGEND = """\
msg/s: closed rows: messages delivered per second; open rows: the highest arrival rate held
  with p99 <= 50 ms and no loss (+: the top step held, the limit is higher). Median of rounds.
range: lowest-highest over rounds. p50/p99: send -> delivery at the receiver.
CPU s/1k: CPU seconds of every server-side process (nodes, redis-server, JVM) per 1,000 msgs.
x relay / x sio: msg/s over the bare relay's / python-socketio's (1 process for single
  servers, 2 processes for clustered ones), same round and load; median of rounds.
lost: sent in the window, not delivered within 3 s after it (late or lost), all rounds.
load cores: CPU the load generator used (all its processes), in cores."""
