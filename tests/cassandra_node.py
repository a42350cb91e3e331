"""A real Apache Cassandra node for tests, run through `scripts/cassandra`.

The jars come from Maven Central once (`scripts/cassandra fetch`, about 70 MB, cached under
~/.cache/rendezvous); after that a node starts offline in roughly 8-20 s on two cores and
holds about 1 GB of RAM. Each node gets its own free native and storage ports, so several
nodes and concurrent test runs do not clash. A missing `java` or `mvn` fails the test run
rather than skipping it: the Cassandra suite is only meaningful against real Cassandra.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "cassandra"


def free_port(avoid: frozenset[int] = frozenset()) -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise RuntimeError("no free port found")


class CassandraNode:
    """One single-node Cassandra cluster on 127.0.0.1:`port`, its files under `workdir`.

    `stop()` (SIGTERM: flushes, then exits) and `start()` again restart the same node on the
    same ports with its data; `kill()` is a crash (SIGKILL: the commit log is replayed on
    the next start). A node still running when the interpreter exits is killed.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None,
                 storage_port: int | None = None, heap: str = "512m") -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port or free_port()
        self.storage_port = storage_port or free_port(frozenset({self.port}))
        self.heap = heap
        self.version: str | None = None
        self._atexit_registered = False

    @property
    def contact_point(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The java process's pid while it runs (from the pid file `scripts/cassandra` writes)."""
        try:
            pid = int((self.workdir / "cassandra.pid").read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return None
        return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid

    def start(self, timeout: float = 180.0) -> None:
        """Fetch the jars if needed, start the node and return once it answers CQL."""
        self._script("fetch", timeout=900.0)
        out = self._script("start", "--dir", str(self.workdir), "--port", str(self.port),
                           "--storage-port", str(self.storage_port), "--heap", self.heap,
                           "--timeout", str(timeout), timeout=timeout + 60.0)
        for line in out.splitlines():
            if " ready on " in line:
                self.version = line.split("Cassandra ", 1)[1].split(" ", 1)[0]
        if not self._atexit_registered:
            atexit.register(self._kill_if_running)
            self._atexit_registered = True

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, wait for a clean exit (SIGKILL after `timeout` s). Data stays."""
        self._script("stop", "--dir", str(self.workdir), "--timeout", str(timeout),
                     timeout=timeout + 30.0)

    def kill(self) -> None:
        """SIGKILL at once, like a crash. Data stays (written mutations are in the commit log)."""
        self._script("stop", "--dir", str(self.workdir), "--kill", timeout=30.0)

    def _kill_if_running(self) -> None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def _script(self, *args: str, timeout: float) -> str:
        result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/cassandra {args[0]} failed "
                               f"(exit {result.returncode}):\n{result.stdout}{result.stderr}")
        return result.stdout
