"""Bounds on everything a client can send or ask for (docs/protocol.md, "Limits")."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Protocol limits; the client-relevant ones are sent in `welcome.limits`."""

    max_frame_bytes: int = 65_536  # larger WebSocket messages close with 1009
    max_body_chars: int = 4000
    max_client_id_chars: int = 64
    max_user_id_chars: int = 64
    max_match_id_chars: int = 64
    max_token_chars: int = 8192
    max_url_chars: int = 2048
    history_default: int = 50
    history_max: int = 100
    sync_max_msgs: int = 200
    typing_ttl_s: float = 6.0
    auth_timeout_s: float = 5.0

    def for_client(self) -> dict[str, int | float]:
        """The limits a client needs to know, as sent in `welcome`."""
        keep = ("max_frame_bytes", "max_body_chars", "max_client_id_chars", "history_max",
                "sync_max_msgs", "typing_ttl_s")
        full = asdict(self)
        return {k: full[k] for k in keep}


DEFAULT_LIMITS = Limits()
