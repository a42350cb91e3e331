"""Ratios are taken within a round against the right baseline, then summarised over rounds."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.sbs.report import add_ratios, summarize, table


def rec(rnd: int, server: str, rate: float, load: str = "closed 50") -> dict[str, Any]:
    return {"round": rnd, "server": server, "load": load, "msg_per_s": rate, "p50_ms": 1.0,
            "p99_ms": 2.0, "cpu_s_per_1k": 0.1, "lost": 0, "load_cores": 0.5}


def test_ratios_use_the_same_round_and_the_matching_socketio_row() -> None:
    records = [rec(1, "relay", 1000), rec(1, "sio-1", 500), rec(1, "sio-2", 250),
               rec(1, "rdv-1", 400), rec(1, "rdv-2", 100),
               rec(2, "relay", 2000), rec(2, "sio-1", 1000), rec(2, "sio-2", 500),
               rec(2, "rdv-1", 600), rec(2, "rdv-2", 300)]
    add_ratios(records)
    by = {(r["round"], r["server"]): r for r in records}
    assert by[1, "rdv-1"]["x_relay"] == pytest.approx(0.4)
    assert by[1, "rdv-1"]["x_sio"] == pytest.approx(0.8)  # single server: sio-1
    assert by[1, "rdv-2"]["x_sio"] == pytest.approx(0.4)  # clustered: sio-2
    assert by[2, "rdv-2"]["x_sio"] == pytest.approx(0.6)
    rows = {r["server"]: r for r in summarize(records)}
    assert rows["rdv-2"]["x_sio"] == pytest.approx(0.5)  # median of 0.4 and 0.6
    assert rows["rdv-2"]["msg_per_s"] == 200
    assert (rows["rdv-2"]["msg_per_s_min"], rows["rdv-2"]["msg_per_s_max"]) == (100, 300)
    assert "Rendezvous 2 nodes + Redis" in table(list(rows.values()))


def test_a_missing_baseline_gives_no_ratio_rather_than_a_wrong_one() -> None:
    records = [rec(1, "rdv-1", 400), rec(1, "relay", 0.0)]
    add_ratios(records)
    assert records[0]["x_relay"] is None and records[0]["x_sio"] is None
