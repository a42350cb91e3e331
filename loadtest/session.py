"""A session: one arrival of a persona, running its flow with one user or a pair.

The flow's steps (`loadtest.steps`) run in order. Sends follow an open-model schedule: the
next intended send time is drawn from an exponential distribution (Poisson arrivals) and a
message is sent at that time whether or not earlier ones were acknowledged; its body carries
the intended time, so delivery latency counts the generator's own lateness too (coordinated
omission). A send more than `max_send_lag` behind its schedule is counted in `dropped_sends`
and skipped: a saturated generator must show up as such, not as a slower server.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from client import ClientClosed, ServerError
from loadtest.engine import BODY_PREFIX, Stopped, VirtualUser, WorkerContext, wait_until
from loadtest.scenario import Persona
from loadtest.steps import (
    Chaos,
    Choice,
    Connect,
    Disconnect,
    Expect,
    Flap,
    Http,
    Loop,
    Pair,
    Read,
    Send,
    Step,
    Think,
    Typing,
    Unsend,
)

SEND_ATTEMPTS = 4
ACK_TIMEOUT_S = 10.0
DELIVERY_WAIT_S = 5.0  # after its last ack, how long a send step waits for deliveries
_swipe_targets = itertools.count(1)
QUOTA_REFUSED = frozenset({"quota_exceeded"})
UNDO_REFUSED = frozenset({"not_found"})


class SessionFailed(Exception):
    """A step the rest of the flow depends on failed (counted already)."""


def _flow_needs_cursor(steps: tuple[Step, ...]) -> bool:
    for step in steps:
        if isinstance(step, Flap | Chaos):
            return True
        if isinstance(step, Loop) and _flow_needs_cursor(step.steps):
            return True
        if isinstance(step, Choice) and any(_flow_needs_cursor(s) for _, s in step.options):
            return True
    return False


class Session:
    def __init__(self, ctx: WorkerContext, persona: Persona) -> None:
        self.ctx = ctx
        self.persona = persona
        self.needs_cursor = bool(ctx.scenario.chaos) or _flow_needs_cursor(persona.flow)
        self.a = VirtualUser(ctx, self)
        self.b: VirtualUser | None = None
        self.match_id: str | None = None
        self.match_started: float | None = None
        self.typing_marks: dict[str, float] = {}
        self.presence_marks: dict[str, tuple[bool, float]] = {}
        self._seq: dict[str, int] = {}
        self._step_started = ctx.now()
        self._prev_step_started = self._step_started

    # -- who is who ------------------------------------------------------------------------

    def users(self, who: str) -> list[VirtualUser]:
        if who == "a" or self.b is None:
            return [self.a] if who != "b" else []
        if who == "b":
            return [self.b]
        return [self.a, self.b]

    def partner(self, user: VirtualUser) -> VirtualUser | None:
        if self.b is None:
            return None
        return self.b if user is self.a else self.a

    # -- fan-out measurement (called from the users' reader tasks) -------------------------

    def mark_presence(self, user: VirtualUser, on: bool, at: float) -> None:
        partner = self.partner(user)
        if self.match_id is not None and partner is not None and partner.online:
            self.presence_marks[user.name] = (on, at)

    def on_fanout(self, user: VirtualUser, kind: str, frame: dict[str, Any], now: float
                  ) -> None:
        rec = self.ctx.recorder
        if kind == "typing":
            sent = self.typing_marks.pop(str(frame.get("from")), None)
            if sent is not None and frame.get("on"):
                rec.latency("typing", now - sent, user.node)
        elif kind == "presence":
            mark = self.presence_marks.get(str(frame.get("u")))
            if mark is not None and mark[0] == bool(frame.get("on")):
                del self.presence_marks[str(frame.get("u"))]
                rec.latency("presence", max(0.0, now - mark[1]), user.node)
        elif kind == "match" and self.match_started is not None:
            rec.latency("match", now - self.match_started, user.node)

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.run_steps(self.persona.flow)
        except (Stopped, SessionFailed):
            pass
        finally:
            await asyncio.gather(*(u.close() for u in self.users("both")),
                                 return_exceptions=True)

    async def run_steps(self, steps: tuple[Step, ...]) -> None:
        for step in steps:
            if self.ctx.stopping.is_set():
                raise Stopped
            self._prev_step_started = self._step_started
            self._step_started = self.ctx.now()
            await self.run_step(step)

    async def run_step(self, step: Step) -> None:
        if isinstance(step, Connect):
            await self._each(step.who, self._connect)
        elif isinstance(step, Disconnect):
            await self._each(step.who, VirtualUser.disconnect)
        elif isinstance(step, Pair):
            await self._pair(step)
        elif isinstance(step, Http):
            await self._each(step.who, lambda u: self._http(u, step))
        elif isinstance(step, Send):
            await self._each(step.who, lambda u: self._send_loop(u, step))
        elif isinstance(step, Typing):
            await self._each(step.who, self._typing)
        elif isinstance(step, Read):
            await self._each(step.who, self._read)
        elif isinstance(step, Expect):
            await self._each(step.who, lambda u: self._expect(u, step))
        elif isinstance(step, Think):
            await self.ctx.sleep(self._think_s(step))
        elif isinstance(step, Loop):
            await self._loop(step)
        elif isinstance(step, Choice):
            weights = [w for w, _ in step.options]
            (_, chosen), = self.ctx.rng.choices(step.options, weights)
            await self.run_steps(chosen)
        elif isinstance(step, Flap):
            await self._each(step.who, lambda u: self._flap(u, step))
        elif isinstance(step, Chaos):
            await self._each(step.who, lambda u: self._chaos(u, step))
        elif isinstance(step, Unsend):
            await self._each(step.who, self._unsend)

    async def _each(self, who: str, action: Any) -> None:
        users = self.users(who)
        if len(users) == 1:
            await action(users[0])
        else:
            results = await asyncio.gather(*(action(u) for u in users), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    # -- steps -----------------------------------------------------------------------------

    async def _connect(self, user: VirtualUser) -> None:
        if not user.online and not await user.connect():
            raise SessionFailed

    async def _pair(self, step: Pair) -> None:
        ctx, a = self.ctx, self.a
        b = self.b = VirtualUser(ctx, self)
        if a.online:
            await self._connect(b)
        if await ctx.http_call(a.node, a.http.swipe(b.name, "like")) is None:
            raise SessionFailed
        self.match_started = ctx.now()
        since = self.match_started
        result = await ctx.http_call(b.node, b.http.swipe(a.name, "like"))
        match = result.get("match") if isinstance(result, dict) else None
        if not isinstance(match, dict):
            ctx.recorder.count("errors.no_match", node=b.node)
            raise SessionFailed
        self.match_id = str(match["id"])
        for user in (a, b):
            if user.online and not await user.expect("match", since, step.timeout_s):
                ctx.recorder.count("expect_timeouts", node=user.node)
        self.match_started = None

    async def _http(self, user: VirtualUser, step: Http) -> None:
        ctx = self.ctx
        for _ in range(step.count):
            if step.op == "swipe":  # past a configured quota, a refusal is expected
                target = f"{ctx.scenario.user_prefix}{ctx.run_id}x{next(_swipe_targets)}"
                await ctx.http_call(user.node, user.http.swipe(target, step.action),
                                    QUOTA_REFUSED)
            elif step.op == "matches":
                await ctx.http_call(user.node, user.http.matches(limit=20))
            elif step.op == "quota":
                await ctx.http_call(user.node, user.http.quota())
            elif step.op == "undo":  # nothing to undo (or past the window) is an answer
                await ctx.http_call(user.node, user.http.undo(), UNDO_REFUSED)
            elif step.op == "likes":
                await ctx.http_call(user.node, user.http.likes(limit=20))
            elif step.op == "deck_filter":
                await ctx.http_call(user.node, user.http.deck_filter(
                    self._candidates(step.candidates)))
            else:
                await ctx.http_call(user.node, user.http.put_settings(show_online=True))

    def _candidates(self, n: int) -> list[str]:
        """A deck batch: the `n` most recent swipe targets of this worker (some swiped by
        this session, so filtered out) and `n // 4` never swiped."""
        ctx = self.ctx
        newest = next(_swipe_targets)
        prefix = f"{ctx.scenario.user_prefix}{ctx.run_id}x"
        recent = [f"{prefix}{i}" for i in range(max(1, newest - n + n // 4), newest)]
        fresh = [f"{prefix}deck{newest}-{i}" for i in range(n - len(recent))]
        return recent + fresh

    async def _typing(self, user: VirtualUser) -> None:
        client = user.client
        if client is None or self.match_id is None:
            return
        self.typing_marks[user.name] = self.ctx.now()
        try:
            await client.typing(self.match_id, True)
        except ClientClosed:
            self.typing_marks.pop(user.name, None)

    async def _read(self, user: VirtualUser) -> None:
        client = user.client
        if client is None or self.match_id is None or user.last_from_partner is None:
            return
        try:
            await client.read(self.match_id, user.last_from_partner)
        except ClientClosed:
            return

    async def _unsend(self, user: VirtualUser) -> None:
        """Send a message the delivery tracker does not follow (no `BODY_PREFIX`), then
        unsend it: the partner sees `msg` and `unsent`, history a tombstone."""
        client, ctx = user.client, self.ctx
        if client is None or self.match_id is None:
            return
        started = ctx.now()
        try:
            ack = await client.send(self.match_id, "unsend me", timeout=ACK_TIMEOUT_S)
            await client.unsend(self.match_id, ack["id"])
        except (ClientClosed, TimeoutError):
            ctx.recorder.count("errors.unsend_offline", node=user.node)
            return
        except ServerError as exc:
            ctx.recorder.count(f"errors.{exc.code}", node=user.node)
            return
        ctx.recorder.count("unsent", node=user.node)
        ctx.recorder.latency("unsend", ctx.epoch(ctx.now()) - ctx.epoch(started), user.node)

    async def _expect(self, user: VirtualUser, step: Expect) -> None:
        if not await user.expect(step.type, self._prev_step_started, step.timeout_s):
            self.ctx.recorder.count("expect_timeouts", node=user.node)

    def _think_s(self, step: Think) -> float:
        rng = self.ctx.rng
        if step.dist == "uniform":
            return rng.uniform(step.a, step.b)
        if step.dist == "exponential":
            return rng.expovariate(1 / step.a)
        return step.a

    async def _loop(self, step: Loop) -> None:
        now = self.ctx.now
        end = now() + step.duration_s if step.duration_s is not None else None
        for i in itertools.count():
            if step.count is not None and i >= step.count:
                return
            if end is not None and now() >= end:
                return
            await self.run_steps(step.steps)

    async def _flap(self, user: VirtualUser, step: Flap) -> None:
        await user.disconnect()
        await self.ctx.sleep(step.offline_s)
        await user.reconnect()

    async def _chaos(self, user: VirtualUser, step: Chaos) -> None:
        if self.ctx.rng.random() >= step.drop or not user.abort(step.reconnect_after_s):
            return
        self.ctx.recorder.count("chaos_drops", node=user.node)
        await asyncio.sleep(0)  # let the reader notice the drop before waiting on it
        await user.wait_online(step.reconnect_after_s + 30.0)

    # -- sending on an open-model schedule -------------------------------------------------

    async def _send_loop(self, user: VirtualUser, step: Send) -> None:
        partner = self.partner(user)
        if partner is None or self.match_id is None:
            return
        ctx = self.ctx
        stream = f"{user.name}>{partner.name}"
        now = ctx.now
        start = now()
        end = start + step.duration_s if step.duration_s is not None else None
        intended = start
        in_flight: set[asyncio.Task[None]] = set()
        try:
            for n in itertools.count():
                if step.count is not None and n >= step.count:
                    break
                intended += ctx.rng.expovariate(step.rate)
                if end is not None and intended > end:
                    break
                await ctx.sleep(intended - now())
                lag = now() - intended
                ctx.note_lag(lag)
                if lag > ctx.scenario.max_send_lag_s:
                    ctx.recorder.count("dropped_sends", node=user.node)
                    continue
                seq = self._seq[stream] = self._seq.get(stream, 0) + 1
                task = asyncio.create_task(self._send_one(user, stream, seq, intended))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        except Stopped:
            pass
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        # a burst ends when the partner has it all: a flap right after must not catch
        # messages on their way (they would arrive by sync, late, and blur the figure)
        await wait_until(lambda: not ctx.tracker.in_flight(stream), DELIVERY_WAIT_S)

    async def _send_one(self, user: VirtualUser, stream: str, seq: int, intended: float
                        ) -> None:
        ctx, rec, node = self.ctx, self.ctx.recorder, user.node
        assert self.match_id is not None
        body = f"{BODY_PREFIX}{stream}|{seq}|{int(ctx.epoch(intended) * 1_000_000)}"
        c = f"{stream}#{seq}"
        ctx.tracker.sent(stream, seq)
        rec.count("sent", node=node)
        for _ in range(SEND_ATTEMPTS):
            client = await user.wait_online()
            if client is None:
                rec.count("errors.send_offline", node=node)
                return
            try:
                await client.send(self.match_id, body, c=c, timeout=ACK_TIMEOUT_S)
            except ClientClosed:
                await asyncio.sleep(0.05)  # the watcher marks the user offline meanwhile
                continue
            except TimeoutError:
                rec.count("errors.ack_timeout", node=node)
                continue
            except ServerError as exc:
                rec.count(f"errors.{exc.code}", node=node)
                if exc.code in ("rate_limited", "unavailable"):
                    await asyncio.sleep((exc.retry_ms or 500) / 1000)
                    continue
                return
            rec.count("acked", node=node)
            rec.latency("ack", ctx.epoch(ctx.now()) - ctx.epoch(intended), node)
            return
