"""`rendezvous`: run a node, mint a development token, check a config file.

    rendezvous serve                  # embedded default: SQLite in ./rendezvous-data
    rendezvous serve --redis-url redis://127.0.0.1:6379/0 --workers 2   # cluster nodes
    rendezvous token alice            # a token for user alice, signed with the node's key
    rendezvous config check rendezvous.toml
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from server.config import SECRET_ENV, Config, ConfigError, hs256_secret
from server.config_load import load
from server.edge.auth import mint
from server.logs import setup_logging
from storage import StoreUnavailable

WORKER_ENV = "RENDEZVOUS_WORKER"  # set in the processes a `--workers N` supervisor starts
D = Config(jwt_keys=())  # the defaults, for help texts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rendezvous", description="Real-time chat, presence "
                                     "and match server for dating apps.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run a node (embedded default: no set-up)",
        description="Run a node. Settings come from flags, then RENDEZVOUS_<KEY> environment "
        "variables, then --config FILE, then defaults (see rendezvous.sample.toml).")
    add = serve.add_argument
    add("--config", type=Path, metavar="FILE", help="a TOML file of settings")
    add("--host", help=f"address to listen on (default {D.host})")
    add("--ws-port", type=int, help=f"WebSocket gateway port (default {D.ws_port})")
    add("--http-port", type=int, help=f"HTTP API port (default {D.http_port})")
    add("--data-dir", type=Path, help="SQLite database, dev JWT secret and push record "
        f"(default {D.data_dir})")
    add("--redis-url", help="join a cluster: fan-out and presence through this Redis, "
        "e.g. redis://127.0.0.1:6379/0")
    add("--redis-cluster", type=lambda v: tuple(s for s in v.split(",") if s),
        dest="redis_cluster_nodes", metavar="HOST:PORT,...",
        help="join a cluster through a Redis Cluster (sharded pub/sub); seed nodes")
    add("--cassandra", type=lambda v: tuple(s for s in v.split(",") if s),
        dest="cassandra_contact_points", metavar="HOST[:PORT],...",
        help="store in Cassandra (contact points) instead of the data dir's SQLite file")
    add("--workers", type=int, help="processes sharing the ports (SO_REUSEPORT), each a "
        "cluster node; needs Redis (default 1)")
    add("--node-id", type=int, help="0..1023, unique per running node (part of every "
        "message id); default: 0 alone, leased from Redis in a cluster")
    add("--node-name", help="name in logs and welcome frames (default: host-pid in a cluster)")
    add("--jwt-key", action="append", dest="jwt_public_keys", metavar="ALG:PATH",
        help="accept tokens signed by this public key (RS256, ES256 or EdDSA); repeatable")
    add("--jwt-issuer", help="require this iss claim")
    add("--jwt-audience", help="require this aud claim")
    add("--no-hs256", action="store_false", dest="jwt_hs256", default=None,
        help=f"accept only the public keys, not the HS256 secret (${SECRET_ENV} or the data "
        "dir's dev secret)")
    add("--cors-origins", type=lambda v: tuple(s for s in v.split(",") if s),
        metavar="ORIGIN,...", help="browser origins (scheme://host[:port]) the HTTP API "
        "answers with CORS headers; * for any (default: none, no CORS headers)")
    add("--sends-per-s", type=float, help=f"messages a user may send per second "
        f"(default {D.sends_per_s:g})")
    add("--send-burst", type=int, help=f"messages a user may send in a burst "
        f"(default {D.send_burst})")
    add("--log-level", help=f"DEBUG, INFO, WARNING or ERROR (default {D.log_level})")
    add("--log-format", choices=["json", "text", "auto"], help="stderr logs as one JSON "
        "object per line, or text; auto (default): text on a terminal, else JSON")

    token = commands.add_parser("token", help="print a token for USER signed with the HS256 "
                                f"secret (${SECRET_ENV}, else the data dir's dev secret)")
    token.add_argument("user")
    token.add_argument("--ttl", type=int, default=24 * 3600,
                       help="lifetime in seconds (default 86400)")
    token.add_argument("--data-dir", type=Path, help=f"(default {D.data_dir})")

    migrate = commands.add_parser("migrate", help="create or upgrade the store's schema "
                                  "(Cassandra keyspace and tables, or the SQLite file)")
    migrate.add_argument("--config", type=Path, metavar="FILE")
    migrate.add_argument("--cassandra", type=lambda v: tuple(s for s in v.split(",") if s),
                         dest="cassandra_contact_points", metavar="HOST[:PORT],...")
    migrate.add_argument("--data-dir", type=Path)

    config = commands.add_parser("config", help="check a configuration file")
    config.add_argument("action", choices=["check"])
    config.add_argument("file", type=Path)
    return parser


SERVE_KEYS = ("host", "ws_port", "http_port", "data_dir", "redis_url", "redis_cluster_nodes",
              "cassandra_contact_points",
              "workers", "node_id", "node_name", "jwt_public_keys", "jwt_issuer",
              "jwt_audience", "jwt_hs256", "cors_origins", "sends_per_s", "send_burst",
              "log_level", "log_format")


def serve_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in SERVE_KEYS}


def entry_point() -> str:
    """This program as a shell command that runs it again from the same directory, for the
    commands the banner prints: the installed script as it was started (`rendezvous` only
    if that is what PATH finds, e.g. `.venv/bin/rendezvous` under `make serve`), else this
    interpreter with `-m server.cli`."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    module = spec.name if spec is not None and spec.name else None
    script = sys.argv[0] if sys.argv else ""
    if module is None and script and not script.endswith(".py"):
        runnable = (shutil.which(script) is not None if os.sep not in script
                    else os.access(script, os.X_OK))
        if runnable:
            return shlex.quote(script)
    return shlex.join([sys.executable, "-m", module or "server.cli"])


async def serve(config: Config, secret_origin: str) -> None:
    from server.node import Node  # imported here so `rendezvous token` starts fast

    node = Node(config)
    try:
        await node.start()
    except BaseException:
        await node.abandon()
        raise
    tune_interpreter()
    # before the banner: whoever waits for it may signal at once (a test, a supervisor)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = config.host
    fanout = ("Redis Cluster " + ",".join(config.redis_cluster_nodes)
              if config.redis_cluster_nodes else f"Redis {config.redis_url}"
              if config.redis_url else "in-process (single node)")
    demo = (f"  Demo       http://{host}:{node.http_port}/demo  (two tabs, two users; "
            "docs/demo.md)\n" if config.demo else "")
    print(f"Rendezvous {config.node} ready (node id {node.node_id}, pid {os.getpid()})\n"
          f"  WebSocket  ws://{host}:{node.ws_port}/v1/ws  (rdv.v1.msgpack, rdv.v1.json)\n"
          f"  HTTP API   http://{host}:{node.http_port}  (docs /docs, metrics /metrics)\n"
          f"{demo}"
          f"  Storage    SQLite in {config.data_dir}/\n"
          f"  Fan-out    {fanout}\n"
          f"  Tokens     {entry_point()} token USER --data-dir "
          f"{shlex.quote(str(config.data_dir))}"
          f"   (HS256 key: {secret_origin})\n"
          f"  Stop       Ctrl-C or SIGTERM (clients are told to reconnect)", flush=True)
    await stop.wait()
    print(f"draining {len(node.hub)} connections (reconnect, then 1012)", flush=True)
    await node.stop()


# gen-0 collections after this many new container objects (CPython's default is 700)
GC_YOUNG_THRESHOLD = 20_000
# how long the event loop may keep the GIL from a thread that wants it (default 5 ms)
SWITCH_INTERVAL_S = 0.0005


def tune_interpreter() -> None:
    """Two interpreter settings for a node under load (docs/architecture.md, "Threads and
    the GIL").

    Fewer garbage collections: a profile under chat load showed ~10 % of the event loop's
    time in the collector. Every frame allocates short-lived containers that reference
    counting frees anyway; a higher gen-0 threshold lets most die before a collection looks
    at them, and `freeze` moves what start-up built out of the generations that full
    collections walk. Cycles are still collected, only less often.

    A shorter switch interval: the SQLite writer releases the GIL inside every statement
    and must take it back after, and under load the loop holds it through whole bursts of
    frames; the writer then waits the full interval each time, and every send waits on the
    writer."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


async def migrate(config: Config) -> None:
    """Open the store once: starting it creates or upgrades the schema, then report."""
    from server.compose import build_store

    store = build_store(config)
    where = (f"Cassandra {','.join(config.cassandra_contact_points)} keyspace "
             f"{config.cassandra_keyspace}" if config.cassandra_contact_points
             else f"SQLite {config.data_dir / 'rendezvous.db'}")
    print(f"migrating {where} ...", flush=True)
    await store.start()
    await store.close()
    print("schema is up to date", flush=True)


def _drain_when_parent_dies() -> None:
    """In a worker: get SIGTERM (and so drain) if the supervisor dies, even by SIGKILL."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def supervise(config: Config) -> int:
    """Run `config.workers` copies of this command as worker processes (see
    server/supervisor.py: restarts with backoff, and a give-up after a crash loop)."""
    from server.supervisor import RestartPolicy
    from server.supervisor import supervise as run_workers

    env = dict(os.environ)

    def spawn(index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "server.cli", *sys.argv[1:]],
                                env={**env, WORKER_ENV: str(index)},
                                preexec_fn=_drain_when_parent_dies)

    return run_workers(spawn, config.workers, RestartPolicy(
        max_fast_crashes=config.worker_max_fast_crashes,
        fast_crash_s=config.worker_fast_crash_s))


def run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "token":
            data_dir = args.data_dir or Path(os.environ.get("RENDEZVOUS_DATA_DIR",
                                                            str(D.data_dir)))
            secret, _ = hs256_secret(data_dir)
            print(mint(secret, args.user, args.ttl))
            return 0
        if args.command == "migrate":
            config, _ = load(args.config, {"cassandra_contact_points":
                                           args.cassandra_contact_points,
                                           "data_dir": args.data_dir}, create_secret=False)
            setup_logging(config.log_level, config.log_format, config.node)
            try:
                run(migrate(config))
            except StoreUnavailable as exc:
                print(f"rendezvous: the store is unavailable: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.command == "config":
            config, origin = load(args.file, {}, create_secret=False)
            print(f"{args.file}: OK (HS256 key: {origin})")
            return 0
        config, origin = load(args.config, serve_flags(args))
        setup_logging(config.log_level, config.log_format, config.node)
    except ConfigError as exc:
        print(f"rendezvous: bad configuration: {exc}", file=sys.stderr)
        return 2
    if config.workers > 1 and WORKER_ENV not in os.environ:
        return supervise(config)
    try:
        run(serve(config, origin))
    except (OSError, RuntimeError, StoreUnavailable) as exc:
        print(f"rendezvous: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
