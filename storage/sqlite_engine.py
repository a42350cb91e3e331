"""How SQLite is driven without blocking the event loop: one writer thread, a few readers.

SQLite allows one writer at a time and every commit costs an fsync, so all writes go to one
thread that owns the only writing connection and commits whatever is queued in one
transaction (group commit: one fsync acknowledges many writes). Reads run on a small pool
whose threads each own a connection; in WAL mode they never wait for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from storage.base import StoreUnavailable
from storage.sqlite_checkpoint import Checkpointer

log = logging.getLogger("rendezvous.storage")
T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
# a write that runs together with its queued neighbours of the same kind: one call for the
# lot, returning one result per item, in order (see `SqliteEngine.write_grouped`)
GroupOp = Callable[[sqlite3.Connection, list[Any]], list[Any]]


class _Grouped:
    """One item of a grouped write in the queue."""
    __slots__ = ("item", "run")

    def __init__(self, run: GroupOp, item: Any) -> None:
        self.run = run
        self.item = item

    def __call__(self, conn: sqlite3.Connection) -> Any:  # alone: a group of one
        return self.run(conn, [self.item])[0]


_Item = tuple["Op | _Grouped", "asyncio.Future[Any]"]

SYNCHRONOUS_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
BUSY_TIMEOUT_MS = 5_000
READER_THREADS = 2
# the writer checkpoints only past this many WAL pages (64 MB): a backstop, checkpoints are
# the checkpointer thread's (storage/sqlite_checkpoint.py)
WAL_AUTOCHECKPOINT_PAGES = 16_000
LOCK_WAIT_S = 60.0  # start-up: how long a file locked by another process is waited for
LOCK_RETRY_MAX_S = 1.0  # between tries (each try itself waits up to BUSY_TIMEOUT_MS)


class SqliteEngine:
    """Runs callables against one SQLite file: writes in order and in groups, reads aside.

    A write is acknowledged (its future resolved) only after the COMMIT of its group
    returned, so with `synchronous="FULL"` only once the WAL is on disk. Writes run in the
    order `write` was called. One that raises fails alone: its group is rolled back and run
    again with a SAVEPOINT per write, and the rest of it still commits.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL",
                 max_batch: int = 256,
                 setup: Callable[[sqlite3.Connection], None] | None = None,
                 lock_wait_s: float = LOCK_WAIT_S) -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_MODES)}")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = os.fspath(path)
        self.synchronous = mode
        self.max_batch = max_batch  # the most writes committed in one transaction
        self.batches = 0  # committed transactions; `ops / batches` is the mean group size
        self.ops = 0
        self._setup = setup
        self.lock_wait_s = lock_wait_s
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._writing = False  # the writer thread is serving
        self.checkpointer = Checkpointer(self.path)

    async def start(self) -> None:
        """Open the writer connection (WAL) and run `setup` on it, e.g. to create tables."""
        if self._started or self._closed:
            raise RuntimeError("an engine is started once")
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writer = threading.Thread(target=self._write_loop, args=(ready,),
                                        name="sqlite-writer", daemon=True)
        self._writer.start()
        try:
            await ready
        except BaseException:
            self._closed = True
            raise
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="sqlite-reader")
        self.checkpointer.start()
        self._started = True

    async def close(self) -> None:
        """Commit every write already queued, then stop the threads and close connections."""
        if self._closed:
            return
        self._closed = True  # from here no write can be enqueued behind the stop marker
        if self._started:
            await asyncio.to_thread(self.checkpointer.stop)
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, True)
        with self._lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()

    def write(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Enqueue `op` for the writer now, not at the caller's first await: two writes
        called in order are committed in order. Await the returned future for the result."""
        self._check_open()
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((op, fut))
        return fut

    def write_grouped(self, run: GroupOp, item: Any) -> asyncio.Future[Any]:
        """Like `write`, for a write of which many are queued at once (a message save):
        consecutive queued items with the same `run` go to one `run(conn, items)` call,
        which returns their results in order. One SQL statement for a whole group is one
        release and re-take of the GIL by the writer instead of one per item: under load the
        re-take waits for the event loop, and that wait, not SQLite, was the writer's cost
        (docs/storage.md). If the call raises, each item runs alone (`run(conn, [item])`)
        inside its own savepoint, as any failed group does."""
        return self.write(_Grouped(run, item))

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` on a reader connection; it sees every write acknowledged before."""
        self._check_open()
        assert self._readers is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, op)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if not self._started:
            raise StoreUnavailable("the store is not started")
        if not self._writing:  # a flag the writer clears as it ends: cheaper than is_alive()
            raise StoreUnavailable("the sqlite writer thread has stopped")

    def _run_read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = connect(self.path, self.synchronous, reader=True)
                self._local.conn = conn
                with self._lock:
                    self._reader_conns.append(conn)
            return op(conn)
        except Exception as exc:
            mapped = as_unavailable(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _write_loop(self, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._open_writer()
        except Exception as exc:
            _settle(ready, None, as_unavailable(exc, always=True))
            return
        try:
            self._writing = True
            _settle(ready, None, None)
            self._serve(conn)
        finally:
            self._writing = False
            conn.close()
            self._fail_leftovers()

    def _open_writer(self) -> sqlite3.Connection:
        """The writer connection, set up. A file another process holds locked (two nodes
        starting at once on one data dir, a backup, a migration) is waited for, for at
        most `lock_wait_s` and with a log line per try, instead of failing the start."""
        deadline = time.monotonic() + self.lock_wait_s
        attempt = 0
        while True:
            conn = None
            try:
                conn = connect(self.path, self.synchronous, reader=False)
                if self._setup is not None:
                    self._setup(conn)
                return conn
            except sqlite3.OperationalError as exc:
                if conn is not None:
                    conn.close()
                left = deadline - time.monotonic()
                if not is_busy(exc) or left <= 0 or self._closed:
                    raise
                attempt += 1
                log.warning("sqlite: %s at start-up (%s); retrying, attempt %d, %.0f s "
                            "left (startup_wait_s)", exc, self.path, attempt, left)
                time.sleep(min(left, LOCK_RETRY_MAX_S, 0.05 * 2 ** attempt))
            except BaseException:
                if conn is not None:
                    conn.close()
                raise

    def _serve(self, conn: sqlite3.Connection) -> None:
        """Group commit: wait for one write, take what else is queued, commit them as one."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, stop = [item], False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(conn, batch)
            if stop:
                return

    def _commit(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        """Run the group in one transaction, then settle the futures.

        The ops first run back to back with no savepoint each: a SAVEPOINT and a RELEASE
        per op cost more statements than a message's own (see docs/storage.md). If one
        raises, the transaction is rolled back and the whole group runs again the careful
        way (`_commit_each`), where the failing op fails alone and the rest commits. An op
        is a function of the connection, so running it again after a rollback is safe.
        A failing BEGIN or COMMIT fails them all.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            return self._fail_all(conn, batch, exc)
        values: list[Any] = []
        try:
            for run, items in _runs(batch):
                results = run(conn, items)
                if len(results) != len(items):
                    raise RuntimeError(f"{run!r} returned {len(results)} results "
                                       f"for {len(items)} items")
                values.extend(results)
        except Exception:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except Exception as exc:
                    return self._fail_all(conn, batch, exc)
            return self._commit_each(conn, batch)
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            return self._fail_all(conn, batch, exc)
        return self._committed(batch, [(value, None) for value in values])

    def _commit_each(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        """Run each op in its own savepoint inside one transaction, then settle the futures.

        A failing op rolls back to its savepoint and fails alone; a failing BEGIN or COMMIT
        (or an error after which SQLite rolled the whole transaction back) fails them all.
        """
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, _ in batch:
                conn.execute("SAVEPOINT op")
                try:
                    value = op(conn)
                except Exception as exc:
                    if not conn.in_transaction:
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((None, as_unavailable(exc)))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((value, None))
            conn.execute("COMMIT")
        except Exception as exc:
            return self._fail_all(conn, batch, exc)
        return self._committed(batch, outcomes)

    def _committed(self, batch: list[_Item],
                   outcomes: list[tuple[Any, BaseException | None]]) -> None:
        """After a group's COMMIT: wake the checkpointer, count, settle the futures."""
        self.checkpointer.poke()
        self.batches += 1
        self.ops += len(batch)
        _settle_all([(fut, value, error)
                     for (_, fut), (value, error) in zip(batch, outcomes, strict=True)])

    def _fail_all(self, conn: sqlite3.Connection, batch: list[_Item],
                  exc: BaseException) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        # an exception of its own per write: one raised in many tasks would pile up their
        # tracebacks on one object
        _settle_all([(fut, None, as_unavailable(exc, always=True)) for _, fut in batch])

    def _fail_leftovers(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _settle(item[1], None, StoreUnavailable("the store is closed"))


def _run_each(conn: sqlite3.Connection, ops: list[Op]) -> list[Any]:
    return [op(conn) for op in ops]


def _runs(batch: list[_Item]) -> list[tuple[GroupOp, list[Any]]]:
    """The group as consecutive runs, in order: grouped writes of one kind together, plain
    writes (run one by one) together."""
    runs: list[tuple[GroupOp, list[Any]]] = []
    for op, _ in batch:
        run, item = (op.run, op.item) if isinstance(op, _Grouped) else (_run_each, op)
        if runs and runs[-1][0] is run:
            runs[-1][1].append(item)
        else:
            runs.append((run, [item]))
    return runs


def connect(path: str, synchronous: str, *, reader: bool) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are begun explicitly by the writer."""
    # a statement cache of 512 (default 128): a group save has a statement text per group
    # size, up to max_batch (256) of them, and re-preparing a 256-row insert costs more
    # than running it
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False, cached_statements=512)
    try:
        if reader:
            conn.execute("PRAGMA query_only = ON")
        else:
            (mode,), = conn.execute("PRAGMA journal_mode = WAL").fetchall()
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL, journal_mode is {mode}")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            # A group's saves are one multi-row statement, whose statement journal (kept
            # to undo it alone) goes to a temp file by default: in memory it costs a third
            # less CPU per save. Checkpoints are the checkpointer thread's; the writer's
            # own is a backstop (docs/storage.md has the figures).
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    except BaseException:
        conn.close()
        raise
    return conn


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock; worth a retry."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def as_unavailable(exc: BaseException, *, always: bool = False) -> BaseException:
    """What the caller sees: an outage as `StoreUnavailable`; a bug (including an integrity
    error, which retrying cannot fix) as itself, unless `always`."""
    if isinstance(exc, StoreUnavailable):
        return exc
    outage = isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError)
    if not (outage or always):
        return exc
    mapped = StoreUnavailable(f"sqlite: {exc}")
    mapped.__cause__ = exc
    return mapped


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    _settle_all([(fut, value, error)])


def _settle_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Resolve futures on their own loops (asyncio futures are not thread-safe), waking each
    loop once per group rather than once per write."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any,
                                                         BaseException | None]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_apply, settled)


def _apply(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, error in outcomes:
        if fut.done():  # the caller was cancelled; the write stands regardless
            continue
        if error is None:
            fut.set_result(value)
        else:
            fut.set_exception(error)
