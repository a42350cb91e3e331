"""`rendezvous`: run a node, mint a development token.

    rendezvous serve                  # embedded default: SQLite in ./rendezvous-data
    rendezvous token alice            # a token for user alice, signed with the node's key
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from server.auth import mint
from server.config import SECRET_ENV, Config, ConfigError, JwtKey, hs256_secret

_DEFAULTS = Config(jwt_keys=())
DEFAULT_DATA_DIR = Path(os.environ.get("RENDEZVOUS_DATA_DIR", "rendezvous-data"))


def _jwt_key(text: str) -> JwtKey:
    """ALG:PATH of a PEM public key, for RS256, ES256 or EdDSA tokens."""
    alg, sep, path = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected ALG:PATH, e.g. RS256:/etc/rdv/jwt.pub")
    try:
        return JwtKey(alg, Path(path).read_text())
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rendezvous", description="Real-time chat, presence "
                                     "and match server for dating apps.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a node (embedded default: no set-up)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--ws-port", type=int, default=8080, help="WebSocket gateway port")
    serve.add_argument("--http-port", type=int, default=8081, help="HTTP API port")
    serve.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                       help="where the SQLite database, dev JWT secret and push record live")
    serve.add_argument("--node-id", type=int, default=0,
                       help="0..1023, unique per running node (part of every message id)")
    serve.add_argument("--jwt-key", type=_jwt_key, action="append", default=[],
                       metavar="ALG:PATH", help="accept tokens signed by this public key "
                       "(RS256, ES256 or EdDSA); repeatable")
    serve.add_argument("--jwt-issuer", help="require this iss claim")
    serve.add_argument("--jwt-audience", help="require this aud claim")
    serve.add_argument("--no-hs256", action="store_true",
                       help=f"accept only the public keys, not the HS256 secret (${SECRET_ENV} "
                       "or the data dir's dev secret)")
    serve.add_argument("--sends-per-s", type=float, default=_DEFAULTS.sends_per_s,
                       help="messages a user may send per second (token bucket rate)")
    serve.add_argument("--send-burst", type=int, default=_DEFAULTS.send_burst,
                       help="messages a user may send in a burst")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")

    token = commands.add_parser("token", help="print a token for USER signed with the HS256 "
                                f"secret (${SECRET_ENV}, else the data dir's dev secret)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    token.add_argument("user")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    token.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    return parser


def config_from_args(args: argparse.Namespace) -> tuple[Config, str]:
    keys = list(args.jwt_key)
    origin = "public keys only"
    if not args.no_hs256:
        secret, origin = hs256_secret(args.data_dir)
        keys.insert(0, JwtKey("HS256", secret))
    config = Config(host=args.host, ws_port=args.ws_port, http_port=args.http_port,
                    data_dir=args.data_dir, node_id=args.node_id, jwt_keys=tuple(keys),
                    jwt_issuer=args.jwt_issuer, jwt_audience=args.jwt_audience,
                    sends_per_s=args.sends_per_s, send_burst=args.send_burst)
    return config.validate(), origin


async def serve(config: Config, secret_origin: str) -> None:
    from server.node import Node  # imported here so `rendezvous token` starts fast

    node = Node(config)
    await node.start()
    host = config.host
    print(f"Rendezvous {config.node} ready\n"
          f"  WebSocket  ws://{host}:{node.ws_port}/v1/ws  (rdv.v1.msgpack, rdv.v1.json)\n"
          f"  HTTP API   http://{host}:{node.http_port}  (docs /docs, metrics /metrics)\n"
          f"  Storage    SQLite in {config.data_dir}/\n"
          f"  Tokens     rendezvous token USER --data-dir {config.data_dir}"
          f"   (HS256 key: {secret_origin})\n"
          f"  Stop       Ctrl-C (clients are told to reconnect)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("stopping: closing connections with 1012 and flushing writes", flush=True)
    await node.stop()


def run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        secret, _ = hs256_secret(args.data_dir)
        print(mint(secret, args.user, args.ttl))
        return 0
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config, origin = config_from_args(args)
    except ConfigError as exc:
        print(f"rendezvous: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        run(serve(config, origin))
    except OSError as exc:
        print(f"rendezvous: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
