"""Scenario validation: every shipped file loads; every bad file names its line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loadtest.cli import UsageError, parse_addresses, parse_targets
from loadtest.runner import share
from loadtest.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from loadtest.steps import Chaos, Choice, Expect, Flap, Loop, Pair, Send, Think

SCENARIOS = Path(__file__).resolve().parents[2] / "loadtest" / "scenarios"
SHIPPED = ("smoke", "steady_chat", "swipe_burst", "reconnect_storm", "idle_capacity")

GOOD = """\
name: everything
targets:
  - {name: a, ws: "ws://127.0.0.1:1/v1/ws", http: "http://127.0.0.1:2", weight: 3}
  - {name: b, ws: "ws://127.0.0.1:3/v1/ws", http: "http://127.0.0.1:4/"}
auth: {secret: inline-secret, issuer: me, audience: app, ttl: 2h}
personas:
  - name: chatter
    weight: 2
    flow:
      - connect
      - pair: {timeout: 3s}
      - send: {rate: 2/s, duration: 5s}
      - loop:
          count: 2
          steps:
            - typing
            - expect: {type: typing, who: b, timeout: 1s}
            - think: {exponential: 200ms}
      - choice:
          - weight: 3
            steps: [read]
          - steps: [{flap: {offline: 1s}}]
      - chaos: {drop: 0.5, reconnect_after: 100ms}
      - send: {rate: 30/m, count: 3, who: a}
      - think: {uniform: [1s, 2s]}
  - name: swiper
    flow:
      - http: {op: swipe, action: pass, count: 5}
      - think: 1.5
phases:
  - {name: warm, ramp: {from: 0/s, to: 10/s}, duration: 10s}
  - {users: 20, duration: 1m}
  - {ramp: {from: 20, to: 0}, duration: 5s}
chaos:
  - {at: 30s, drop: 0.25}
  - {at: 40s, storm: true}
thresholds:
  - p99(delivery) < 200ms
  - lost == 0
options: {max_send_lag: 500ms, drain: 0s, subprotocol: rdv.v1.json}
"""


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_loads(name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert scenario.name == name
    assert scenario.targets and scenario.personas and scenario.phases
    assert scenario.duration_s > 0


def test_a_file_using_every_key_loads_to_the_values_written() -> None:
    s = parse_scenario(GOOD, "good.yaml")
    assert [(t.name, t.weight, t.http) for t in s.targets] == [
        ("a", 3.0, "http://127.0.0.1:2"), ("b", 1.0, "http://127.0.0.1:4")]
    assert (s.auth.secret, s.auth.issuer, s.auth.audience, s.auth.ttl_s) == (
        "inline-secret", "me", "app", 7200)
    assert s.auth.secret_env is None  # an explicit secret is not shadowed by the env
    chatter, swiper = s.personas
    assert chatter.weight == 2.0 and len(chatter.flow) == 8
    assert chatter.flow[1] == Pair(timeout_s=3.0)
    assert chatter.flow[2] == Send(rate=2.0, duration_s=5.0)
    loop = chatter.flow[3]
    assert isinstance(loop, Loop) and loop.count == 2
    assert loop.steps[1] == Expect("typing", 1.0, "b")
    assert loop.steps[2] == Think("exponential", 0.2)
    choice = chatter.flow[4]
    assert isinstance(choice, Choice)
    assert [w for w, _ in choice.options] == [3.0, 1.0]
    assert choice.options[1][1] == (Flap("a", 1.0),)
    assert chatter.flow[5] == Chaos(0.5, "a", 0.1)
    assert chatter.flow[6] == Send(rate=0.5, count=3, who="a")
    assert chatter.flow[7] == Think("uniform", 1.0, 2.0)
    assert swiper.flow[1] == Think("constant", 1.5)
    warm, hold, down = s.phases
    assert (warm.kind, warm.start, warm.end, warm.duration_s) == ("open", 0.0, 10.0, 10.0)
    assert warm.level(5.0) == 5.0
    assert (hold.kind, hold.start, hold.duration_s) == ("closed", 20.0, 60.0)
    assert (down.kind, down.start, down.end) == ("closed", 20.0, 0.0)
    assert [(c.at_s, c.share, c.storm) for c in s.chaos] == [(30.0, 0.25, False),
                                                           (40.0, 1.0, True)]
    assert [t.text for t in s.thresholds] == ["p99(delivery) < 200ms", "lost == 0"]
    assert (s.max_send_lag_s, s.drain_s, s.subprotocol) == (0.5, 0.0, "rdv.v1.json")


def test_overrides_scale_durations_and_closed_users() -> None:
    s = parse_scenario(GOOD, "good.yaml").overridden(duration_scale=0.5, users=40)
    assert [p.duration_s for p in s.phases] == [5.0, 30.0, 2.5]
    assert [(p.start, p.end) for p in s.phases] == [(0.0, 10.0), (40, 40), (40, 0)]
    assert [c.at_s for c in s.chaos] == [15.0, 20.0]


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(textwrap.dedent(text), "bad.yaml")
    return str(caught.value)


HEAD = """\
targets:
  - {ws: "ws://h:1/v1/ws", http: "http://h:2"}
personas:
  - flow: [connect]
"""

BAD = [
    # (file text, expected line, expected text in the message)
    (HEAD + "phases:\n  - {users: 2, duration: 5s}\n  - {rate: 50, duration: 5s}\n",
     7, "phases[1].rate: expected a number like 50/s"),
    (HEAD + "phases:\n  - {users: 2, duration: soon}\n", 6,
     "phases[0].duration: expected a duration like 5s"),
    (HEAD + "phases:\n  - {users: 2, rate: 1/s, duration: 5s}\n", 6, "phases[0]: give exactly"),
    (HEAD + "phases:\n  - {users: 2}\n", 6, "phases[0]: missing key 'duration'"),
    (HEAD + "phases:\n  - {users: -1, duration: 1s}\n", 6, "phases[0].users: must be at least 1"),
    (HEAD + "phases: [{users: 1, duration: 1s}]\nthresholds:\n  - lost == 0\n"
     "  - p99(delivery) <\n", 8, "thresholds[1]: cannot read"),
    (HEAD + "phases: [{users: 1, duration: 1s}]\nspeed: 3\n", 6,
     "speed: unknown key"),
    ("targets:\n  - {ws: 'http://h:1', http: 'http://h:2'}\npersonas: [{flow: [connect]}]\n"
     "phases: [{users: 1, duration: 1s}]\n", 2, "targets[0].ws: expected a ws://"),
    ("targets: []\npersonas: [{flow: [connect]}]\nphases: [{users: 1, duration: 1s}]\n", 1,
     "targets: expected a non-empty list"),
    (HEAD.replace("[connect]", "\n      - connect\n      - send: {rate: 1/s, count: 2}")
     + "phases: [{users: 1, duration: 1s}]\n", 6, "personas[0].flow[1]: send needs a pair"),
    (HEAD.replace("[connect]", "\n      - connect\n      - unsend")
     + "phases: [{users: 1, duration: 1s}]\n", 6, "personas[0].flow[1]: unsend needs a pair"),
    (HEAD.replace("[connect]", "\n      - pair\n      - unsend: {who: c}")
     + "phases: [{users: 1, duration: 1s}]\n", 6, "flow[1].unsend.who"),
    (HEAD.replace("[connect]", "\n      - pair\n      - send: {rate: 1/s}")
     + "phases: [{users: 1, duration: 1s}]\n", 6, "flow[1].send: give duration or count"),
    (HEAD.replace("[connect]", "\n      - pair\n      - shout: {loud: true}")
     + "phases: [{users: 1, duration: 1s}]\n", 6, "flow[1].shout: unknown step"),
    (HEAD.replace("[connect]", "\n      - pair\n      - expect: {type: hello}")
     + "phases: [{users: 1, duration: 1s}]\n", 6, "flow[1].expect.type: expected a server"),
    (HEAD.replace("[connect]", "\n      - think: {uniform: [3s, 1s]}")
     + "phases: [{users: 1, duration: 1s}]\n", 5, "think.uniform[1]: high must be"),
    (HEAD.replace("[connect]", "\n      - pair\n      - loop: {count: 2, steps: [pair]}")
     + "phases: [{users: 1, duration: 1s}]\n", 6, "loop.steps[0]: a session pairs once"),
    (HEAD.replace("[connect]", "\n      - connect\n      - flap: {who: c}")
     + "phases: [{users: 1, duration: 1s}]\n", 6, "flow[1].flap.who: expected a, b or both"),
    (HEAD + "phases: [{users: 1, duration: 1s}]\nchaos:\n  - {at: 5s, drop: 2}\n", 7,
     "chaos[0].drop: a share of sockets is 0..1"),
    (HEAD + "phases: [{users: 1, duration: 1s}]\nauth: {ttl: 10s}\n", 6,
     "auth.ttl: must be at least 60s"),
    (HEAD + "phases: [{users: 1, duration: 1s}]\noptions: {subprotocol: xml}\n", 6,
     "options.subprotocol: expected rdv.v1.msgpack"),
    (HEAD + "phases:\n  - {users: 1, duration: 1s\n", 7, "YAML syntax"),
    (HEAD + "phases: [{users: 1, duration: 1s}]\nphases: []\n", 6, "phases: duplicate key"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_a_bad_file_names_its_line_and_key(text: str, line: int, message: str) -> None:
    error = _error(text)
    assert error.startswith(f"bad.yaml:{line}: "), error
    assert message in error, error


def test_auth_secret_comes_from_env_then_file(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    s = parse_scenario(HEAD + "phases: [{users: 1, duration: 1s}]\n"
                       f"auth: {{secret_env: LT_TEST_SECRET, secret_file: {secret_file}}}\n")
    monkeypatch.delenv("LT_TEST_SECRET", raising=False)
    assert s.auth.resolve_secret() == "from-file"
    monkeypatch.setenv("LT_TEST_SECRET", "from-env")
    assert s.auth.resolve_secret() == "from-env"
    missing = s.overridden(secret_file=str(tmp_path / "nope")).auth
    with pytest.raises(ScenarioError, match=r"auth\.secret_file: cannot read"):
        missing.resolve_secret()


def test_shipped_scenarios_are_what_their_names_say() -> None:
    smoke = load_scenario(SCENARIOS / "smoke.yaml")
    assert {t.text for t in smoke.thresholds} >= {"p99(delivery) < 200ms", "lost == 0"}
    storm = load_scenario(SCENARIOS / "reconnect_storm.yaml")
    assert any(c.storm and c.share == 1.0 for c in storm.chaos)
    idle: Scenario = load_scenario(SCENARIOS / "idle_capacity.yaml")
    assert max(max(p.start, p.end) for p in idle.phases if p.kind == "closed") == 20_000


def test_worker_shares_add_up_to_the_total() -> None:
    for total in (0, 1, 7, 20_000, 12.6):
        for workers in (1, 3, 8):
            shares = [share(total, i, workers) for i in range(workers)]
            assert sum(shares) == round(total)
            assert max(shares) - min(shares) <= 1


def test_command_line_targets_and_source_addresses() -> None:
    a, b = parse_targets(["A=ws://h:1/v1/ws,http://h:2/", "ws://h:3/v1/ws,http://h:4"])
    assert (a.name, a.ws, a.http) == ("A", "ws://h:1/v1/ws", "http://h:2")
    assert (b.name, b.http) == ("node-2", "http://h:4")
    with pytest.raises(UsageError, match="--target"):
        parse_targets(["ws://h:1/v1/ws"])
    assert parse_addresses("127.0.0.1, 127.0.0.2") == ["127.0.0.1", "127.0.0.2"]
    assert parse_addresses("127.0.0.0/30") == ["127.0.0.1", "127.0.0.2"]
    assert parse_addresses("127.0.0.5-127.0.0.7") == ["127.0.0.5", "127.0.0.6", "127.0.0.7"]
    with pytest.raises(UsageError, match="--source-addresses: 'localhost'"):
        parse_addresses("localhost")
