"""`python -m tests.push_servers.serve apns|fcm`: a look-alike in a process of its own.

The benchmark and the kill drill use it so the look-alike's work does not share a core (or
a GIL) with the client being measured. Prints one JSON line: the pusher's keyword arguments
(`pusher`) and the environment a client process needs (`env`, FCM's `SSL_CERT_FILE`). Then
reads commands, one a line, and answers each with one JSON line:

- `requests`: every request accepted so far, as `[token, id, collapse id, status, time]`
  (`id` is APNS's `apns-id`, FCM's data `id`; time is `time.time()` when it was answered);
- `script <token> <status> <reason> [times]`: as the look-alike's `script`;
- `count`: how many requests were accepted so far;
- `cpu`: the CPU seconds (user + system) this process used so far.

Serves until standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from typing import Any

from tests.push_servers.apns import ApnsLookalike
from tests.push_servers.fcm import FcmLookalike


def _summary(server: ApnsLookalike | FcmLookalike) -> list[list[Any]]:
    if isinstance(server, ApnsLookalike):
        return [[r.token, r.headers.get("apns-id", ""), r.headers.get("apns-collapse-id", ""),
                 r.status, r.at] for r in server.requests]
    return [[r.token, str((r.message.get("data") or {}).get("id", "")),
             str((r.message.get("android") or {}).get("collapse_key", "")), r.status, r.at]
            for r in server.requests]


async def serve(kind: str) -> None:
    server: ApnsLookalike | FcmLookalike = ApnsLookalike() if kind == "apns" else FcmLookalike()
    await server.start()
    env = server.client_env() if isinstance(server, FcmLookalike) else {}
    print(json.dumps({"pusher": server.pusher_kwargs(), "env": env}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := (await reader.readline()).decode().strip():
            command, *args = line.split()
            if command == "requests":
                answer: Any = _summary(server)
            elif command == "count":
                answer = len(server.requests)
            elif command == "cpu":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                answer = usage.ru_utime + usage.ru_stime
            elif command == "script":
                token, status, reason, *times = args
                server.script(token, int(status), reason, times=int(times[0]) if times else 1)
                answer = "ok"
            else:
                answer = {"error": f"unknown command {command!r}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        await server.stop()


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else ""
    if kind not in ("apns", "fcm"):
        raise SystemExit("usage: python -m tests.push_servers.serve apns|fcm")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(serve(kind))
    else:
        uvloop.run(serve(kind))


if __name__ == "__main__":
    main()
