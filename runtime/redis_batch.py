"""One Redis pipeline per loop turn for the commands a node's tasks issue together.

A command sent alone costs a round trip and, measured here, 130-250 us of redis-py CPU; a
node whose sessions all send at once would pay that for every rate-limit take, send claim,
confirm, publish and presence write. A `TurnBatcher` queues the commands issued during one
loop iteration (and while the previous batch was on the wire) and sends them as one pipeline
from one flusher task: one round trip per turn and ~20 us a command (docs/cluster.md,
"One pipeline per loop turn").

The contract callers rely on:
- order: commands reach Redis in the order they were queued (one batch at a time, on one
  connection per shard), so a caller's later command sees its earlier one.
- errors: a command Redis answers with an error fails only its own caller; a connection
  error or timeout fails every command of that batch, and each caller falls back as it
  would for a lone command.
- bound: at most `max_queued` commands wait; past it `call` raises `BatchFull` at once (a
  `RedisError`, so callers take their Redis-is-down path) instead of queueing without end.
- scripts go by SHA; a NOSCRIPT answer (a restarted Redis forgot them) is sent again once
  with the script's body, which also loads it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runtime.tasks import stop_tasks

_HiredisParser: Any = None  # redis-py's hiredis parser class, where it is (_read_replies)
_NOT_ENOUGH_DATA: Any = None  # and its "need more bytes" marker
try:
    from redis._parsers import hiredis as _hiredis_parser

    _HiredisParser = _hiredis_parser._AsyncHiredisParser
    _NOT_ENOUGH_DATA = _hiredis_parser.NOT_ENOUGH_DATA
except (ImportError, AttributeError):  # pragma: no cover - another redis-py layout
    pass

Command = tuple[Any, ...]

MAX_QUEUED = 20_000  # commands waiting for a batch: ~0.4 s of work, then fail fast
MAX_BATCH = 2_000  # commands per pipeline, so that one batch never holds the loop long
TIMEOUT_S = 2.0  # a whole batch; each read also has the client's socket timeout
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def pack_commands(commands: list[Command]) -> bytes:
    """RESP for `commands` in one buffer: str as UTF-8, int and float as decimal, bytes
    as they are (what redis-py's encoder does for these types, at a third of its cost)."""
    out: list[bytes] = []
    append = out.append
    for command in commands:
        append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, str):
                data = arg.encode()
            elif isinstance(arg, bytes):
                data = arg
            elif isinstance(arg, int) and not isinstance(arg, bool):
                data = b"%d" % arg
            elif isinstance(arg, float):
                data = repr(arg).encode()
            else:
                raise DataError(f"cannot send {type(arg).__name__} to Redis: {arg!r}")
            append(b"$%d\r\n" % len(data))
            append(data)
            append(b"\r\n")
    return b"".join(out)


async def _send(conn: Any, data: bytes) -> None:
    """Write one batch. redis-py's `send_packed_command` wraps every write in `wait_for`
    (a task per call); the batch already runs under a timeout, so write directly when the
    connection is up, and leave connecting and errors to redis-py otherwise."""
    writer = getattr(conn, "_writer", None)
    if writer is None or not conn.is_connected:
        await conn.send_packed_command(data)
        return
    try:
        writer.write(data)
        await writer.drain()
    except OSError as error:
        await conn.disconnect(nowait=True)
        raise RedisConnectionError(f"Error while writing to Redis: {error!r}") from error


async def _read_replies(conn: Any, n: int, replies: list[Any]) -> None:
    """Append `n` replies read from `conn`. With redis-py's hiredis parser they are taken
    from its reader in one loop (redis-py's `read_response` costs two coroutines, a timeout
    check and an error-message string per reply, about a third of the batcher's time);
    otherwise through `read_response`. No timeout per reply: the whole batch runs under one,
    in `TurnBatcher._run`. An error Redis answered is a reply like any other (its caller
    gets it); a connection error or a closed socket raises."""
    parser: Any = getattr(conn, "_parser", None)
    if _HiredisParser is None or not isinstance(parser, _HiredisParser) or \
            not getattr(parser, "_connected", False):
        for _ in range(n):
            try:
                replies.append(await conn.read_response(timeout=math.inf))
            except ResponseError as error:  # answered: the connection is still in step
                replies.append(error)
        return
    gets, feed, stream = parser._reader.gets, parser._reader.feed, parser._stream
    while len(replies) < n:
        reply = gets()
        if reply is _NOT_ENOUGH_DATA:
            try:
                data = await stream.read(65536)
            except OSError as error:
                await conn.disconnect(nowait=True)
                raise RedisConnectionError(f"Error while reading from Redis: {error!r}") \
                    from error
            if not data:
                await conn.disconnect(nowait=True)
                raise RedisConnectionError("Redis closed the connection")
            feed(data)
        elif isinstance(reply, RedisConnectionError):  # e.g. "max number of clients"
            await conn.disconnect(nowait=True)
            raise reply
        else:
            replies.append(reply)


class BatchFull(RedisError):
    """More commands are waiting than the bound allows: Redis is too slow or gone."""


class BatchScript:
    """A Lua script the batcher sends by SHA (redis-py's `Script` object would check
    SCRIPT EXISTS in every pipeline)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Entry:
    """Commands queued by one call, and the caller's future."""

    __slots__ = ("commands", "future", "single")

    def __init__(self, commands: list[Command], future: asyncio.Future[Any],
                 single: bool) -> None:
        self.commands = commands
        self.future = future
        self.single = single


class TurnBatcher:
    """Queues commands and flushes them once per loop turn (see the module docstring).

    Standalone, the batcher keeps one pool connection checked out (one batch at a time
    needs no more, and it skips the pool's per-use cost); on a Redis Cluster it uses the client's
    cluster pipeline, which splits a batch by shard and follows MOVED and ASK."""

    def __init__(self, client: Redis | RedisCluster, *, max_queued: int = MAX_QUEUED,
                 max_batch: int = MAX_BATCH, timeout_s: float = TIMEOUT_S) -> None:
        self.client = client
        self.max_queued = max_queued
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.batches = 0  # pipelines sent (tests and profiles read these)
        self.commands = 0
        self._queue: deque[_Entry] = deque()
        self._queued = 0
        self._sources: dict[str, str] = {}  # sha -> body, for NOSCRIPT
        self._flusher: asyncio.Task[None] | None = None
        self._conn: Any = None

    # -- queueing -------------------------------------------------------------------------
    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply (or the error it caused)."""
        return self._add([args], single=True)

    def script(self, script: BatchScript, keys: Sequence[Any],
               args: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue a script run; the future gets its reply."""
        return self._add([self.command(script, keys, args)], single=True)

    def command(self, script: BatchScript, keys: Sequence[Any],
                args: Sequence[Any]) -> Command:
        """The command that runs `script`, for `call_many`."""
        self._sources[script.sha] = script.source
        return ("EVALSHA", script.sha, len(keys), *keys, *args)

    def call_many(self, commands: list[Command]) -> asyncio.Future[list[Any]]:
        """Queue commands that go in one batch together; the future gets the list of
        replies, errors Redis answered in place (it fails only if the batch does)."""
        if len(commands) > self.max_batch:
            raise ValueError(f"{len(commands)} commands cannot go in one batch "
                             f"(max_batch {self.max_batch})")
        return self._add(commands, single=False)

    def _add(self, commands: list[Command], single: bool) -> asyncio.Future[Any]:
        if self._queued + len(commands) > self.max_queued:
            raise BatchFull(f"{self._queued} Redis commands already wait for a batch")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Entry(commands, future, single))
        self._queued += len(commands)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name="redis-turn-batcher")
        return future

    def queued(self) -> int:
        return self._queued

    async def close(self) -> None:
        """Stop flushing; whatever still waits fails as if Redis were gone."""
        if self._flusher is not None:
            await stop_tasks([self._flusher])
        self._fail(list(self._queue), RedisConnectionError("the Redis batcher is closed"))
        self._queue.clear()
        self._queued = 0

    # -- flushing -------------------------------------------------------------------------
    async def _flush(self) -> None:
        try:
            while self._queue:
                await self._run(self._take())
                # The callers just answered run before the next batch is taken, so their
                # follow-up commands (a claim after a take) join it instead of trailing it.
                await asyncio.sleep(0)
        finally:
            self._flusher = None

    def _take(self) -> list[_Entry]:
        entries = [self._queue.popleft()]
        count = len(entries[0].commands)
        while self._queue and count + len(self._queue[0].commands) <= self.max_batch:
            entry = self._queue.popleft()
            entries.append(entry)
            count += len(entry.commands)
        self._queued -= count
        return entries

    async def _run(self, entries: list[_Entry]) -> None:
        commands = [command for entry in entries for command in entry.commands]
        try:
            async with asyncio.timeout(self.timeout_s):
                replies = await self._execute(commands)
                if any(isinstance(reply, NoScriptError) for reply in replies):
                    await self._load_scripts(commands, replies)
        except Exception as error:
            self._fail(entries, error)
            return
        except BaseException:
            self._fail(entries, RedisConnectionError("the Redis batcher is closed"))
            raise
        self.batches += 1
        self.commands += len(commands)
        i = 0
        for entry in entries:
            n = len(entry.commands)
            future = entry.future
            if not future.done():  # a cancelled caller's future is done
                if not entry.single:
                    future.set_result(replies[i:i + n])
                elif isinstance(replies[i], Exception):
                    future.set_exception(replies[i])
                else:
                    future.set_result(replies[i])
            i += n

    @staticmethod
    def _fail(entries: list[_Entry], error: BaseException) -> None:
        for entry in entries:
            if not entry.future.done():
                entry.future.set_exception(error)

    async def _load_scripts(self, commands: list[Command], replies: list[Any]) -> None:
        """Send again, with their bodies, the scripts Redis no longer knew."""
        again = [i for i, reply in enumerate(replies)
                 if isinstance(reply, NoScriptError) and commands[i][1] in self._sources]
        retried = await self._execute([("EVAL", self._sources[commands[i][1]],
                                        *commands[i][2:]) for i in again])
        for i, reply in zip(again, retried, strict=True):
            replies[i] = reply

    async def _execute(self, commands: list[Command]) -> list[Any]:
        if isinstance(self.client, RedisCluster):
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                # The cluster pipeline runs redis-py's reply callbacks: SET ... GET must
                # say so, or the old value comes back as True.
                if command[0] == "SET" and "GET" in command[3:]:
                    pipe.execute_command(*command, get=True)
                else:
                    pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))
        conn = self._conn
        if conn is None:
            # Checked out for good: never back in the pool, but still the pool's, so the
            # client's aclose() closes it like the others.
            pool = self.client.connection_pool
            conn = self._conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        try:
            await self._exchange(conn, commands, replies)
        except CONNECTION_ERRORS:
            if replies:
                raise
            # Nothing was answered: most likely a socket that a restarted Redis closed.
            # One fresh connection, as the client's own retry would do.
            await conn.disconnect()
            await self._exchange(conn, commands, replies)
        return replies

    @staticmethod
    async def _exchange(conn: Any, commands: list[Command], replies: list[Any]) -> None:
        """Send `commands` and append their replies (errors Redis answered in place)."""
        try:
            await _send(conn, pack_commands(commands))
            await _read_replies(conn, len(commands), replies)
        except CONNECTION_ERRORS:
            raise  # redis-py has closed the connection already
        except BaseException:
            await conn.disconnect()  # half a batch read: the socket is out of step
            raise
