"""Real `redis-server` processes for tests: one standalone server, or a 3-master cluster.

Started from Debian's `redis-server` on free loopback ports with no persistence; `make test`
installs the package. A missing binary fails the test run rather than skipping it: the
cluster suite is only meaningful against real Redis.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port > 55_000:
            port = 20_000 + port % 30_000
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a redis cluster node")


def redis_binary(name: str = "redis-server") -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: `make test` installs it (Debian package "
                           "redis-server), or run `apt-get install redis-server`")
    return path


class RedisServer:
    """One redis-server on 127.0.0.1:`port`; `stop()` and `start()` again keep the port."""

    def __init__(self, workdir: Path, port: int | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.fixed_port = port is not None  # cluster nodes: the bus port was checked too
        self.port = port or free_port()
        self.workdir = workdir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start on `port`; a fresh server whose free port was taken meanwhile (the race
        between `free_port` and the bind) retries on another port."""
        for attempt in range(3):
            try:
                self._start(timeout)
                return
            except RuntimeError:
                if self.fixed_port or attempt == 2:
                    raise
                self.port = free_port()

    def _start(self, timeout: float) -> None:
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no",
             "--loglevel", "warning", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)

    def stop(self, kill: bool = False) -> None:
        """Stop it; `start()` again comes back on the same port."""
        self.fixed_port = True
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(10)
        self.proc = None


class RedisCluster:
    """Three masters, no replicas, slots spread by `redis-cli --cluster create`."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.servers = [RedisServer(workdir / f"n{i}", port=free_cluster_port(), extra=(
            "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{i}.conf",
            "--cluster-node-timeout", "2000")) for i in range(masters)]

    @property
    def seeds(self) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{s.port}" for s in self.servers)

    def start(self, timeout: float = 30.0) -> None:
        for server in self.servers:
            server.start()
        subprocess.run([redis_binary("redis-cli"), "--cluster", "create", *self.seeds,
                        "--cluster-replicas", "0", "--cluster-yes"], check=True,
                       capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        for server in self.servers:
            client = redis.Redis(port=server.port)
            while client.cluster("info").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError("redis cluster did not reach cluster_state:ok")
                time.sleep(0.1)

    def stop(self) -> None:
        for server in self.servers:
            server.stop(kill=True)
