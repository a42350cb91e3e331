"""Group commit for Cassandra: the saves of one loop turn go out as a few unlogged batches.

Measured on the project's machines (docs/storage.md, the save path): per request, the driver
spends about as much Python as on four statements, and Cassandra spends more on a request than
on the mutations in it. So `save_message` hands its rows to a `WriteBatcher`, which at the end
of the loop turn packs the rows of several saves into one UNLOGGED BATCH per request (as many
as fit under Cassandra's warning thresholds). Every save of a batch is acknowledged when
Cassandra acknowledged the whole batch at the configured consistency, and fails with it. The
rows are in different partitions, so a batch buys fewer round trips, not atomicity: every
row is idempotent and ordered by its own write timestamp, as when they were sent one by one.

`StatementEncoder` serializes bound values for the column types of the save path directly
(what `PreparedStatement.bind` does through per-column lookups, at about a tenth of the
cost); any other type goes through the driver's own serializer.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from typing import Any

from cassandra import cqltypes
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType

from storage.base import StoreUnavailable
from storage.cassandra_bridge import DriverBridge, Row

Encoded = Any  # a serialized value (bytes), None (null) or UNSET_VALUE
Encode = Callable[[Any], bytes]

_INT = struct.Struct(">i").pack
_BIGINT = struct.Struct(">q").pack
_SHORT = struct.Struct(">H").pack


def _text(value: str) -> bytes:
    return value.encode()


def encoder_for(cql_type: Any, protocol_version: int) -> Encode:
    """A serializer for one column type: direct for the save path's types, else the
    driver's (`cql_type.serialize`)."""
    if issubclass(cql_type, cqltypes.Int32Type):
        return _INT
    if issubclass(cql_type, (cqltypes.LongType, cqltypes.CounterColumnType)):
        return _BIGINT
    if issubclass(cql_type, (cqltypes.UTF8Type, cqltypes.AsciiType)):
        return _text
    if issubclass(cql_type, cqltypes.TupleType):
        parts = [encoder_for(t, protocol_version) for t in cql_type.subtypes]

        def tuple_(value: Sequence[Any]) -> bytes:
            if len(value) != len(parts):
                raise ValueError(f"expected {len(parts)} items in a tuple: {value!r}")
            out = []
            for part, item in zip(parts, value, strict=True):
                if item is None:
                    out.append(b"\xff\xff\xff\xff")
                else:
                    packed = part(item)
                    out.append(_INT(len(packed)))
                    out.append(packed)
            return b"".join(out)
        return tuple_

    def driver(value: Any) -> bytes:
        return bytes(cql_type.serialize(value, protocol_version))
    return driver


class StatementEncoder:
    """Values for one prepared statement, serialized as `bind` would, and its routing key."""

    def __init__(self, prepared: Any, protocol_version: int) -> None:
        self.query_id: bytes = prepared.query_id
        self.keyspace: str | None = prepared.keyspace
        self._encoders = [encoder_for(column.type, protocol_version)
                          for column in prepared.column_metadata]
        self._routing = tuple(prepared.routing_key_indexes or ())

    def encode(self, values: Sequence[Any]) -> list[Encoded]:
        if len(values) != len(self._encoders):
            raise ValueError(f"{len(values)} values for {len(self._encoders)} columns")
        return [value if value is None or value is UNSET_VALUE else encode(value)
                for encode, value in zip(self._encoders, values, strict=True)]

    def routing_key(self, encoded: list[Encoded]) -> bytes | None:
        """The partition key of `encoded`, packed as the driver packs it for token-aware
        routing (one column: its bytes; several: length, bytes and a zero byte each)."""
        if not self._routing:
            return None
        parts: list[bytes] = [encoded[i] for i in self._routing]
        if len(parts) == 1:
            return parts[0]
        return b"".join(_SHORT(len(part)) + part + b"\x00" for part in parts)


Statement = tuple[StatementEncoder, list[Encoded]]


class _Save:
    """One save's rows, the partitions they touch and the future its caller awaits."""

    __slots__ = ("done", "keys", "rows", "size")

    def __init__(self, done: asyncio.Future[None], rows: list[Statement]) -> None:
        self.done, self.rows = done, rows
        self.keys = {encoder.routing_key(values) for encoder, values in rows}
        self.size = sum(len(v) for _, values in rows for v in values if isinstance(v, bytes))


class WriteBatcher:
    """Collects the saves of a loop turn and sends them as batches that each touch at most
    `max_partitions` partitions and hold about `max_bytes` of values at most.

    The defaults stay under what Cassandra warns about: more than
    `unlogged_batch_across_partitions_warn_threshold` partitions (10) or more than
    `batch_size_warn_threshold` (5 KiB); past either, every answer carries a warning that the
    driver logs. A save never waits for another: whatever this turn holds goes out now.
    """

    def __init__(self, bridge: DriverBridge, loop: asyncio.AbstractEventLoop, *,
                 timeout_s: float, max_partitions: int = 10, max_bytes: int = 4096) -> None:
        self._bridge = bridge
        self._loop = loop
        self._timeout_s = timeout_s
        self._max_partitions = max_partitions
        self._max_bytes = max_bytes
        self._pending: list[_Save] = []
        self._flush_scheduled = False
        self.batches = 0  # requests sent: saves per batch is what grouping buys

    def submit(self, rows: list[Statement]) -> asyncio.Future[None]:
        """Queue one save's rows for this turn's batches; the future settles with its
        batch (None, or the batch's `StoreUnavailable`)."""
        done: asyncio.Future[None] = self._loop.create_future()
        self._pending.append(_Save(done, rows))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return done

    def flush(self) -> None:
        """Send what this turn holds now (`close` calls it before waiting for answers)."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        group: list[_Save] = []
        keys: set[bytes | None] = set()
        size = 0
        for save in pending:
            if group and (len(keys | save.keys) > self._max_partitions
                          or size + save.size > self._max_bytes):
                self._send(group)
                group, keys, size = [], set(), 0
            group.append(save)
            keys |= save.keys
            size += save.size
        if group:
            self._send(group)

    def _send(self, group: list[_Save]) -> None:
        batch = BatchStatement(BatchType.UNLOGGED)
        first_encoder, first_values = group[0].rows[0]
        batch.keyspace = first_encoder.keyspace  # token-aware: a replica of the first row
        batch.routing_key = first_encoder.routing_key(first_values)
        add = batch._add_statement_and_params  # what `add` does after binding (see above)
        for save in group:
            for encoder, values in save.rows:
                add(True, encoder.query_id, values)
        self.batches += 1
        try:
            answer = self._bridge.send(batch, None, self._timeout_s)
        except Exception as exc:  # refused at once (no connection): every save fails now
            for save in group:
                if not save.done.done():
                    save.done.set_exception(_own_copy(exc))
            return
        answer.add_done_callback(lambda future: _settle(future, group))


def _settle(answer: asyncio.Future[list[Row]], group: list[_Save]) -> None:
    exc = answer.exception()
    for save in group:
        if save.done.done():  # its caller was cancelled
            continue
        if exc is None:
            save.done.set_result(None)
        else:
            save.done.set_exception(_own_copy(exc))


def _own_copy(exc: BaseException) -> BaseException:
    """Each waiting save raises an exception of its own (a shared one would collect every
    caller's traceback)."""
    if isinstance(exc, StoreUnavailable):
        copy = StoreUnavailable(*exc.args)
        copy.__cause__ = exc.__cause__
        return copy
    return exc
