"""Message ids: 64-bit, time-ordered, unique across nodes, strictly increasing per generator.

Layout (Snowflake): 41 bits of milliseconds since EPOCH_MS, 10 bits of node id, 12 bits of
sequence. One generator per node assigns every id of that node, so ids from one node are
strictly increasing even if the wall clock steps back (the generator never goes back).
"""

from __future__ import annotations

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
NODE_BITS = 10
SEQ_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQ = (1 << SEQ_BITS) - 1
TIME_SHIFT = NODE_BITS + SEQ_BITS
MAX_ID = (1 << 63) - 1


def compose(ms: int, node: int, seq: int) -> int:
    """The id for unix-milliseconds `ms`, `node` and `seq`."""
    return ((ms - EPOCH_MS) << TIME_SHIFT) | (node << SEQ_BITS) | seq


def ms_of(message_id: int) -> int:
    """Unix milliseconds at which `message_id` was assigned."""
    return (message_id >> TIME_SHIFT) + EPOCH_MS


def node_of(message_id: int) -> int:
    return (message_id >> SEQ_BITS) & MAX_NODE


def lowest_id_at(ms: int) -> int:
    """The smallest id any node could assign at unix-milliseconds `ms` (for range queries)."""
    return compose(max(ms, EPOCH_MS), 0, 0)


class IdGenerator:
    """Assigns ids for one node. Not thread-safe: one per event loop."""

    def __init__(self, node: int) -> None:
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node id must be 0..{MAX_NODE}, got {node}")
        self.node = node
        self._last_ms = 0
        self._seq = 0

    def next(self, now_ms: int) -> int:
        """The next id at wall-clock `now_ms`; strictly greater than every earlier one."""
        if now_ms > self._last_ms:
            self._last_ms = now_ms
            self._seq = 0
        else:
            self._seq += 1
            if self._seq > MAX_SEQ:  # 4096 ids in one ms, or the clock stepped back
                self._last_ms += 1
                self._seq = 0
        return compose(self._last_ms, self.node, self._seq)
