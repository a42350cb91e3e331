"""The push "provider" of the embedded default: records what would have been sent.

A developer can read `pushes.jsonl` in the data dir to see exactly which notifications their
app would get. Device tokens are written as a short hash, never in full.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from push.base import Notification, Outcome, PushResult
from storage import Device


def token_id(token: str) -> str:
    """A short, stable, non-reversible name for a device token (logs, push ids)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class RecorderPusher:
    def __init__(self, path: Path | None, provider: str = "recorder",
                 keep: int = 1000) -> None:
        self.provider = provider
        self.path = path
        self.keep = keep
        self.sent: list[dict[str, Any]] = []  # the last `keep` records, for tests and tools

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, device: Device, notification: Notification) -> PushResult:
        record = {
            "ts": int(time.time() * 1000),
            "user": device.user,
            "platform": device.platform,
            "device": token_id(device.token),
            "push_id": notification.push_id,
            "kind": notification.kind,
            "m": notification.match_id,
            "loc_key": notification.loc_key,
            "body": notification.body,
            "collapse_id": notification.collapse_id,
            "badge": notification.badge,
        }
        self.sent.append(record)
        del self.sent[:-self.keep]
        if self.path is not None:
            line = json.dumps(record, ensure_ascii=False) + "\n"
            await asyncio.to_thread(self._append, line)
        return PushResult(Outcome.SENT)

    def _append(self, line: str) -> None:
        assert self.path is not None
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line)
