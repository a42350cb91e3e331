"""The `--workers N` supervisor: N copies of the node, each restarted when it dies.

A worker that dies soon after it started (`fast_crash_s`) most likely dies of its set-up
(a port taken, a key file missing, a store it cannot open), and restarting it every second
forever only fills the logs. So restarts back off exponentially with full jitter, and after
`max_fast_crashes` fast crashes in a row of one worker the supervisor stops the others and
exits non-zero with a log line that says why (docs/operations.md, "Workers").
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.backoff import full_jitter

RESTART_BASE_S = 0.5  # the first restart waits up to this, doubling per fast crash
RESTART_MAX_S = 30.0
POLL_S = 0.2
GIVE_UP_EXIT = 1


@dataclass
class RestartPolicy:
    """When to restart a worker that exited, or to give up. Pure: times are passed in."""

    max_fast_crashes: int = 5
    fast_crash_s: float = 10.0
    base_s: float = RESTART_BASE_S
    max_s: float = RESTART_MAX_S
    rng: Callable[[], float] = random.random
    fast_crashes: dict[int, int] = field(default_factory=dict)  # worker -> in a row

    def exited(self, worker: int, ran_s: float) -> float | None:
        """The delay before restarting `worker`, which ran `ran_s`; None: give up."""
        if ran_s >= self.fast_crash_s:
            self.fast_crashes[worker] = 0  # it ran a while: a crash, not a crash loop
            return 0.0
        crashes = self.fast_crashes[worker] = self.fast_crashes.get(worker, 0) + 1
        if crashes >= self.max_fast_crashes:
            return None
        return full_jitter(crashes - 1, self.base_s, self.max_s, self.rng)


def _log(message: str) -> None:
    print(f"rendezvous supervisor: {message}", file=sys.stderr, flush=True)


def supervise(spawn: Callable[[int], subprocess.Popen[bytes]], workers: int,
              policy: RestartPolicy) -> int:
    """Run `workers` processes made by `spawn(index)`; pass SIGTERM and SIGINT on so that
    each drains. Returns the exit status: the workers' own after a signal, else
    `GIVE_UP_EXIT` when a worker kept crashing."""
    procs: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    due: dict[int, float] = {}  # worker -> when to restart it
    stopping = False

    def start(index: int) -> None:
        procs[index] = spawn(index)
        started[index] = time.monotonic()

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(workers):
        start(index)
    while True:
        time.sleep(POLL_S)
        now = time.monotonic()
        for index, proc in list(procs.items()):
            code = proc.poll()
            if code is None or stopping or index in due:
                continue
            ran = now - started[index]
            delay = policy.exited(index, ran)
            if delay is None:
                _log(f"worker {index} crashed {policy.fast_crashes[index]} times in a row, "
                     f"each within {policy.fast_crash_s:g} s of starting (last exit code "
                     f"{code}): giving up; see the worker's error above. Stopping the "
                     "other workers.")
                forward(signal.SIGTERM, None)
                for other in procs.values():
                    other.wait()
                return GIVE_UP_EXIT
            _log(f"worker {index} exited with {code} after {ran:.1f} s; restarting in "
                 f"{delay:.1f} s")
            due[index] = now + delay
        for index, when in list(due.items()):
            if stopping:
                due.clear()
            elif when <= now:
                del due[index]
                start(index)
        if stopping and all(p.poll() is not None for p in procs.values()):
            return max((p.returncode or 0) for p in procs.values())
