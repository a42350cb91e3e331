"""benchmarks/fuzz_soak.py runs end to end against a node it starts (tiny N)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_soak_script_runs_and_reports() -> None:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fuzz_soak.py"),
                             "--frames", "800", "--seed", "3"], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    report = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert report["frames sent"] == "800"
    assert report["crashes (node exits)"] == "0"
    assert report["tracebacks in the node log"] == "0"
    assert report["unanswered frames with r"] == "0"
    assert report["control messages lost"] == "0"
    assert int(report["node RSS after (KiB)"]) > 0
    assert "fuzzing ws://" in result.stderr


def test_the_soak_script_has_help() -> None:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fuzz_soak.py"),
                          "--help"], capture_output=True, text=True, check=True, cwd=REPO)
    assert "--frames" in out.stdout and "200,000" in out.stdout
