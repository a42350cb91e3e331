"""The servers under test, each started fresh for a round and stopped after it.

A `Target` tells the load generator where senders and receivers connect, which wire they
speak, what each pair's conversation is called, and which pids are the server side (for
CPU). Clustered setups put every sender on the first node and every receiver on the second,
so each message crosses the bus (Redis) once.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.sbs.procs import (
    RAISED_LIMITS_ENV,
    REPO,
    SECRET,
    ManagedProcess,
    child_env,
    free_port,
    node_command,
    proc_tree,
)
from client import mint_token

# name -> (title, wire, clustered)
SERVERS: dict[str, tuple[str, str, bool]] = {
    "relay": ("bare websockets relay", "relay", False),
    "sio-1": ("python-socketio, 1 process", "sio", False),
    "sio-2": ("python-socketio, 2 procs + Redis", "sio", True),
    "rdv-1": ("Rendezvous embedded (SQLite)", "rdv", False),
    "rdv-2": ("Rendezvous 2 nodes + Redis", "rdv", True),
    "rdv-cass": ("Rendezvous 2 nodes + Redis + Cassandra", "rdv", True),
}
MATCH_ATTEMPTS = 5
DEFAULT_SERVERS = ["relay", "sio-1", "sio-2", "rdv-1", "rdv-2"]


def sio_baseline(name: str) -> str:
    """The python-socketio row a server is compared with: like for like in scale-out."""
    return "sio-2" if SERVERS[name][2] else "sio-1"


def users(i: int) -> tuple[str, str]:
    return f"a{i}", f"b{i}"


@dataclass
class Target:
    name: str
    wire: str  # "rdv" (Rendezvous and the relay: msgpack frames) or "sio" (Socket.IO text)
    send_url: str
    recv_url: str
    conversations: list[str]  # per pair: match id (rdv), "a|b" (relay), unused (sio)
    procs: list[ManagedProcess] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # server side, for CPU, once started

    def refresh_pids(self, extra: Sequence[int] = ()) -> None:
        """Every process of the server side, children included (call once it serves)."""
        self.pids = [p for proc in self.procs for p in proc_tree(proc.pid)] + list(extra)


@dataclass
class Cassandra:
    """One Cassandra node for the whole run (it takes 10-30 s to start); a keyspace per round."""
    workdir: Path
    port: int = field(default_factory=free_port)

    def script(self, *args: str, timeout: float = 300) -> None:
        subprocess.run([sys.executable, str(REPO / "scripts" / "cassandra"), *args],
                       check=True, timeout=timeout, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self.script("fetch", timeout=900)
        self.script("start", "--dir", str(self.workdir), "--port", str(self.port),
                    "--storage-port", str(free_port()), "--heap", "1g")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.script("stop", "--dir", str(self.workdir), timeout=90)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.workdir / "cassandra.pid").read_text().strip())
        except (OSError, ValueError):
            return None


def redis(workdir: Path) -> ManagedProcess:
    port = free_port()
    return ManagedProcess("redis-server", [
        shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
        "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir),
        "--protected-mode", "no"], ready="Ready to accept connections").start()


def redis_url(proc: ManagedProcess) -> str:
    return f"redis://127.0.0.1:{proc.argv[2]}/0"


def relay() -> tuple[ManagedProcess, str]:
    """A bare relay (benchmarks/peers/relay.py) on a free port, and its URL."""
    port = free_port()
    proc = ManagedProcess(f"relay:{port}", [sys.executable, "-m", "benchmarks.peers.relay",
                                            "--port", str(port)], ready="ready").start()
    return proc, f"ws://127.0.0.1:{port}/v1/ws"


def rdv_node(data_dir: Path, *extra: str, env: dict[str, str] | None = None
             ) -> tuple[ManagedProcess, str, str]:
    ws_port, http_port = free_port(), free_port()
    proc = ManagedProcess(f"rendezvous:{ws_port}", node_command(data_dir, ws_port, http_port,
                                                                 *extra),
                          ready="  Stop", env=env or child_env(**RAISED_LIMITS_ENV)).start()
    return proc, f"ws://127.0.0.1:{ws_port}/v1/ws", f"http://127.0.0.1:{http_port}"


async def match_pairs(http_url: str, pairs: range, concurrency: int = 32) -> list[str]:
    """Create one match per pair over the HTTP API (two likes), returning the match ids."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=http_url, timeout=30) as client:
        async def like(user: str, target: str) -> dict[str, object]:
            """A swipe is idempotent, so a dropped keep-alive connection or a 5xx is retried."""
            headers = {"Authorization": f"Bearer {mint_token(SECRET, user)}"}
            for attempt in range(MATCH_ATTEMPTS):
                async with gate:
                    try:
                        response = await client.post(
                            "/v1/swipes", json={"target": target, "action": "like"},
                            headers=headers)
                        if response.status_code < 500:
                            response.raise_for_status()
                            return response.json()  # type: ignore[no-any-return]
                    except httpx.TransportError:
                        if attempt == MATCH_ATTEMPTS - 1:
                            raise
                await asyncio.sleep(0.2 * 2 ** attempt)
            response.raise_for_status()
            raise AssertionError("unreachable")

        async def pair(i: int) -> str:
            a, b = users(i)
            await like(a, b)
            match = (await like(b, a))["match"]
            assert isinstance(match, dict)
            return str(match["id"])

        return list(await asyncio.gather(*(pair(i) for i in pairs)))


@contextlib.contextmanager
def launch(name: str, pairs: int, cassandra: Cassandra | None = None,
           node_args: tuple[str, ...] = ()) -> Iterator[Target]:
    """Start server `name` fresh (new data dir, new Redis), yield its target, stop it all."""
    workdir = Path(tempfile.mkdtemp(prefix=f"sbs-{name}-"))
    procs: list[ManagedProcess] = []
    try:
        target = _start(name, workdir, pairs, procs, cassandra, node_args)
        target.procs = procs
        target.refresh_pids([cassandra.pid] if name == "rdv-cass" and cassandra and
                            cassandra.pid else [])
        yield target
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _start(name: str, workdir: Path, pairs: int, procs: list[ManagedProcess],
           cassandra: Cassandra | None, node_args: tuple[str, ...]) -> Target:
    wire = SERVERS[name][1]
    if name == "relay":
        proc, url = relay()
        procs.append(proc)
        return Target(name, wire, url, url, ["|".join(users(i)) for i in range(pairs)])
    if name.startswith("sio"):
        extra: list[str] = []
        if name == "sio-2":
            procs.append(redis(workdir))
            extra = ["--redis-url", redis_url(procs[-1])]
        urls = []
        for _ in range(2 if name == "sio-2" else 1):
            port = free_port()
            procs.append(ManagedProcess(
                f"socketio:{port}", [sys.executable, "-m", "benchmarks.peers.sio_server",
                                     "--port", str(port), *extra], ready="ready").start())
            urls.append(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
        return Target(name, wire, urls[0], urls[-1], [""] * pairs)
    args = list(node_args)
    env = child_env(**RAISED_LIMITS_ENV)
    if name in ("rdv-2", "rdv-cass"):
        procs.append(redis(workdir))
        args += ["--redis-url", redis_url(procs[-1])]
        env["RENDEZVOUS_REDIS_PREFIX"] = f"sbs{uuid.uuid4().hex[:8]}:"
    if name == "rdv-cass":
        if cassandra is None:
            raise ValueError("rdv-cass needs --cassandra")
        args += ["--cassandra", f"127.0.0.1:{cassandra.port}"]
        env["RENDEZVOUS_CASSANDRA_KEYSPACE"] = f"sbs_{uuid.uuid4().hex[:10]}"
    nodes = [rdv_node(workdir / "data", *args, env=env)]  # A first: it creates the schema
    procs.append(nodes[0][0])
    if name != "rdv-1":
        nodes.append(rdv_node(workdir / "data", *args, env=env))
        procs.append(nodes[1][0])
    matches = asyncio.run(match_pairs(nodes[0][2], range(pairs)))
    return Target(name, wire, nodes[0][1], nodes[-1][1], matches)
