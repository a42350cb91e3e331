"""A bad configuration file stops the real CLI with the bad key named, for both
`rendezvous config check FILE` and `rendezvous serve --config FILE` (tests/server/test_config.py
covers the loader itself; this is what an operator sees)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.node_process import CLI, env_without_secret

SECRET_ENV = {**env_without_secret(), "RENDEZVOUS_JWT_SECRET": "ops-test-secret-0123456789abcdef"}
BAD_FILES = [
    ('ws_port = "x"\n', "ws_port (from file"),
    ("no_such_setting = 1\n", "no_such_setting (from file"),
    ('log_format = "xml"\n', "log_format must be json, text or auto, got 'xml' (from file"),
    ('log_level = "LOUD"\n', "log_level must be DEBUG, INFO, WARNING or ERROR"),
    ("node_id = 100000\n", "node_id must be 0..1023, got 100000 (from file"),
    ("[limits]\nmax_frame_bytes = \"big\"\n", "limits.max_frame_bytes"),
]


def run(*args: str, env: dict[str, str] = SECRET_ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.mark.parametrize(("text", "named"), BAD_FILES)
@pytest.mark.parametrize("command", ["check", "serve"])
def test_a_bad_file_fails_with_the_key_named(tmp_path: Path, command: str, text: str,
                                             named: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    if command == "check":
        out = run("config", "check", str(path))
    else:
        out = run("serve", "--config", str(path), "--data-dir", str(tmp_path / "data"),
                  "--ws-port", "0", "--http-port", "0")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "bad configuration" in out.stderr and named in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data" / "rendezvous.db").exists()  # it never started


def test_a_bad_environment_value_is_named(tmp_path: Path) -> None:
    out = run("serve", "--data-dir", str(tmp_path), "--ws-port", "0", "--http-port", "0",
              env={**SECRET_ENV, "RENDEZVOUS_LOG_FORMAT": "yaml"})
    assert out.returncode == 2, out.stderr
    assert "log_format must be json, text or auto, got 'yaml' (from env)" in out.stderr


def test_a_bad_log_format_flag_is_named(tmp_path: Path) -> None:
    out = run("serve", "--data-dir", str(tmp_path), "--log-format", "xml")
    assert out.returncode == 2 and "--log-format" in out.stderr


def test_the_logging_keys_check(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text('log_level = "DEBUG"\nlog_format = "json"\n')
    out = run("config", "check", str(path))
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr
