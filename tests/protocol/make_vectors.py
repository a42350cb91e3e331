"""Write `tests/protocol/vectors.json`, the golden wire bytes of every frame type.

Run only on a deliberate wire change, then review the diff and say why in the commit:

    python -m tests.protocol.make_vectors

The tests never run this; they check the code against the committed file, so an accidental
change to a builder or a codec (a key order, a float width, an id written as a number in
JSON) fails them instead of silently moving the vectors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol.codec import JsonCodec, MsgpackCodec
from tests.protocol.cases import CLIENT_CASES, SERVER_CASES

VECTORS = Path(__file__).with_name("vectors.json")


def build() -> dict[str, list[dict[str, Any]]]:
    msgpack_codec, json_codec = MsgpackCodec(), JsonCodec()

    def case(name: str, frame: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "frame": frame,
            "msgpack_hex": msgpack_codec.encode(frame).hex(),
            "json_text": json_codec.encode(frame),
        }

    return {
        "server": [case(name, make()) for name, make in SERVER_CASES.items()],
        "client": [case(name, frame) for name, (frame, _) in CLIENT_CASES.items()],
    }


def main() -> None:
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    VECTORS.write_text(text, encoding="utf-8")
    print(f"wrote {VECTORS}")


if __name__ == "__main__":
    main()
