"""The usual alternative: a python-socketio 5 relay (aiohttp + uvloop), doing what the relay does.

    python -m benchmarks.peers.sio_server --port 9000 [--redis-url redis://127.0.0.1:6379/0]

A client connects with the auth payload `{"user": ...}` and joins the room named after it.
The event `send` `{"to", "m", "c", "body"}` emits `msg` to the room `to` and returns the ack
`{"c", "id", "ts"}` (a Socket.IO acknowledgement). With `--redis-url`, processes share rooms
through `AsyncRedisManager`: every emit goes through Redis pub/sub and every process gets it,
which is how python-socketio scales out (and the comparison for Rendezvous over Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

import socketio
import uvloop
from aiohttp import web


def build(redis_url: str | None) -> web.Application:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager,
                               transports=["websocket"], logger=False, engineio_logger=False)
    ids = itertools.count(1)

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> bool:
        user = (auth or {}).get("user")
        if not isinstance(user, str):
            return False
        await sio.enter_room(sid, user)
        return True

    @sio.on("send")  # type: ignore[untyped-decorator]
    async def send(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        msg_id, ts = next(ids), int(time.time() * 1000)
        await sio.emit("msg", {"m": data.get("m"), "id": msg_id, "ts": ts, "c": data["c"],
                               "body": data.get("body")}, room=data["to"])
        return {"c": data["c"], "id": msg_id, "ts": ts}

    app = web.Application()
    sio.attach(app)
    return app


async def main(host: str, port: int, redis_url: str | None) -> None:
    runner = web.AppRunner(build(redis_url), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    print(f"socketio ready on {host}:{port} redis={redis_url}", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port, args.redis_url))
