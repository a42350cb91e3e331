"""`rendezvous-load SCENARIO`: run a load scenario against Rendezvous nodes.

Exit codes: 0 every threshold passed, 1 a threshold failed, 2 a bad scenario file or bad
usage, 3 the run itself broke (a worker process died). See docs/loadtest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from loadtest.measure import Recorder
from loadtest.report import LiveProgress, print_summary, write_outputs
from loadtest.scenario import Scenario, ScenarioError, Target, load_scenario
from loadtest.thresholds import evaluate
from loadtest.workers import (
    Overrides,
    Plan,
    WorkerFailed,
    WorkerState,
    addresses_for,
    run_workers,
    start_time,
)

EXIT_OK, EXIT_THRESHOLD, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 3
MAX_SOURCE_ADDRESSES = 256


class UsageError(ValueError):
    """A bad command-line value; the message names the flag."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rendezvous-load",
        description="Run a load scenario (YAML) against Rendezvous nodes: chat delivery "
                    "latency from the intended send time, fan-out, loss, reconnects. Writes "
                    "summary.json, latency.hlog and report.html; thresholds set the exit code "
                    "(0 pass, 1 a threshold failed, 2 bad scenario or usage, 3 run broke).",
        epilog="Scenario format and figures: docs/loadtest.md. Shipped scenarios: "
               "loadtest/scenarios/{smoke,steady_chat,swipe_burst,reconnect_storm,"
               "idle_capacity}.yaml",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("scenario", type=Path, help="the scenario file (YAML)")
    add("--workers", type=int, default=1, metavar="N",
        help="load-generator processes; users are split among them")
    add("--source-addresses", default="", metavar="LIST",
        help="local addresses sockets bind to, round-robin: 127.0.0.1,127.0.0.2 or a CIDR "
             "127.0.0.0/28 or a range 127.0.0.1-127.0.0.8 (each address gives ~28k ports)")
    add("--target", action="append", default=[], metavar="[NAME=]WS_URL,HTTP_URL",
        help="a node to load instead of the scenario's targets (repeat for several)")
    add("--duration-scale", type=float, default=1.0, metavar="X",
        help="multiply every phase duration and chaos time by X")
    add("--users", type=int, default=None, metavar="N",
        help="scale closed phases so the largest has N concurrent sessions")
    add("--secret-file", default=None, metavar="FILE",
        help="read the token secret from FILE (instead of the scenario's auth)")
    add("--out", type=Path, default=None, metavar="DIR",
        help="output directory (default ./loadtest-results/<scenario>-<time>)")
    add("--check", action="store_true", help="validate the scenario and exit")
    add("--quiet", action="store_true", help="no live progress lines")
    return parser


def parse_targets(values: Sequence[str]) -> tuple[Target, ...]:
    targets: list[Target] = []
    for i, value in enumerate(values):
        name, sep, urls = value.partition("=")
        if not sep or "://" in name:
            name, urls = f"node-{i + 1}", value
        ws, _, http = urls.partition(",")
        if not ws.startswith(("ws://", "wss://")) or not http.startswith(("http://",
                                                                           "https://")):
            raise UsageError(f"--target {value!r}: expected [NAME=]ws://host:port/v1/ws,"
                             "http://host:port")
        targets.append(Target(name, ws, http.rstrip("/")))
    return tuple(targets)


def parse_addresses(value: str) -> list[str]:
    """`a,b,c`, a CIDR (`127.0.0.0/28`: its hosts) or a range (`127.0.0.1-127.0.0.8`)."""
    out: list[str] = []
    for part in (p.strip() for p in value.split(",") if p.strip()):
        try:
            if "/" in part:
                net = ipaddress.ip_network(part, strict=False)
                hosts = list(net.hosts()) or [net.network_address]
                out.extend(str(h) for h in hosts[:MAX_SOURCE_ADDRESSES])
            elif "-" in part:
                low, high = (ipaddress.ip_address(x.strip()) for x in part.split("-", 1))
                if int(high) < int(low) or int(high) - int(low) >= MAX_SOURCE_ADDRESSES:
                    raise ValueError("bad range")
                out.extend(str(ipaddress.ip_address(n)) for n in range(int(low), int(high) + 1))
            else:
                out.append(str(ipaddress.ip_address(part)))
        except ValueError:
            raise UsageError(f"--source-addresses: {part!r} is not an address, a CIDR or a "
                             "range like 127.0.0.1-127.0.0.8") from None
    return out


def prepare(args: argparse.Namespace) -> tuple[Scenario, Overrides, str, list[str]]:
    """Everything validated before a process starts; `--check` needs no secret."""
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.duration_scale <= 0:
        raise UsageError("--duration-scale must be positive")
    if args.users is not None and args.users < 1:
        raise UsageError("--users must be at least 1")
    overrides = Overrides(targets=parse_targets(args.target),
                          duration_scale=args.duration_scale, users=args.users,
                          secret_file=args.secret_file)
    addresses = parse_addresses(args.source_addresses)
    scenario = overrides.apply(load_scenario(args.scenario))
    secret = "" if args.check else scenario.auth.resolve_secret()
    return scenario, overrides, secret, addresses


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        scenario, overrides, secret, addresses = prepare(args)
    except (ScenarioError, UsageError) as exc:
        print(f"rendezvous-load: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        print(f"{args.scenario}: ok: {len(scenario.targets)} target(s), "
              f"{len(scenario.personas)} persona(s), {len(scenario.phases)} phase(s), "
              f"{scenario.duration_s:g}s, {len(scenario.thresholds)} threshold(s)")
        return EXIT_OK
    run_id = secrets.token_hex(3)
    start_at = start_time()
    plans = [Plan(scenario_path=str(args.scenario.resolve()), overrides=overrides,
                  secret=secret, run_id=run_id, worker=i, workers=args.workers,
                  start_at=start_at, source_addresses=addresses_for(i, addresses))
             for i in range(args.workers)]
    out_dir = args.out or Path("loadtest-results") / (
        f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    progress_out: TextIO = open(os.devnull, "w") if args.quiet else sys.stderr  # noqa: SIM115
    progress = LiveProgress(progress_out)
    try:
        return _run(args, scenario, plans, out_dir, progress, addresses)
    finally:
        progress.close()
        if progress_out is not sys.stderr:
            progress_out.close()


def _run(args: argparse.Namespace, scenario: Scenario, plans: list[Plan], out_dir: Path,
         progress: LiveProgress, addresses: list[str]) -> int:
    print(f"rendezvous-load: {scenario.name}: {scenario.duration_s:g}s of load on "
          f"{', '.join(t.name for t in scenario.targets)} from {args.workers} worker(s)"
          f"{f' and {len(addresses)} source address(es)' if addresses else ''}",
          file=sys.stderr)

    def on_tick(states: list[WorkerState]) -> None:
        snapshots = [s.snapshot for s in states if s.snapshot is not None]
        if snapshots:
            phases = {s.phase for s in states if s.phase}
            progress.update(Recorder.merge(snapshots), phase=",".join(sorted(phases)),
                            users=sum(s.users for s in states))

    try:
        states = asyncio.run(run_workers(plans, on_tick))
    except WorkerFailed as exc:
        print(f"rendezvous-load: the run broke: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    except KeyboardInterrupt:
        print("rendezvous-load: interrupted", file=sys.stderr)
        return EXIT_BROKEN
    progress.close()
    recorder = Recorder.merge(s.snapshot for s in states if s.snapshot is not None)
    summary = recorder.summary()
    results = evaluate(scenario.thresholds, summary)
    print_summary(summary, results)
    paths = write_outputs(recorder, results, out_dir, title=scenario.name,
                          scenario=scenario.describe())
    print(f"rendezvous-load: report {paths['html']}", file=sys.stderr)
    return EXIT_OK if all(r.ok for r in results) else EXIT_THRESHOLD


if __name__ == "__main__":
    sys.exit(main())
