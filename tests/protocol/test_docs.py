"""The examples in docs/protocol.md are real frames: they decode, and requests validate."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from protocol.codec import JsonCodec
from protocol.frames import parse_client_frame
from protocol.limits import DEFAULT_LIMITS

DOC = Path(__file__).parents[2] / "docs" / "protocol.md"
REQUEST_TYPES = {"auth", "send", "typing", "read", "delivered", "history", "sync", "presence",
                 "refresh", "ping", "unsend"}


def _examples() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    found: list[str] = []
    for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL):
        try:
            json.loads(block)
            found.append(block)
        except ValueError:  # one frame per line
            found.extend(line for line in block.splitlines() if line.strip())
    return found


def _is_request(frame: dict[str, Any]) -> bool:
    server_only = {"from", "msgs", "convs", "users", "u", "code"}
    return frame["t"] in REQUEST_TYPES and not server_only & set(frame)


EXAMPLES = _examples()


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize("text", EXAMPLES)
def test_example_is_a_valid_frame(text: str) -> None:
    frame = JsonCodec().decode(text.replace("\n", ""))
    if _is_request(frame):
        parse_client_frame(frame, DEFAULT_LIMITS)
