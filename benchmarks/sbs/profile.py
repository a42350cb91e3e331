"""`--profile DIR`: where a server's CPU goes during a closed-loop window.

Two views of every Rendezvous node: CPU seconds per thread (from /proc/<pid>/task, so the
event loop, the SQLite writer and the driver threads are told apart), and a py-spy profile
(`py-spy record -f raw --threads`, folded stacks) for flame graphs or `sort | head`.
py-spy attaches with ptrace and costs the node a little, so profiled figures are not the
ones to quote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.sbs.procs import CLK_TCK
from benchmarks.sbs.servers import Target


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of `pid`: "main" (the event loop) and the others by
    OS name and thread id (Python's thread names do not reach the OS; py-spy's profile
    names them by the same ids)."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            name = "main" if tid == str(pid) else \
                f"{stat[stat.index('(') + 1:stat.rindex(')')]}:{tid}"
            fields = stat.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


class Profiler:
    """Samples the nodes of `target` between `begin` and `end`."""

    def __init__(self, directory: Path, label: str, target: Target) -> None:
        self.directory = directory
        self.label = label
        self.pids = {proc.name: proc.pid for proc in target.procs
                     if proc.name.startswith(("rendezvous", "relay", "socketio"))}
        self._before: dict[str, dict[str, float]] = {}
        self._spies: list[subprocess.Popen[bytes]] = []
        self._seconds = 0.0

    def begin(self, seconds: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seconds = seconds
        self._before = {name: thread_cpu(pid) for name, pid in self.pids.items()}
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            return
        for name, pid in self.pids.items():
            out = self.directory / f"{self.label}-{name.replace(':', '-')}.txt"
            self._spies.append(subprocess.Popen(
                [spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-f", "raw",
                 "--threads", "-r", "200", *os.environ.get("SBS_PYSPY_ARGS", "").split(),
                 "-o", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def end(self) -> dict[str, dict[str, float]]:
        """Cores used per thread during the window, per process."""
        result = {}
        for name, pid in self.pids.items():
            after = thread_cpu(pid)
            before = self._before.get(name, {})
            result[name] = {t: round((after[t] - before.get(t, 0.0)) / self._seconds, 3)
                            for t in after if after[t] - before.get(t, 0.0) > 0}
        for spy in self._spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
        return result

    def describe(self, threads: dict[str, dict[str, float]]) -> str:
        lines = []
        for proc, cores in threads.items():
            top = sorted(cores.items(), key=lambda kv: -kv[1])[:6]
            lines.append(f"      {proc} cores by thread: "
                         + ", ".join(f"{t} {c:.2f}" for t, c in top))
        return "\n".join(lines)
