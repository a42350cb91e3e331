"""Configuration: flags over environment over file over defaults; bad keys are named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from server.config import ConfigError
from server.config_load import load

REPO = Path(__file__).resolve().parents[2]
SECRET = {"RENDEZVOUS_JWT_SECRET": "a-long-enough-secret-for-hs256-0123456789"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rdv.toml"
    path.write_text(text)
    return path


def test_precedence_flags_env_file_defaults(tmp_path: Path) -> None:
    file = write(tmp_path, 'ws_port = 9001\nhttp_port = 9002\nhost = "0.0.0.0"\n'
                 'redis_url = "redis://file:6379/0"\n[limits]\nmax_body_chars = 1000\n')
    env = {**SECRET, "RENDEZVOUS_HTTP_PORT": "9102", "RENDEZVOUS_REDIS_URL":
           "redis://env:6379/0", "RENDEZVOUS_RECONNECT_JITTER_MS": "10,20"}
    config, origin = load(file, {"redis_url": "redis://flag:6379/0", "host": None}, env)
    assert config.ws_port == 9001  # file
    assert config.http_port == 9102  # env over file
    assert config.redis_url == "redis://flag:6379/0"  # flag over env
    assert config.host == "0.0.0.0"  # a flag left unset does not hide the file
    assert config.limits.max_body_chars == 1000 and config.limits.history_max == 100
    assert config.reconnect_jitter_ms == (10, 20)
    assert origin == "$RENDEZVOUS_JWT_SECRET" and config.clustered


@pytest.mark.parametrize(("text", "named"), [
    ("ws_portt = 1\n", "ws_portt (from file"),
    ('ws_port = "eighty"\n', "ws_port (from file"),
    ("ws_port = 70000\n", "ws_port must be 0..65535"),
    ("[limits]\nmax_body_chars = 1.5\n", "limits.max_body_chars"),
    ("[limits]\nmax_bodychars = 1\n", "limits.max_bodychars"),
    ('redis_url = "http://x"\n', "redis_url must start with redis://"),
    ('redis_cluster_nodes = ["nohost"]\n', "redis_cluster_nodes: 'nohost'"),
    ("workers = 2\n", "workers > 1 needs redis_url"),
    ("node_id = 4096\n", "node_id must be 0..1023"),
    ('jwt_public_keys = ["RS256"]\n', "jwt_public_keys"),
    ("jwt_hs256 = false\n", "jwt_keys: no key configured"),
    ("heartbeat_s = true\n", "heartbeat_s (from file"),
    ("revocation_cache_s = -1\n", "revocation_cache_s must not be negative"),
    ("revocation_cache_entries = 0\n", "revocation_cache_entries must be at least 1"),
    ("openers_per_day = -1\n", "openers_per_day must not be negative"),
    ("unsend_window_s = -5\n", "unsend_window_s must not be negative"),
    ("reject_duplicate_openers = 3\n", "reject_duplicate_openers (from file"),
    ("this is not toml", "not valid TOML"),
    ("erasure_resume_s = 0\n", "erasure_resume_s must be positive"),
])
def test_a_bad_file_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(write(tmp_path, text), {}, SECRET)
    assert named in str(error.value)


def test_a_bad_environment_variable_names_itself() -> None:
    with pytest.raises(ConfigError, match=r"ws_port \(from env\): expected an integer"):
        load(None, {}, {**SECRET, "RENDEZVOUS_WS_PORT": "abc"})


def test_public_keys_from_the_file(tmp_path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "auth.pub").write_bytes(pem)
    file = write(tmp_path, f'jwt_public_keys = ["EdDSA:{tmp_path / "auth.pub"}"]\n'
                 "jwt_hs256 = false\n")
    config, origin = load(file, {}, {})
    assert [k.algorithm for k in config.jwt_keys] == ["EdDSA"] and origin == "public keys only"


def test_the_sample_file_is_valid_and_complete() -> None:
    out = subprocess.run([sys.executable, "-m", "server.cli", "config", "check",
                          str(REPO / "rendezvous.sample.toml")], capture_output=True,
                         text=True, env=SECRET, cwd=REPO)
    assert out.returncode == 0, out.stderr
    sample = (REPO / "rendezvous.sample.toml").read_text()
    from server.config_load import _fields
    for key in _fields():
        assert key in sample, f"{key} is not documented in rendezvous.sample.toml"


def test_config_check_reports_a_bad_file(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "server.cli", "config", "check",
                          str(write(tmp_path, "drain_batch = 0.5\n"))], capture_output=True,
                         text=True, env=SECRET, cwd=REPO)
    assert out.returncode == 2 and "drain_batch" in out.stderr
