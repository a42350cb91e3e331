"""A real `rendezvous serve` process on free ports, as users and operators run it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.redis_servers import free_port

CLI = [sys.executable, "-m", "server.cli"]
SECRET = "rendezvous-process-test-secret-0123456789"


def env_without_secret() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RENDEZVOUS_JWT_SECRET", None)
    return env


class NodeProcess:
    """One node process; `start()` returns once its banner is printed."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 ws_port: int | None = None, http_port: int | None = None,
                 command: list[str] | None = None, cwd: Path | None = None) -> None:
        self.data_dir = data_dir
        self.command = command or CLI  # how the node is started: CLI, or a script's path
        self.cwd = cwd
        self.args = args
        self.env = env if env is not None else env_without_secret()
        self.ws_port = ws_port or free_port()
        self.http_port = http_port or free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.banner: list[str] = []
        self.output: list[str] = []

    async def start(self, timeout: float = 30) -> None:
        self.banner = []
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, "serve", "--data-dir", str(self.data_dir), "--ws-port",
            str(self.ws_port), "--http-port", str(self.http_port), "--log-level", "WARNING",
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=self.env, cwd=self.cwd, start_new_session=True)
        await self.wait_banner(timeout)

    async def wait_banner(self, timeout: float = 30) -> None:
        """Read output until the next start-up banner ends (one per worker process)."""
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"node exited: {err.decode()[-2000:]}")
                self.banner.append(line)
                if line.startswith("  Stop"):
                    return

    def token(self, user: str, ttl: int = 3600) -> str:
        out = subprocess.run([*CLI, "token", user, "--ttl", str(ttl), "--data-dir",
                              str(self.data_dir)], capture_output=True, text=True,
                             check=True, env=self.env)
        return out.stdout.strip()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/v1/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the node (SIGKILL reaches its whole process group: workers too)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            if sig == signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
        if self.proc.stdout is not None:
            self.output = (await self.proc.stdout.read()).decode().splitlines()
        return code
