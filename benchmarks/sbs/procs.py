"""Child processes of a benchmark: start, wait until ready, measure CPU, always stop.

Shared by `chat_bench.py` and the side-by-side benchmark. Every process started here is
registered so that `stop_all()` (called from `finally`, `atexit` and on SIGTERM) leaves
nothing running, whatever way the run ends. CPU comes from /proc/<pid>/stat (utime + stime
of every thread) summed over the process and its descendants: a node's worker processes or
a JVM's threads count too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECRET = "benchmark-secret-0123456789abcdef0123"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_running: list[ManagedProcess] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile_ms(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted seconds, in ms (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: this checkout first on the path, so it is what runs."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                        if p)
    return env


def node_command(data_dir: str | Path, ws_port: int, http_port: int,
                 *extra: str) -> list[str]:
    """`rendezvous serve` of this checkout, rate limits raised so the load is never refused."""
    return [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(data_dir),
            "--ws-port", str(ws_port), "--http-port", str(http_port), "--log-level", "WARNING",
            "--sends-per-s", "1000000", "--send-burst", "1000000", *extra]


# frames_per_s/frame_burst have no flag: raised through the environment (see docs/benchmarks.md)
RAISED_LIMITS_ENV = {"RENDEZVOUS_FRAMES_PER_S": "1000000", "RENDEZVOUS_FRAME_BURST": "1000000",
                     "RENDEZVOUS_JWT_SECRET": SECRET}
RAISED_LIMITS_NOTE = ("Rendezvous rate limits raised for the run: --sends-per-s/--send-burst "
                      "1000000, RENDEZVOUS_FRAMES_PER_S/RENDEZVOUS_FRAME_BURST=1000000")


def proc_tree(pid: int) -> list[int]:
    """`pid` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes (all threads), in seconds; gone processes count 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


class ManagedProcess:
    """A child that prints `ready` (a substring) on stdout once it serves."""

    def __init__(self, name: str, argv: Sequence[str], ready: str,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.ready = name, list(argv), ready
        self.env = env or child_env()
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> ManagedProcess:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=self.env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        _running.append(self)
        seen = threading.Event()
        threading.Thread(target=self._pump, args=(seen,), daemon=True).start()
        if not seen.wait(timeout) or self.proc.poll() is not None:
            tail = "".join(self.output[-30:])
            self.stop()
            raise RuntimeError(f"{self.name} did not start within {timeout}s:\n{tail}")
        return self

    def _pump(self, seen: threading.Event) -> None:
        """Keep reading output (a full pipe would stall the child); note the ready line."""
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if len(self.output) < 2000:
                self.output.append(line)
            if self.ready in line:
                seen.set()
        seen.set()

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the group, SIGKILL after `timeout`; idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self in _running:
            _running.remove(self)


def stop_all() -> None:
    """Stop every child still running, newest first."""
    for proc in reversed(list(_running)):
        proc.stop(timeout=5)


def _on_sigterm(signum: int, frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Children die with the benchmark: on exit, Ctrl-C (KeyboardInterrupt) and SIGTERM."""
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_sigterm)

