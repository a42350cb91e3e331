"""The side-by-side benchmark runs end to end at a tiny load and reports figures that add up.

It starts real servers (the bare relay and an embedded Rendezvous node) and real load
processes, so a relay that drops frames, a node that refuses sends (rate limits not raised),
a CPU sample that reads nothing or a merge that loses a process's counts all fail here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "side_by_side.py"


def run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "out.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Rendezvous rate limits raised" in done.stdout
    return {"stdout": done.stdout, **json.loads(out.read_text())}


@pytest.mark.timeout(180)
def test_tiny_run_against_relay_and_embedded_node(tmp_path: Path) -> None:
    result = run(tmp_path, "--only", "relay,rdv-1", "--pairs", "3", "--seconds", "1",
                 "--rounds", "1", "--warmup", "0.3", "--open-rates", "100",
                 "--open-seconds", "1")
    windows = result["windows"]
    assert {(w["server"], w["load"]) for w in windows} == {
        ("relay", "closed 3"), ("relay", "open 3"), ("rdv-1", "closed 3"), ("rdv-1", "open 3")}
    for w in windows:
        if w["kind"] == "closed":
            assert w["sent"] == w["acked"] == w["delivered"] > 0, w
            assert w["msg_per_s"] == pytest.approx(w["delivered"] / w["seconds"])
            assert 0 < w["p50_ms"] <= w["p99_ms"] <= w["max_ms"], w
            assert w["server_cpu_s"] > 0 and w["cpu_s_per_1k"] > 0, w
            assert w["load_cpu_s"] > 0, w
            assert w["lost"] == 0 and w["errors"] == 0, w
        else:  # on a busy machine a server may miss 50 ms at 100/s: the counts must add up
            for step in w["steps"]:
                assert step["sent"] == 100, step  # 100 msg/s for 1 s, whatever the server did
                assert step["delivered"] + step["lost"] == step["sent"] > 0, step
                assert step["errors"] == 0, step
    relay_open = next(w for w in windows if w["server"] == "relay" and w["kind"] == "open")
    assert relay_open["steps"][0]["delivered"] == 100  # held or not (a 50 ms stall on a
    assert relay_open["msg_per_s"] in (0, 100)          # shared machine), nothing is lost
    rows = {(r["server"], r["load"]): r for r in result["summary"]}
    assert rows["relay", "closed 3"]["x_relay"] == 1.0
    node = rows["rdv-1", "closed 3"]
    assert node["x_relay"] == pytest.approx(node["msg_per_s"]
                                            / rows["relay", "closed 3"]["msg_per_s"])
    assert "Rendezvous embedded (SQLite)" in result["stdout"]


@pytest.mark.timeout(180)
def test_tiny_storm_brings_every_client_back(tmp_path: Path) -> None:
    result = run(tmp_path, "--storm", "20", "--storm-spread", "0.5")
    storm = result["storm"]
    assert storm["clients"] == 20
    assert storm["back"] == 20 and storm["not_back"] == 0 and storm["empty_syncs"] == 0
    assert 0 < storm["p50_s"] <= storm["p99_s"] <= storm["max_s"] < 30


@pytest.mark.timeout(120)
def test_tiny_relay_storm_is_the_ceiling_run(tmp_path: Path) -> None:
    result = run(tmp_path, "--storm", "20", "--storm-spread", "0.5", "--storm-server", "relay")
    storm = result["storm"]
    assert storm["server"] == "relay" and storm["clients"] == 20
    assert storm["back"] == 20 and storm["not_back"] == 0
    assert storm["empty_syncs"] == 20  # the relay stores nothing: every sync is empty
    assert 0 < storm["p50_s"] <= storm["max_s"] < 30
