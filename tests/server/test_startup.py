"""Start-up waits for what it needs instead of exiting (docs/operations.md, "Start-up"),
and the workers supervisor gives up on a crash loop (the same section, "Workers"); both
with real node processes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.supervisor import RestartPolicy
from tests.helpers import wait_until
from tests.node_process import CLI, NodeProcess, env_without_secret
from tests.redis_servers import RedisServer, free_port

SECRET = "rendezvous-startup-test-secret-0123456789"


def env(**extra: str) -> dict[str, str]:
    return {**env_without_secret(), "RENDEZVOUS_JWT_SECRET": SECRET, **extra}


async def test_a_locked_sqlite_file_is_waited_for(tmp_path: Path) -> None:
    """Another process holds the database locked past SQLite's own busy timeout (5 s): the
    node logs that it waits, and starts once the lock is gone; it does not exit."""
    data = tmp_path / "data"
    data.mkdir()
    holder = sqlite3.connect(data / "rendezvous.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    node = NodeProcess(data, env=env())
    starting = asyncio.create_task(node.start(timeout=60))
    try:
        await wait_until(lambda: node.proc is not None)
        assert node.proc.stderr is not None
        async with asyncio.timeout(30):  # hold the lock until the node says it waits
            while b"database is locked at start-up" not in (
                    line := await node.proc.stderr.readline()):
                assert line, "the node exited instead of waiting"
        assert b"retrying" in line and not starting.done()
        holder.execute("COMMIT")
        await starting
        assert await node.stop() == 0
    finally:
        starting.cancel()
        holder.close()
        if node.proc is not None and node.running:
            await node.stop()


async def test_redis_that_comes_up_late_is_waited_for(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", port=free_port())
    node = NodeProcess(tmp_path / "data", "--redis-url", redis.url, env=env())
    starting = asyncio.create_task(node.start(timeout=30))
    try:
        await asyncio.sleep(2.0)
        assert not starting.done()  # still waiting, not exited
        await asyncio.to_thread(redis.start)
        await starting
        assert node.running
    finally:
        starting.cancel()
        if node.proc is not None and node.running:
            await node.stop()
        redis.stop(kill=True)


async def test_redis_that_never_comes_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    result = await asyncio.to_thread(
        subprocess.run, [*CLI, "serve", "--data-dir", str(tmp_path), "--ws-port", "0",
                         "--http-port", "0", "--redis-url", f"redis://127.0.0.1:{port}/0"],
        env=env(RENDEZVOUS_STARTUP_WAIT_S="1.5"), capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 1
    assert time.monotonic() - started >= 1.5
    assert "Redis did not answer within 1.5 s (startup_wait_s)" in result.stderr
    assert "waiting for Redis at start-up" in result.stderr


async def test_the_supervisor_gives_up_on_workers_that_crash_at_once(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """The HTTP port is taken (without SO_REUSEPORT): each worker exits at start-up. The
    supervisor restarts with backoff, then stops and exits 1 saying why."""
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    started = time.monotonic()
    try:
        result = await asyncio.to_thread(
            subprocess.run, [*CLI, "serve", "--data-dir", str(tmp_path), "--workers", "2",
                             "--ws-port", str(free_port()), "--http-port", str(port),
                             "--redis-url", redis_server.url, "--log-level", "WARNING"],
            env=env(RENDEZVOUS_WORKER_MAX_FAST_CRASHES="3"), capture_output=True,
            text=True, timeout=90)
    finally:
        blocker.close()
    assert result.returncode == 1, result.stderr[-2000:]
    assert "crashed 3 times in a row" in result.stderr
    assert "giving up" in result.stderr
    assert "restarting in" in result.stderr
    assert time.monotonic() - started < 60


def test_restart_policy_backs_off_with_jitter_and_gives_up() -> None:
    policy = RestartPolicy(max_fast_crashes=4, fast_crash_s=10, base_s=0.5, max_s=30,
                           rng=lambda: 0.999)
    delays = [policy.exited(0, 1.0) for _ in range(3)]
    assert delays == [pytest.approx(0.4995), pytest.approx(0.999), pytest.approx(1.998)]
    assert policy.exited(1, 1.0) == pytest.approx(0.4995)  # counted per worker
    assert policy.exited(0, 1.0) is None  # the fourth fast crash in a row
    policy = RestartPolicy(max_fast_crashes=2, fast_crash_s=10)
    assert policy.exited(0, 1.0) is not None
    assert policy.exited(0, 60.0) == 0.0  # it ran a while: the count starts again
    assert policy.exited(0, 1.0) is not None
    jittered = {RestartPolicy(max_fast_crashes=9).exited(0, 0.1) for _ in range(50)}
    assert len(jittered) > 40 and all(d is not None and 0 <= d < 0.5 for d in jittered)


def test_cli_help_still_works() -> None:
    out = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--help"],
                         capture_output=True, text=True, check=True)
    assert "--workers" in out.stdout
