"""What a client does after its socket closed, from the close-code table of docs/protocol.md
("Close codes"). One pure function, so the policy reads (and is tested) in one place; the
TypeScript SDK has the same table (clients/js/src/close-codes.ts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocol.errors import CloseCode

Window = Literal["backoff", "restart", "slow"]


@dataclass(frozen=True, slots=True)
class CloseAction:
    """`reconnect` False: stop and let the app decide (`why` says why). Else reconnect after
    a delay from `window` ("restart": the node asked, 0.5 to 5 s unless its `reconnect`
    frame said when; "slow": a policy close, backoff from 5 s; "backoff": full jitter), with
    a new token first when `new_token`."""

    reconnect: bool
    window: Window = "backoff"
    new_token: bool = False
    why: str = ""


def close_action(code: int | None, reason: str | None) -> CloseAction:
    if code in (CloseCode.GOING_AWAY, CloseCode.RESTART):
        return CloseAction(True, "restart")
    if code in (CloseCode.UNAUTHORIZED, CloseCode.TOKEN_EXPIRED):
        return CloseAction(True, "backoff", new_token=True)
    if code == CloseCode.FORBIDDEN:
        return CloseAction(False, why="forbidden")
    if code == CloseCode.POLICY:
        if (reason or "").startswith("max_connections_per_user"):
            # another device of this user took the slot: taking it back would evict that one
            return CloseAction(False, why="replaced by another connection of this user")
        return CloseAction(True, "slow")
    # 1006 (network lost), 1009, 4009 (too slow to read), anything else: backoff, then sync
    return CloseAction(True, "backoff")
