"""Worker processes: `python -m loadtest.workers`, one event loop each, driven by the parent.

The parent writes one JSON plan to a worker's stdin (scenario path and overrides, the token
secret, the worker's index and source addresses, the common start time) and reads one JSON
line per second back: the worker's `Recorder.snapshot(delta=True)`. Several processes get
past one process's open-files limit and one core; several source addresses get past the
~28k ephemeral ports of one (source address, node) pair. Logs go to stderr, never bodies
or tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtest.measure import SnapshotJoiner
from loadtest.scenario import Scenario, Target, load_scenario

log = logging.getLogger(__name__)

START_DELAY_S = 1.5  # time for every worker to import and connect its pipes
WORKER_CMD = [sys.executable, "-m", "loadtest.workers"]


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line changes to a scenario, applied the same way in every process."""

    targets: tuple[Target, ...] = ()
    duration_scale: float = 1.0
    users: int | None = None
    secret_file: str | None = None

    def apply(self, scenario: Scenario) -> Scenario:
        return scenario.overridden(targets=self.targets, duration_scale=self.duration_scale,
                                   users=self.users, secret_file=self.secret_file)

    def to_data(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [asdict(t) for t in self.targets]
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Overrides:
        return cls(targets=tuple(Target(**t) for t in data["targets"]),
                   duration_scale=float(data["duration_scale"]), users=data["users"],
                   secret_file=data["secret_file"])


@dataclass(slots=True)
class Plan:
    scenario_path: str
    overrides: Overrides
    secret: str
    run_id: str
    worker: int
    workers: int
    start_at: float
    source_addresses: list[str] = field(default_factory=list)


def raise_open_files_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (each socket is a file); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


def addresses_for(worker: int, addresses: Sequence[str]) -> list[str]:
    """Every address, rotated so workers start on different ones."""
    if not addresses:
        return []
    k = worker % len(addresses)
    return list(addresses[k:]) + list(addresses[:k])


# -- the worker side --------------------------------------------------------------------------

async def _worker(plan: Plan, emit: Callable[[dict[str, Any]], None]) -> None:
    from loadtest.engine import WorkerContext
    from loadtest.runner import WorkerRun

    scenario = plan.overrides.apply(load_scenario(plan.scenario_path))
    ctx = WorkerContext(scenario, plan.secret, run_id=plan.run_id, worker=plan.worker,
                        source_addresses=plan.source_addresses)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, ctx.stop)
    await WorkerRun(ctx, plan.workers, emit).run(plan.start_at)


def worker_main() -> int:
    logging.basicConfig(level=os.environ.get("RDV_LOAD_LOG", "WARNING"), stream=sys.stderr,
                        format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(message)s")
    data = json.loads(sys.stdin.readline())
    plan = Plan(**{**data, "overrides": Overrides.from_data(data["overrides"])})
    raise_open_files_limit()
    out = sys.stdout

    def emit(message: dict[str, Any]) -> None:
        out.write(json.dumps(message, separators=(",", ":")) + "\n")
        out.flush()

    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.Runner()
    with runner:
        runner.run(_worker(plan, emit))
    return 0


# -- the parent side --------------------------------------------------------------------------

class WorkerFailed(RuntimeError):
    """A worker process exited without its final report."""


@dataclass
class WorkerState:
    index: int
    proc: asyncio.subprocess.Process
    snapshot: dict[str, Any] | None = None  # the full snapshot, rebuilt from deltas
    joiner: SnapshotJoiner = field(default_factory=SnapshotJoiner)
    users: int = 0
    phase: str = ""
    done: bool = False


async def run_workers(plans: list[Plan], on_tick: Callable[[list[WorkerState]], None],
                      tick_s: float = 1.0) -> list[WorkerState]:
    """Start one process per plan, feed each its plan, collect snapshots until all are done.

    `on_tick` sees every worker's latest state once per `tick_s`. Raises `WorkerFailed` if a
    worker exits without a final snapshot.
    """
    states: list[WorkerState] = []
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    try:
        for plan in plans:
            proc = await asyncio.create_subprocess_exec(
                *WORKER_CMD, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env=env, limit=2 ** 28, start_new_session=False)
            data = asdict(plan)
            data["overrides"] = plan.overrides.to_data()
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(data) + "\n").encode())
            await proc.stdin.drain()
            proc.stdin.close()
            states.append(WorkerState(plan.worker, proc))
        _stop_workers_on_interrupt(states)
        readers = [asyncio.create_task(_read(state)) for state in states]
        ticker = asyncio.create_task(_tick(states, on_tick, tick_s))
        try:
            await asyncio.gather(*readers)
        finally:
            ticker.cancel()
        on_tick(states)
    except BaseException:
        for state in states:
            if state.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    state.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(30):
                await asyncio.gather(*(s.proc.wait() for s in states))
        raise
    failed = [s.index for s in states if not s.done]
    if failed:
        raise WorkerFailed(f"worker(s) {failed} exited without a final report "
                           f"(exit codes {[s.proc.returncode for s in states]})")
    return states


def _stop_workers_on_interrupt(states: list[WorkerState]) -> None:
    """Ctrl-C ends the run early but cleanly (workers stop and report what they measured);
    a second one kills them."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread can own signals (tests call main() in a thread)
    presses = 0

    def interrupt() -> None:
        nonlocal presses
        presses += 1
        print("rendezvous-load: stopping early (Ctrl-C again to kill the workers)",
              file=sys.stderr)
        for state in states:
            if state.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    state.proc.send_signal(signal.SIGTERM if presses == 1 else signal.SIGKILL)

    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupt)


async def _read(state: WorkerState) -> None:
    stream = state.proc.stdout
    assert stream is not None
    while line := await stream.readline():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        state.snapshot = state.joiner.add(message["snapshot"])
        state.users = int(message.get("users", 0))
        state.phase = str(message.get("phase", ""))
        if message.get("kind") == "done":
            state.done = True
    await state.proc.wait()


async def _tick(states: list[WorkerState], on_tick: Callable[[list[WorkerState]], None],
                tick_s: float) -> None:
    while True:
        await asyncio.sleep(tick_s)
        on_tick(states)


def _pythonpath() -> str:
    """Workers import `loadtest` from wherever this process did (a checkout or site-packages)."""
    root = str(Path(__file__).resolve().parent.parent)
    current = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{current}" if current else root


def start_time() -> float:
    return time.time() + START_DELAY_S


if __name__ == "__main__":
    sys.exit(worker_main())
