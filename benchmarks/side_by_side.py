"""Side by side: the same chat load against a bare relay, python-socketio and Rendezvous.

    python benchmarks/side_by_side.py                     # 50 and 200 pairs, 2 rounds
    python benchmarks/side_by_side.py --seconds 5 --rounds 1 --only relay,rdv-1
    python benchmarks/side_by_side.py --cassandra --json out.json
    python benchmarks/side_by_side.py --storm 5000        # reconnect storm instead

Servers are started fresh per round on free loopback ports and stopped afterwards; the load
comes from separate processes. See docs/benchmarks.md for the method and the columns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.sbs import report
from benchmarks.sbs.bench import P99_LIMIT_MS, Options, run_rounds
from benchmarks.sbs.load import LoadPool, raise_fd_limit
from benchmarks.sbs.procs import RAISED_LIMITS_NOTE, install_cleanup, stop_all
from benchmarks.sbs.servers import DEFAULT_SERVERS, SERVERS, Cassandra


def numbers(text: str) -> list[float]:
    return [float(x.replace("k", "e3")) for x in text.split(",") if x]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="50,200", help="closed-loop pair counts")
    parser.add_argument("--seconds", type=float, default=15, help="per closed-loop window")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured s per connect")
    parser.add_argument("--only", help=f"comma-separated servers: {','.join(SERVERS)}")
    parser.add_argument("--cassandra", action="store_true",
                        help="add the full stack (2 nodes + Redis + a Cassandra node)")
    parser.add_argument("--open-pairs", type=int,
                        help="pairs for the open model (default: the largest --pairs)")
    parser.add_argument("--no-open", action="store_true", help="skip the open model")
    parser.add_argument("--open-rates", default="1k,2k,4k,8k,16k",
                        help="arrival-rate steps, msg/s, until p99 passes 50 ms")
    parser.add_argument("--open-seconds", type=float, default=5, help="per open step")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write every window and the summary here")
    parser.add_argument("--storm", type=int, nargs="?", const=5000,
                        help="instead: N clients on node B, B killed, all reconnect to A "
                             "(default 5000)")
    parser.add_argument("--storm-server", choices=("rdv", "relay"), default="rdv",
                        help="the storm between two Rendezvous nodes over Redis, or between "
                             "two bare relays (the ceiling on this machine)")
    parser.add_argument("--storm-spread", type=float, default=2.0,
                        help="reconnect delays uniform in 0..this many s")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy profiles and per-thread CPU of every closed window here")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_cleanup()
    raise_fd_limit()

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": sys.argv[1:],
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "load_processes": args.load_processes, "rate_limits": RAISED_LIMITS_NOTE,
        "p99_limit_ms": P99_LIMIT_MS,
    }
    if args.storm:
        from benchmarks.sbs import storm

        pool = LoadPool(args.load_processes, storm.StormWorker)
        try:
            result = storm.run(pool, args.storm, args.storm_spread, say, args.profile,
                               args.storm_server)
        finally:
            pool.close()
            stop_all()
        print(storm.describe(result))
        print(RAISED_LIMITS_NOTE)
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "storm": result}, indent=1))
        return 0
    servers = args.only.split(",") if args.only else list(DEFAULT_SERVERS)
    if args.cassandra and "rdv-cass" not in servers:
        servers.append("rdv-cass")
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown server(s) {unknown}; choose from {list(SERVERS)}")
    pairs = [int(p) for p in numbers(args.pairs)]
    opts = Options(servers=servers, pairs=pairs, seconds=args.seconds, rounds=args.rounds,
                   warmup=args.warmup,
                   open_pairs=None if args.no_open else (args.open_pairs or max(pairs)),
                   open_rates=numbers(args.open_rates), open_seconds=args.open_seconds,
                   load_processes=args.load_processes, profile_dir=args.profile)
    cassandra = None
    pool = LoadPool(args.load_processes)
    try:
        if "rdv-cass" in servers:
            cassandra = Cassandra(Path(tempfile.mkdtemp(prefix="sbs-cassandra-")))
            say(f"starting Cassandra on 127.0.0.1:{cassandra.port} (heap 1g) ...")
            cassandra.start()
        records = run_rounds(opts, pool, cassandra, say)
    finally:
        pool.close()
        if cassandra is not None:
            cassandra.stop()
            shutil.rmtree(cassandra.workdir, ignore_errors=True)
        stop_all()
    report.add_ratios(records)
    rows = report.summarize(records)
    print(report.table(rows))
    print(report.LEGEND)
    print(RAISED_LIMITS_NOTE)
    cores = max((r["load_cores"] or 0 for r in rows), default=0)
    print(f"load generator: {args.load_processes} processes, at most {cores:.2f} cores "
          f"(median of rounds) of this machine's {os.cpu_count()}")
    if args.json:
        for r in records:
            r.pop("latencies", None)
        args.json.write_text(json.dumps({"meta": meta, "summary": rows, "windows": records},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
