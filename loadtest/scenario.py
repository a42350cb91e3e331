"""Scenario files: YAML in, a frozen, fully validated `Scenario` out.

Everything is checked before a single socket opens, and every error names the file, the line
and the key (`smoke.yaml:14: phases[1].rate: expected a number like 50/s`). The step types
are in `loadtest.steps`; this module knows the file's top level, targets, auth, phases,
personas and thresholds. Docs: docs/loadtest.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.steps import Step, parse_flow
from loadtest.thresholds import Threshold, parse_threshold
from loadtest.yamlread import Field, ScenarioError, compose, is_rate, parse_duration, parse_rate

__all__ = ["Auth", "Chaos", "Persona", "Phase", "Scenario", "ScenarioError", "Target",
           "load_scenario", "parse_duration", "parse_rate"]

TOP_KEYS = ("name", "description", "targets", "auth", "personas", "phases", "chaos",
            "thresholds", "options")
OPTION_KEYS = ("max_send_lag", "drain", "grace", "subprotocol", "connect_timeout",
               "user_prefix")


@dataclass(frozen=True, slots=True)
class Target:
    """One node: its WebSocket URL, its HTTP API URL, and its share of the users."""

    name: str
    ws: str
    http: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Auth:
    """How virtual users get tokens: HS256, signed with a secret from env, a file or inline."""

    secret_env: str | None = "RENDEZVOUS_JWT_SECRET"
    secret_file: str | None = None
    secret: str | None = None
    issuer: str | None = None
    audience: str | None = None
    ttl_s: int = 3600

    def resolve_secret(self) -> str:
        """The secret in force: the env var when set, else the file, else the inline one."""
        if self.secret_env and os.environ.get(self.secret_env):
            return os.environ[self.secret_env]
        if self.secret_file:
            try:
                text = Path(self.secret_file).read_text().strip()
            except OSError as exc:
                raise ScenarioError(f"auth.secret_file: cannot read {self.secret_file}: "
                                    f"{exc.strerror}") from None
            if text:
                return text
            raise ScenarioError(f"auth.secret_file: {self.secret_file} is empty")
        if self.secret:
            return self.secret
        raise ScenarioError(f"auth: no secret: set ${self.secret_env or 'auth.secret_env'}, "
                            "auth.secret_file or --secret-file")


@dataclass(frozen=True, slots=True)
class Phase:
    """A load shape for `duration_s`: open arrivals (`rate` per s) or closed (`users`).

    `start` and `end` are equal for a constant phase and differ for a ramp.
    """

    name: str
    kind: str  # "open" | "closed"
    start: float
    end: float
    duration_s: float

    def level(self, elapsed_s: float) -> float:
        if self.duration_s <= 0:
            return self.end
        frac = min(max(elapsed_s / self.duration_s, 0.0), 1.0)
        return self.start + (self.end - self.start) * frac


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    weight: float
    flow: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Chaos:
    """At `at_s` into the run, drop `share` of all open sockets at once (`storm`: all of them
    reconnect immediately; otherwise with the jitter an app would use)."""

    at_s: float
    share: float
    storm: bool


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    file: str
    targets: tuple[Target, ...]
    auth: Auth
    personas: tuple[Persona, ...]
    phases: tuple[Phase, ...]
    chaos: tuple[Chaos, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    max_send_lag_s: float = 1.0
    drain_s: float = 10.0
    grace_s: float = 3.0
    subprotocol: str = "rdv.v1.msgpack"
    connect_timeout_s: float = 10.0
    user_prefix: str = "lt"

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.phases)

    def overridden(self, *, targets: tuple[Target, ...] = (), duration_scale: float = 1.0,
                   users: int | None = None, secret_file: str | None = None) -> Scenario:
        """The same scenario with command-line overrides applied."""
        peak = max((max(p.start, p.end) for p in self.phases if p.kind == "closed"),
                   default=0.0)
        factor = users / peak if users is not None and peak else 1.0
        phases = tuple(dataclasses.replace(
            p, duration_s=p.duration_s * duration_scale,
            start=round(p.start * factor) if p.kind == "closed" else p.start,
            end=round(p.end * factor) if p.kind == "closed" else p.end,
        ) for p in self.phases)
        chaos = tuple(dataclasses.replace(c, at_s=c.at_s * duration_scale) for c in self.chaos)
        auth = self.auth
        if secret_file is not None:
            auth = dataclasses.replace(auth, secret_env=None, secret_file=secret_file)
        return dataclasses.replace(self, targets=targets or self.targets, phases=phases,
                                   chaos=chaos, auth=auth)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for the report (no secrets)."""
        return {
            "name": self.name, "description": self.description, "file": self.file,
            "targets": [dataclasses.asdict(t) for t in self.targets],
            "personas": [{"name": p.name, "weight": p.weight, "steps": len(p.flow)}
                         for p in self.personas],
            "phases": [dataclasses.asdict(p) for p in self.phases],
            "chaos": [dataclasses.asdict(c) for c in self.chaos],
            "thresholds": [t.text for t in self.thresholds],
            "duration_s": self.duration_s,
        }


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; `ScenarioError` names the first problem's line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_scenario(text, path.name, default_name=path.stem)


def parse_scenario(text: str, file: str = "<scenario>", default_name: str = "scenario"
                   ) -> Scenario:
    root = compose(text, file)
    top = root.mapping(TOP_KEYS, required=("targets", "personas", "phases"))
    options = top["options"].mapping(OPTION_KEYS) if "options" in top else {}
    kwargs: dict[str, Any] = {}
    if "max_send_lag" in options:
        kwargs["max_send_lag_s"] = parse_duration(options["max_send_lag"])
    if "drain" in options:
        kwargs["drain_s"] = parse_duration(options["drain"], allow_zero=True)
    if "grace" in options:
        kwargs["grace_s"] = parse_duration(options["grace"], allow_zero=True)
    if "connect_timeout" in options:
        kwargs["connect_timeout_s"] = parse_duration(options["connect_timeout"])
    if "subprotocol" in options:
        sub = options["subprotocol"].string()
        if sub not in ("rdv.v1.msgpack", "rdv.v1.json"):
            raise options["subprotocol"].error(
                f"expected rdv.v1.msgpack or rdv.v1.json, got {sub!r}")
        kwargs["subprotocol"] = sub
    if "user_prefix" in options:
        prefix = options["user_prefix"].string()
        if len(prefix) > 12 or not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
            raise options["user_prefix"].error("expected up to 12 letters, digits, - or _")
        kwargs["user_prefix"] = prefix
    personas = _personas(top["personas"])
    return Scenario(
        name=top["name"].string() if "name" in top else default_name,
        description=top["description"].string() if "description" in top else "",
        file=file,
        targets=_targets(top["targets"]),
        auth=_auth(top["auth"]) if "auth" in top else Auth(),
        personas=personas,
        phases=_phases(top["phases"]),
        chaos=_chaos(top["chaos"]) if "chaos" in top else (),
        thresholds=_thresholds(top["thresholds"]) if "thresholds" in top else (),
        **kwargs,
    )


def _targets(field: Field) -> tuple[Target, ...]:
    targets: list[Target] = []
    for i, item in enumerate(field.sequence()):
        keys = item.mapping(("name", "ws", "http", "weight"), required=("ws", "http"))
        ws = keys["ws"].string()
        if not ws.startswith(("ws://", "wss://")):
            raise keys["ws"].error(f"expected a ws:// or wss:// URL, got {ws!r}")
        http = keys["http"].string()
        if not http.startswith(("http://", "https://")):
            raise keys["http"].error(f"expected an http:// or https:// URL, got {http!r}")
        name = keys["name"].string() if "name" in keys else f"node-{i + 1}"
        if any(t.name == name for t in targets):
            raise (keys.get("name") or item).error(f"target name {name!r} is used twice")
        weight = keys["weight"].number(positive=True) if "weight" in keys else 1.0
        targets.append(Target(name, ws, http.rstrip("/"), weight))
    return tuple(targets)


def _auth(field: Field) -> Auth:
    keys = field.mapping(("secret_env", "secret_file", "secret", "issuer", "audience", "ttl"))
    ttl = int(parse_duration(keys["ttl"])) if "ttl" in keys else 3600
    if ttl < 60:
        raise keys["ttl"].error("must be at least 60s")
    values = {k: keys[k].string() for k in ("secret_env", "secret_file", "secret", "issuer",
                                             "audience") if k in keys}
    if not values.get("secret_env") and not values.get("secret_file") \
            and not values.get("secret"):
        values.setdefault("secret_env", "RENDEZVOUS_JWT_SECRET")
    elif "secret_env" not in values:
        values["secret_env"] = ""
    return Auth(secret_env=values.get("secret_env") or None,
                secret_file=values.get("secret_file"), secret=values.get("secret"),
                issuer=values.get("issuer"), audience=values.get("audience"), ttl_s=ttl)


def _phases(field: Field) -> tuple[Phase, ...]:
    phases: list[Phase] = []
    for i, item in enumerate(field.sequence()):
        keys = item.mapping(("name", "duration", "rate", "users", "ramp"),
                            required=("duration",))
        shapes = [k for k in ("rate", "users", "ramp") if k in keys]
        if len(shapes) != 1:
            raise item.error("give exactly one of rate (open arrivals), users (closed) "
                             "or ramp")
        duration = parse_duration(keys["duration"])
        name = keys["name"].string() if "name" in keys else f"phase-{i + 1}"
        if "rate" in keys:
            rate = parse_rate(keys["rate"])
            phases.append(Phase(name, "open", rate, rate, duration))
        elif "users" in keys:
            users = keys["users"].integer(minimum=1)
            phases.append(Phase(name, "closed", users, users, duration))
        else:
            ramp = keys["ramp"].mapping(("from", "to"), required=("from", "to"))
            if is_rate(ramp["from"]) or is_rate(ramp["to"]):
                start = parse_rate(ramp["from"], allow_zero=True)
                end = parse_rate(ramp["to"], allow_zero=True)
                kind = "open"
            else:
                start = float(ramp["from"].integer(minimum=0))
                end = float(ramp["to"].integer(minimum=0))
                kind = "closed"
            if start == end == 0:
                raise keys["ramp"].error("a ramp from 0 to 0 starts nothing")
            phases.append(Phase(name, kind, start, end, duration))
    return tuple(phases)


def _personas(field: Field) -> tuple[Persona, ...]:
    personas: list[Persona] = []
    for i, item in enumerate(field.sequence()):
        keys = item.mapping(("name", "weight", "flow"), required=("flow",))
        name = keys["name"].string() if "name" in keys else f"persona-{i + 1}"
        weight = keys["weight"].number(positive=True) if "weight" in keys else 1.0
        personas.append(Persona(name, weight, parse_flow(keys["flow"])))
    return tuple(personas)


def _chaos(field: Field) -> tuple[Chaos, ...]:
    events: list[Chaos] = []
    for item in field.sequence():
        keys = item.mapping(("at", "drop", "storm"), required=("at",))
        at = parse_duration(keys["at"], allow_zero=True)
        if "drop" not in keys and "storm" not in keys:
            raise item.error("give drop (a share of sockets, 0..1) and/or storm: true")
        share = keys["drop"].number(positive=True) if "drop" in keys else 1.0
        if share > 1:
            raise keys["drop"].error(f"a share of sockets is 0..1, got {share:g}")
        storm = keys["storm"].boolean() if "storm" in keys else False
        events.append(Chaos(at, share, storm))
    return tuple(events)


def _thresholds(field: Field) -> tuple[Threshold, ...]:
    out: list[Threshold] = []
    for item in field.sequence(allow_empty=True):
        text = item.string()
        try:
            out.append(parse_threshold(text))
        except ValueError as exc:
            raise item.error(str(exc)) from None
    return tuple(out)
