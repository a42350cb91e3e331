"""The ceiling: a bare `websockets` relay on uvloop that speaks the minimum of our frames.

    python -m benchmarks.peers.relay --port 9000

msgpack frames on `rdv.v1.msgpack`, the user from the bearer JWT's `sub` (not verified:
nothing here is worth protecting), a `welcome`, then on `send` an `ack` to the sender and a
`msg` to the peer; on `sync` an empty list (the reconnect storm's ceiling). Nothing is
stored, nothing is checked: the match id names its two users as `a|b`, so the peer is the
other half. Every layer Rendezvous adds (validation, membership, limits, ids, the durable
write, the broker) is what the gap to this server costs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import time

import msgpack
import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

SUBPROTOCOL = "rdv.v1.msgpack"
connections: dict[str, ServerConnection] = {}
_ids = iter(range(1, 1 << 62))


def token_subject(header: str | None) -> str | None:
    """`sub` of an unverified bearer JWT."""
    if not header or not header.lower().startswith("bearer "):
        return None
    try:
        payload = header[7:].strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


async def handle(ws: ServerConnection) -> None:
    assert ws.request is not None
    user = token_subject(ws.request.headers.get("Authorization"))
    if user is None:
        await ws.close(4001, "unauthorized")
        return
    connections[user] = ws
    pack, unpack = msgpack.packb, msgpack.unpackb
    await ws.send(pack({"t": "welcome", "user": user, "session": user, "node": "relay"}))
    try:
        async for data in ws:
            frame = unpack(data)
            if frame.get("t") == "sync":  # nothing is stored: no conversations to list
                await ws.send(pack({"t": "sync", "r": frame.get("r"), "convs": []}))
                continue
            if frame.get("t") != "send":
                continue
            m = frame["m"]
            msg_id = next(_ids)
            ts = int(time.time() * 1000)
            await ws.send(pack({"t": "ack", "r": frame.get("r"), "m": m, "c": frame["c"],
                                "id": msg_id, "ts": ts}))
            a, _, b = m.partition("|")
            peer = connections.get(b if a == user else a)
            if peer is not None:
                with contextlib.suppress(ConnectionClosed):
                    await peer.send(pack({"t": "msg", "m": m, "id": msg_id, "from": user,
                                          "ts": ts, "body": frame.get("body"),
                                          "c": frame["c"]}))
    except ConnectionClosed:
        pass
    finally:
        if connections.get(user) is ws:
            del connections[user]


async def main(host: str, port: int) -> None:
    async with serve(handle, host, port, subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                     compression=None, max_queue=32, backlog=4096):
        print(f"relay ready on {host}:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))
