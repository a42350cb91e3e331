"""Mutated client frames for `fuzz_soak.py`: valid frames of every type, then bent.

Pure and seeded: `Mutator(rng, match_id).frame()` returns the bytes or text to send and the
`r` the server must answer, or None when the mutation may have destroyed it (raw byte
damage, a non-integer or missing `r`). Sizes stay under the node's default frame limit
except on purpose, now and then.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

import msgpack

TYPES = ("send", "typing", "read", "delivered", "history", "sync", "presence", "refresh",
         "ping", "auth", "unsend", "nope", "")
ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**31, 2**63 - 1, -2**63, 2**64 - 1, 1.5, float("inf"), "",
    "x" * 70, "\u0000", "\ud83d\ude00" * 3, "\u202e", "9" * 30, [], {}, [1, [2, [3]]],
    {"t": "send"}, b"\x00\xff", "1e309", " ", "\n")


class Mutator:
    def __init__(self, rng: random.Random, match_id: str, *, binary: bool) -> None:
        self.rng = rng
        self.match_id = match_id
        self.binary = binary  # msgpack (bytes) or JSON (text)
        self.r = 0
        # `r` values carried by frames that are not tracked (a mutation or damaged bytes
        # put another number there): an answer with one of them is not a second answer
        self.foreign: set[int] = set()

    def _text(self, longest: int = 80) -> str:
        rng = self.rng
        n = rng.choice((0, 1, 5, longest, rng.randint(0, longest)))
        return "".join(rng.choice(string.printable + "éß中😀") for _ in range(n))

    def _valid(self, t: str) -> dict[str, Any]:
        rng = self.rng
        m = self.match_id if rng.random() < 0.7 else self._text(20)
        some_id = rng.choice((1, 2**40, 2**63 - 1, rng.randint(1, 2**62)))
        frame: dict[str, Any] = {"t": t}
        if t == "send":
            frame.update(m=m, c=self._text(20) or "c", body=self._text(200))
            if rng.random() < 0.2:
                frame["media"] = {"kind": rng.choice(("image", "voice", "gif", "x")),
                                  "url": "https://example.com/" + self._text(10),
                                  "w": rng.choice((1, -1, 10**9)), "dur": 1.5}
        elif t == "typing":
            frame.update(m=m, on=rng.random() < 0.5)
        elif t in ("read", "delivered", "unsend"):
            frame.update(m=m, id=some_id)
        elif t == "history":
            frame.update(m=m, before=some_id, limit=rng.choice((1, 50, 100, 101, 0)))
        elif t == "sync":
            frame["since"] = rng.choice((self._text(30), "", "AAAA", None))
        elif t in ("refresh", "auth"):
            frame["token"] = rng.choice(("x.y.z", self._text(100), "eyJhbGciOiJub25lIn0.e30."))
        return frame

    def frame(self) -> tuple[bytes | str, int | None, str]:
        """One mutated frame, the `r` it must be answered with (None: not tracked) and its
        `t` (for the report)."""
        rng = self.rng
        frame = self._valid(rng.choice(TYPES))
        self.r += 1
        r: int | None = self.r
        frame["r"] = r
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            self._bend(frame)
        if not isinstance(frame.get("r"), int) or isinstance(frame.get("r"), bool) \
                or not 0 <= frame["r"] < 2**53 or "t" not in frame:
            r = None  # the mutation touched `r` (or `t`): no answer can be required by r
        elif r != frame["r"]:
            r = None
        t = str(frame.get("t"))[:12]
        data = self._encode(frame)
        if data is None:
            return self._note_foreign(self._junk()), None, "junk"
        if rng.random() < 0.08:  # damage the encoding itself
            return self._note_foreign(self._damage(data)), None, "damaged"
        if r is None:
            self._note_foreign(data)
        return data, r, t

    def _note_foreign(self, data: bytes | str) -> bytes | str:
        """Remember the `r` the server may read out of an untracked frame."""
        try:
            frame = msgpack.unpackb(data) if isinstance(data, bytes) else json.loads(data)
        except Exception:
            return data
        r = frame.get("r") if isinstance(frame, dict) else None
        if isinstance(r, str) and r.isdigit():
            r = int(r)
        if isinstance(r, int) and not isinstance(r, bool):
            self.foreign.add(r)
        return data

    def _bend(self, frame: dict[str, Any]) -> None:
        rng = self.rng
        keys = list(frame)
        choice = rng.random()
        if choice < 0.25 and keys:
            del frame[rng.choice(keys)]
        elif choice < 0.55 and keys:
            frame[rng.choice(keys)] = rng.choice(ODD_VALUES)
        elif choice < 0.7:
            frame[self._text(12)] = rng.choice(ODD_VALUES)
        elif choice < 0.8:
            frame["t"] = rng.choice((*TYPES, 5, None, "SEND", "send ", "ping\u0000"))
        elif choice < 0.88 and keys:
            key = rng.choice(keys)
            frame[key] = [frame[key]] * rng.randint(0, 50)
        elif choice < 0.95:
            frame["body"] = "b" * rng.choice((3999, 4000, 4001, 20_000))
        else:
            nested: Any = 1
            for _ in range(rng.randint(10, 200)):
                nested = [nested]
            frame[rng.choice(keys) if keys else "x"] = nested

    def _encode(self, frame: dict[str, Any]) -> bytes | str | None:
        try:
            if self.binary:
                data: bytes | str = msgpack.packb(frame)
            else:
                data = json.dumps(frame, default=repr, allow_nan=False)
                data.encode()  # lone surrogates cannot go in a text frame
        except (ValueError, TypeError, OverflowError, UnicodeEncodeError):
            return None
        if self.rng.random() < 0.0005:  # now and then, past the frame limit on purpose
            return data + (b"\x00" * 70_000 if isinstance(data, bytes) else " " * 70_000)
        return data

    def _damage(self, data: bytes | str) -> bytes | str:
        rng = self.rng
        raw = bytearray(data.encode() if isinstance(data, str) else data)
        for _ in range(rng.randint(1, 4)):
            if not raw:
                break
            i = rng.randrange(len(raw))
            action = rng.random()
            if action < 0.4:
                raw[i] ^= 1 << rng.randrange(8)
            elif action < 0.7:
                del raw[i:]
            else:
                raw[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        if self.binary:
            return bytes(raw)
        return raw.decode("utf-8", "replace")

    def _junk(self) -> bytes | str:
        rng = self.rng
        if self.binary:
            return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        return rng.choice(("", "{", "[]", "null", "{\"t\":", "\"ping\"", self._text(40)))
