"""How a report's evidence is kept in a row: the copied messages as one JSON text.

Both stores keep the evidence in the report's own row, not as references to the messages
table, so that unsend, unmatch and erasure (which rewrite or delete message rows) cannot
reach it (docs/privacy.md, "Reports"). Every field of `Message` is written, whatever fields
it gains later.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from storage.base import Message

_FIELDS = tuple(f.name for f in dataclasses.fields(Message))


def evidence_json(messages: tuple[Message, ...]) -> str:
    """The evidence as compact JSON: a list of objects, one per message, newest first."""
    return json.dumps([{name: getattr(m, name) for name in _FIELDS} for m in messages],
                      separators=(",", ":"), ensure_ascii=False)


def evidence_of(text: str | None) -> tuple[Message, ...]:
    """The messages of `evidence_json`'s text (unknown keys, from a newer writer, ignored)."""
    if not text:
        return ()
    items: list[dict[str, Any]] = json.loads(text)
    return tuple(Message(**{k: v for k, v in item.items() if k in _FIELDS}) for item in items)
