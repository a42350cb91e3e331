"""One measured window and the interleaved rounds around it.

The orchestrator hands the load processes a start time a moment ahead, samples the server
side's CPU at the start and end of the window (so the set-up, warm-up and drain are not
billed), then merges what the load processes saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.sbs.load import LoadPool, Plan
from benchmarks.sbs.procs import cpu_seconds, percentile_ms
from benchmarks.sbs.profile import Profiler
from benchmarks.sbs.servers import Cassandra, Target, launch

P99_LIMIT_MS = 50.0
MIN_OPEN_RATE = 100.0  # the lowest step tried when even the first one fails
SETTLE_MAX_S = 30.0  # after a failed step: the longest wait for the server to go idle
IDLE_CORES = 0.1  # "idle": the server side uses less than this much of a core
LEAD_S = 0.3  # from handing out a window to its start: every process is waiting by then


@dataclass(frozen=True)
class Options:
    servers: list[str]
    pairs: list[int]
    seconds: float
    rounds: int
    warmup: float
    open_pairs: int | None  # None: no open model
    open_rates: list[float]
    open_seconds: float
    load_processes: int
    profile_dir: Path | None = None  # py-spy profiles and thread CPU of closed windows


def plans(target: Target, pairs: int, processes: int) -> list[tuple[Any, ...]]:
    """Whole pairs per process: pair i goes to process i % processes."""
    return [("connect", Plan(target.wire, target.send_url, target.recv_url,
                             [(i, target.conversations[i]) for i in range(w, pairs, processes)]))
            for w in range(processes)]


def window(pool: LoadPool, target: Target, seconds: float, command: str,
           *args: float, profiler: Profiler | None = None) -> dict[str, Any]:
    """Run one window on every load process; the merged figures."""
    start_at = time.time() + LEAD_S
    pool.send([(command, start_at, seconds, *args)] * len(pool.conns))
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = cpu_seconds(target.pids)
    if profiler is not None:
        profiler.begin(seconds)
    time.sleep(max(0.0, start_at + seconds - time.time()))
    server_cpu = cpu_seconds(target.pids) - cpu0
    threads = profiler.end() if profiler is not None else None
    parts = pool.gather()
    latencies = sorted(x for part in parts for x in part["latencies"])
    total = {k: sum(p[k] for p in parts) for k in ("sent", "acked", "delivered", "errors",
                                                    "lost", "dropped", "cpu_s")}
    codes: dict[str, int] = {}
    for part in parts:
        for code, n in part["close_codes"].items():
            codes[code] = codes.get(code, 0) + n
    delivered = total["delivered"]
    load_cpu = total.pop("cpu_s")
    return {
        **total, "seconds": seconds, "msg_per_s": delivered / seconds,
        "p50_ms": percentile_ms(latencies, 0.50), "p99_ms": percentile_ms(latencies, 0.99),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "server_cpu_s": server_cpu,
        "cpu_s_per_1k": server_cpu / (delivered / 1000) if delivered else None,
        "load_cpu_s": load_cpu, "load_cores": load_cpu / seconds,
        "close_codes": codes,
        "lag_max_ms": max((p.get("lag_max_s", 0.0) for p in parts), default=0.0) * 1000,
        **({"threads": threads} if threads is not None else {}),
    }


def settle(target: Target) -> None:
    """After a step the server could not hold, wait (bounded) until it has worked off its
    backlog, seen as its CPU falling idle, so the next step does not inherit the queue."""
    deadline = time.monotonic() + SETTLE_MAX_S
    before = cpu_seconds(target.pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(target.pids)
        if now - before < IDLE_CORES * 0.5:
            return
        before = now


def closes(result: dict[str, Any]) -> str:
    """Sockets the server closed (or dropped) during a window, by close code."""
    codes = result["close_codes"]
    return f", server closed {codes} (code: sockets), errors {result['errors']}" if codes or \
        result["errors"] else ""


def sustained(result: dict[str, Any], rate: float) -> bool:
    return bool(result["lost"] == 0 and result["errors"] == 0
                and result["p99_ms"] <= P99_LIMIT_MS
                and result["delivered"] >= 0.99 * rate * result["seconds"])


def open_steps(pool: LoadPool, target: Target, opts: Options,
               say: Callable[[str], None]) -> dict[str, Any]:
    """Raise the arrival rate step by step until p99 passes the limit (or loss), then try
    once halfway between the last good rate and the first bad one. If the first step fails,
    halve it (down to MIN_OPEN_RATE) until one holds: a busy machine still gets a figure."""
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    n = len(pool.conns)

    def step(rate: float) -> bool:
        nonlocal best
        result = window(pool, target, opts.open_seconds, "open", rate / n)
        result["rate"] = rate
        result["sustained"] = ok = sustained(result, rate)
        steps.append(result)
        say(f"    open {rate:>7.0f}/s: p99 {result['p99_ms']:.1f} ms, lost {result['lost']}"
            f"{closes(result)} -> {'ok' if ok else 'not sustained'}")
        if ok and (best is None or rate > best["rate"]):
            best = result
        if not ok:
            settle(target)
        return ok

    failed_at = None
    for rate in opts.open_rates:
        if not step(rate):
            failed_at = rate
            break
    rate = opts.open_rates[0] / 2
    while best is None and rate >= MIN_OPEN_RATE:  # even the first step failed: go down
        failed_at = rate * 2
        step(rate)
        rate /= 2
    if failed_at is not None and best is not None and failed_at > best["rate"] * 1.2:
        step((best["rate"] + failed_at) / 2)
    out = dict(best) if best else {"rate": 0.0, "p50_ms": None, "p99_ms": None,
                                   "cpu_s_per_1k": None, "lost": steps[0]["lost"],
                                   "errors": steps[0]["errors"]}
    out["steps"] = steps
    out["msg_per_s"] = out["rate"]
    out["capped"] = failed_at is None  # every rate held: the real limit is higher
    return out


def run_rounds(opts: Options, pool: LoadPool, cassandra: Cassandra | None,
               say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Round 1: every server; round 2: every server again; ... One record per window."""
    records: list[dict[str, Any]] = []
    largest = max([*opts.pairs, opts.open_pairs or 0])
    for rnd in range(1, opts.rounds + 1):
        for name in opts.servers:
            say(f"round {rnd}: {name}")
            with launch(name, largest, cassandra) as target:
                loads = [(p, "closed") for p in opts.pairs]
                if opts.open_pairs:
                    loads.append((opts.open_pairs, "open"))
                connected = None
                for pairs, kind in loads:
                    if connected != pairs:
                        if connected is not None:
                            pool.broadcast("disconnect")
                        pool.call(plans(target, pairs, len(pool.conns)))
                        connected = pairs
                        if opts.warmup > 0:
                            window(pool, target, opts.warmup, "closed")
                    if kind == "closed":
                        profiler = None if opts.profile_dir is None else Profiler(
                            opts.profile_dir, f"r{rnd}-{name}-closed{pairs}", target)
                        result = window(pool, target, opts.seconds, "closed",
                                        profiler=profiler)
                        if profiler is not None:
                            say(profiler.describe(result.get("threads") or {}))
                        say(f"    closed {pairs}: {result['msg_per_s']:.0f} msg/s, p99 "
                            f"{result['p99_ms']:.1f} ms, lost {result['lost']}"
                            f"{closes(result)}")
                    else:
                        result = open_steps(pool, target, opts, say)
                    records.append({"round": rnd, "server": name, "load": f"{kind} {pairs}",
                                    "kind": kind, "pairs": pairs, **result})
                pool.broadcast("disconnect")
    return records
