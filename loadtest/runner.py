"""One worker's run: load phases start sessions, chaos events cut sockets, then a clean end.

Phases are shared out among the workers: worker i of n starts its share of each closed
phase's users and `rate / n` arrivals per second, on the common start time the parent hands
out, so n workers together produce the scenario's load. The end is ordered so no message
is called lost while it is still on its way: sessions get `drain` seconds to finish their
flows, then stop at their next step (sends stop being generated), in-flight sends finish,
and `grace` seconds let the last deliveries and syncs arrive before losses are counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from loadtest.engine import WorkerContext, wait_until
from loadtest.scenario import Phase, Scenario
from loadtest.session import Session

log = logging.getLogger(__name__)

TICK_S = 0.05
LAG_PROBE_S = 0.1
STOP_WAIT_S = 15.0
CLOSE_CONCURRENCY = 500
Emit = Callable[[dict[str, Any]], None]


def share(total: float, worker: int, workers: int) -> int:
    """Worker `worker`'s whole share of `total` users; the shares add up to round(total)."""
    whole = round(total)
    return whole * (worker + 1) // workers - whole * worker // workers


class WorkerRun:
    def __init__(self, ctx: WorkerContext, workers: int, emit: Emit) -> None:
        self.ctx = ctx
        self.workers = workers
        self.emit = emit
        self.phase = ""
        self._loop_lag_s = 0.0
        personas = ctx.scenario.personas
        self._personas = personas
        self._weights = [p.weight for p in personas]

    @property
    def scenario(self) -> Scenario:
        return self.ctx.scenario

    def start_session(self) -> None:
        ctx = self.ctx
        (persona,) = ctx.rng.choices(self._personas, self._weights)
        task = asyncio.create_task(Session(ctx, persona).run())
        ctx.sessions.add(task)
        task.add_done_callback(ctx.sessions.discard)

    async def run(self, start_at: float) -> None:
        """Run every phase from `start_at` (epoch seconds), then end cleanly and report."""
        ctx = self.ctx
        reporter = asyncio.create_task(self._report_every_second())
        lag_probe = asyncio.create_task(self._probe_loop_lag())
        await asyncio.sleep(max(0.0, start_at - time.time()))
        ctx.recorder.started_at = time.time()  # the run's duration excludes process start-up
        begin = ctx.now()
        chaos = [asyncio.create_task(self._chaos_at(begin + c.at_s, c.share, c.storm))
                 for c in self.scenario.chaos]
        try:
            for phase in self.scenario.phases:
                if ctx.stopping.is_set():
                    break
                self.phase = phase.name
                if phase.kind == "open":
                    await self._open_phase(phase)
                else:
                    await self._closed_phase(phase)
            self.phase = "drain"
            await self._finish()
        finally:
            for task in chaos:
                task.cancel()
            reporter.cancel()
            lag_probe.cancel()
        ctx.recorder.finish()
        self.emit(self._message("done"))

    async def _open_phase(self, phase: Phase) -> None:
        ctx = self.ctx
        now = ctx.now
        start = now()
        end = start + phase.duration_s
        at = start
        while not ctx.stopping.is_set():
            rate = phase.level(at - start) / self.workers
            if rate <= 0:
                at += TICK_S
            else:
                at += ctx.rng.expovariate(rate)
            if at >= end:
                break
            delay = at - now()
            if delay > 0:
                await ctx.idle(delay)
            if rate > 0 and not ctx.stopping.is_set():
                self.start_session()
        await ctx.idle(end - now())

    async def _closed_phase(self, phase: Phase) -> None:
        ctx = self.ctx
        now = ctx.now
        start = now()
        end = start + phase.duration_s
        while (t := now()) < end and not ctx.stopping.is_set():
            want = share(phase.level(t - start), self.ctx.worker, self.workers)
            for _ in range(want - len(ctx.sessions)):
                self.start_session()
            await asyncio.sleep(min(TICK_S, end - t))

    async def _chaos_at(self, at: float, fraction: float, storm: bool) -> None:
        ctx = self.ctx
        await asyncio.sleep(max(0.0, at - ctx.now()))
        users = [u for u in ctx.online if u.wanted]
        victims = random.Random(ctx.rng.random()).sample(users,
                                                         math.ceil(fraction * len(users)))
        log.info("chaos: dropping %d of %d sockets%s", len(victims), len(users),
                 " (storm)" if storm else "")
        for user in victims:
            if user.abort(0.0 if storm else None):
                ctx.recorder.count("chaos_drops", node=user.node)

    async def _finish(self) -> None:
        ctx = self.ctx
        scenario = self.scenario
        if ctx.sessions and not ctx.stopping.is_set():
            await asyncio.wait(set(ctx.sessions), timeout=scenario.drain_s)
        ctx.stop()
        if ctx.sessions:
            _, pending = await asyncio.wait(set(ctx.sessions), timeout=STOP_WAIT_S)
            for task in pending:
                task.cancel()
        await wait_until(lambda: not ctx.tracker.lost(), scenario.grace_s, TICK_S)
        ctx.recorder.count("lost", ctx.tracker.lost())
        users = list(ctx.online)
        gate = asyncio.Semaphore(CLOSE_CONCURRENCY)

        async def close(user: Any) -> None:
            async with gate:
                await user.close()

        await asyncio.gather(*(close(u) for u in users), return_exceptions=True)
        await ctx.close_transports()

    async def _report_every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.emit(self._message("snap"))

    async def _probe_loop_lag(self) -> None:
        """How late a 100 ms timer fires: the generator's own saturation, whatever it does."""
        now = self.ctx.now
        while True:
            due = now() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            self._loop_lag_s = max(self._loop_lag_s, now() - due)

    def _message(self, kind: str) -> dict[str, Any]:
        ctx = self.ctx
        ctx.recorder.gauge("open_sockets", len(ctx.online))
        ctx.recorder.gauge("send_lag_s", ctx.max_lag_s)
        ctx.recorder.gauge("loop_lag_s", self._loop_lag_s)
        ctx.max_lag_s = self._loop_lag_s = 0.0
        return {"kind": kind, "worker": ctx.worker, "phase": self.phase,
                "users": len(ctx.online), "snapshot": ctx.recorder.snapshot(delta=True)}
