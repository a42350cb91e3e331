"""Flow steps: what one virtual user (or pair of them) does, as validated, frozen values.

A flow is a list; each item is a bare step name (`connect`, `pair`, `typing`, `read`, `flap`,
`disconnect`) or a one-key mapping `{step: {options}}`. The engine (`loadtest.engine`) runs
them; this module only describes and validates them, so a bad file fails before the run.

`who` picks the session's users a step acts on: `a` (the one who arrived), `b` (the partner
made by `pair`) or `both`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from loadtest.yamlread import Field, parse_duration, parse_rate

if TYPE_CHECKING:
    from collections.abc import Callable

WHO = ("a", "b", "both")
FRAME_TYPES = ("msg", "typing", "read", "delivered", "presence", "match", "unmatch", "unsent",
               "reconnect", "error")
HTTP_OPS = ("swipe", "matches", "settings", "quota", "undo", "likes", "deck_filter")
MAX_CANDIDATES = 500  # the deck filter's batch limit (docs/protocol.md)
SWIPE_ACTIONS = ("like", "pass", "superlike")


@dataclass(frozen=True, slots=True)
class Connect:
    who: str = "both"


@dataclass(frozen=True, slots=True)
class Disconnect:
    who: str = "both"


@dataclass(frozen=True, slots=True)
class Pair:
    """Make the partner `b`, connect it if `a` is connected, like each other, await `match`."""

    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Http:
    op: str = "swipe"
    action: str = "like"
    count: int = 1
    who: str = "a"
    candidates: int = 100  # deck_filter: user ids per call


@dataclass(frozen=True, slots=True)
class Send:
    """Each chosen user sends to its partner on a Poisson schedule of `rate` per second."""

    rate: float
    duration_s: float | None = None
    count: int | None = None
    who: str = "both"


@dataclass(frozen=True, slots=True)
class Typing:
    who: str = "a"


@dataclass(frozen=True, slots=True)
class Read:
    who: str = "both"


@dataclass(frozen=True, slots=True)
class Unsend:
    """Each chosen user sends its partner one message (outside the delivery figures) and
    unsends it as soon as it is acknowledged; the round trip is the `unsend` latency."""

    who: str = "a"


@dataclass(frozen=True, slots=True)
class Expect:
    """Wait for a frame `type` that arrived since the previous step began, or within timeout."""

    type: str
    timeout_s: float = 5.0
    who: str = "a"


@dataclass(frozen=True, slots=True)
class Think:
    dist: str  # "constant" | "uniform" | "exponential"
    a: float
    b: float = 0.0


@dataclass(frozen=True, slots=True)
class Loop:
    steps: tuple[Step, ...]
    count: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    options: tuple[tuple[float, tuple[Step, ...]], ...]


@dataclass(frozen=True, slots=True)
class Flap:
    """Background then foreground: close the socket, stay away, reconnect and `sync`."""

    who: str = "a"
    offline_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Chaos:
    """With probability `drop`, cut the socket abruptly (no close frame), then reconnect and
    `sync` after `reconnect_after_s`."""

    drop: float = 1.0
    who: str = "a"
    reconnect_after_s: float = 0.0


Step = (Connect | Disconnect | Pair | Http | Send | Typing | Read | Expect | Think | Loop | Choice
        | Flap | Chaos | Unsend)
BARE = {"connect": Connect, "disconnect": Disconnect, "pair": Pair, "typing": Typing,
        "read": Read, "flap": Flap, "unsend": Unsend}


def parse_flow(field: Field, paired: bool = False) -> tuple[Step, ...]:
    """A list of steps. `paired`: whether a `pair` already ran before this list begins."""
    steps: list[Step] = []
    for item in field.sequence():
        step = parse_step(item, paired)
        if isinstance(step, Pair):
            if paired:
                raise item.error("a session pairs once: this flow has a pair step already")
            paired = True
        _check_needs_pair(item, step, paired)
        steps.append(step)
    return tuple(steps)


def _check_needs_pair(item: Field, step: Step, paired: bool) -> None:
    who = getattr(step, "who", "a")
    if isinstance(step, Send | Read | Unsend) and not paired:
        raise item.error(f"{type(step).__name__.lower()} needs a pair step before it")
    if isinstance(step, Typing) and not paired:
        raise item.error("typing needs a pair step before it")
    if who == "b" and not paired:
        raise item.error("who: b needs a pair step before it")


def parse_step(item: Field, paired: bool) -> Step:
    if item.is_scalar:
        name = item.string()
        if name in BARE:
            step: Step = BARE[name]()
            return step
        raise item.error(f"unknown step {name!r} (bare steps: {', '.join(BARE)}; others "
                         f"take options: {', '.join(k for k in PARSERS if k not in BARE)})")
    keys = item.mapping()
    if len(keys) != 1:
        raise item.error("a step is one key, like `send: {rate: 1/s, duration: 10s}`")
    (name, value), = keys.items()
    parser = PARSERS.get(name)
    if parser is None:
        raise value.error(f"unknown step (expected one of: {', '.join(PARSERS)})")
    return parser(value, paired)


def _who(keys: dict[str, Field], default: str) -> str:
    if "who" not in keys:
        return default
    who = keys["who"].string()
    if who not in WHO:
        raise keys["who"].error(f"expected a, b or both, got {who!r}")
    return who


def _options(value: Field, allowed: tuple[str, ...], required: tuple[str, ...] = ()
             ) -> dict[str, Field]:
    if value.is_scalar and value.scalar() is None and not required:
        return {}
    return value.mapping(allowed, required)


def _connect(value: Field, paired: bool) -> Step:
    return Connect(_who(_options(value, ("who",)), "both"))


def _disconnect(value: Field, paired: bool) -> Step:
    return Disconnect(_who(_options(value, ("who",)), "both"))


def _pair(value: Field, paired: bool) -> Step:
    keys = _options(value, ("timeout",))
    return Pair(parse_duration(keys["timeout"]) if "timeout" in keys else 10.0)


def _http(value: Field, paired: bool) -> Step:
    keys = _options(value, ("op", "action", "count", "who", "candidates"))
    op = keys["op"].string() if "op" in keys else "swipe"
    if op not in HTTP_OPS:
        raise keys["op"].error(f"expected one of {', '.join(HTTP_OPS)}, got {op!r}")
    candidates = 100
    if "candidates" in keys:
        if op != "deck_filter":
            raise keys["candidates"].error("candidates goes with op: deck_filter")
        candidates = keys["candidates"].integer(minimum=1)
        if candidates > MAX_CANDIDATES:
            raise keys["candidates"].error(f"the deck filter takes at most {MAX_CANDIDATES} "
                                           f"candidates, got {candidates}")
    action = keys["action"].string() if "action" in keys else "like"
    if action not in SWIPE_ACTIONS:
        raise keys["action"].error(f"expected one of {', '.join(SWIPE_ACTIONS)}, got "
                                   f"{action!r}")
    count = keys["count"].integer(minimum=1) if "count" in keys else 1
    return Http(op, action, count, _who(keys, "a"), candidates)


def _send(value: Field, paired: bool) -> Step:
    keys = value.mapping(("rate", "duration", "count", "who"), required=("rate",))
    if ("duration" in keys) == ("count" in keys):
        raise value.error("give duration or count (one of them)")
    return Send(
        rate=parse_rate(keys["rate"]),
        duration_s=parse_duration(keys["duration"]) if "duration" in keys else None,
        count=keys["count"].integer(minimum=1) if "count" in keys else None,
        who=_who(keys, "both"),
    )


def _typing(value: Field, paired: bool) -> Step:
    return Typing(_who(_options(value, ("who",)), "a"))


def _read(value: Field, paired: bool) -> Step:
    return Read(_who(_options(value, ("who",)), "both"))


def _unsend(value: Field, paired: bool) -> Step:
    return Unsend(_who(_options(value, ("who",)), "a"))


def _expect(value: Field, paired: bool) -> Step:
    keys = value.mapping(("type", "timeout", "who"), required=("type",))
    kind = keys["type"].string()
    if kind not in FRAME_TYPES:
        raise keys["type"].error(f"expected a server frame type ({', '.join(FRAME_TYPES)}), "
                                 f"got {kind!r}")
    timeout = parse_duration(keys["timeout"]) if "timeout" in keys else 5.0
    return Expect(kind, timeout, _who(keys, "a"))


def _think(value: Field, paired: bool) -> Step:
    if value.is_scalar:
        return Think("constant", parse_duration(value, allow_zero=True))
    keys = value.mapping(("constant", "uniform", "exponential"))
    if len(keys) != 1:
        raise value.error("give one of constant: 1s, uniform: [1s, 3s], exponential: 2s")
    (dist, arg), = keys.items()
    if dist == "uniform":
        bounds = arg.sequence()
        if len(bounds) != 2:
            raise arg.error("expected [low, high], like [1s, 3s]")
        low = parse_duration(bounds[0], allow_zero=True)
        high = parse_duration(bounds[1], allow_zero=True)
        if high < low:
            raise bounds[1].error("high must be at least low")
        return Think("uniform", low, high)
    return Think(dist, parse_duration(arg, allow_zero=dist == "constant"))


def _loop(value: Field, paired: bool) -> Step:
    keys = value.mapping(("count", "duration", "steps"), required=("steps",))
    if ("duration" in keys) == ("count" in keys):
        raise value.error("give count or duration (one of them)")
    steps = parse_flow(keys["steps"], paired)
    return Loop(steps,
                count=keys["count"].integer(minimum=1) if "count" in keys else None,
                duration_s=parse_duration(keys["duration"]) if "duration" in keys else None)


def _choice(value: Field, paired: bool) -> Step:
    options: list[tuple[float, tuple[Step, ...]]] = []
    for item in value.sequence():
        keys = item.mapping(("weight", "steps"), required=("steps",))
        weight = keys["weight"].number(positive=True) if "weight" in keys else 1.0
        options.append((weight, parse_flow(keys["steps"], paired)))
    return Choice(tuple(options))


def _flap(value: Field, paired: bool) -> Step:
    keys = _options(value, ("who", "offline"))
    offline = parse_duration(keys["offline"], allow_zero=True) if "offline" in keys else 1.0
    return Flap(_who(keys, "a"), offline)


def _chaos(value: Field, paired: bool) -> Step:
    keys = _options(value, ("drop", "who", "reconnect_after"))
    drop = keys["drop"].number(positive=True) if "drop" in keys else 1.0
    if drop > 1:
        raise keys["drop"].error(f"a probability is 0..1, got {drop:g}")
    after = (parse_duration(keys["reconnect_after"], allow_zero=True)
             if "reconnect_after" in keys else 0.0)
    return Chaos(drop, _who(keys, "a"), after)


PARSERS: dict[str, Callable[[Field, bool], Step]] = {
    "connect": _connect, "disconnect": _disconnect, "pair": _pair, "http": _http,
    "send": _send, "typing": _typing, "read": _read, "expect": _expect, "think": _think,
    "loop": _loop, "choice": _choice, "flap": _flap, "chaos": _chaos, "unsend": _unsend,
}
