"""Loss, duplicate and reordering bookkeeping of the message streams of one load worker.

Both virtual users of a pair live in one worker process, so a stream's sender and receiver
share this tracker and no clock or state crosses processes.
"""

from __future__ import annotations


class DeliveryTracker:
    """Loss, duplicates and reordering of one process's message streams.

    A stream is one sender->receiver direction of a pair; sequence numbers are expected to be
    handed out in increasing order by the sender (gaps are allowed). Memory is one set of
    in-flight sequence numbers per stream, not the history of everything sent.
    """

    __slots__ = ("_streams",)

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}

    def sent(self, stream: str, seq: int) -> None:
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _Stream(seq)
        state.sent(seq)

    def received(self, stream: str, seq: int) -> str:
        """"ok", "duplicate" (seen before), "reordered" (after a later one) or "unknown"."""
        state = self._streams.get(stream)
        if state is None:
            return "unknown"
        return state.received(seq)

    def lost(self) -> int:
        """Sent (acked or not) and never received; call at the end, after a grace period."""
        return sum(len(s.in_flight) for s in self._streams.values())

    def in_flight(self, stream: str) -> int:
        state = self._streams.get(stream)
        return len(state.in_flight) if state is not None else 0


class _Stream:
    __slots__ = ("first", "highest_received", "highest_sent", "in_flight", "skipped")

    def __init__(self, first: int) -> None:
        self.first = first
        self.highest_sent = first - 1
        self.highest_received: int | None = None
        self.in_flight: set[int] = set()
        self.skipped: set[int] = set()

    def sent(self, seq: int) -> None:
        """Expect `seq`; sending a sequence number again (a retry) expects nothing new."""
        if seq > self.highest_sent:
            self.skipped.update(range(self.highest_sent + 1, seq))
            self.highest_sent = seq
        elif seq < self.first:
            self.skipped.update(range(seq + 1, self.first))
            self.first = seq
        elif seq in self.skipped:
            self.skipped.discard(seq)
        else:
            return  # in flight already, or received already
        self.in_flight.add(seq)

    def received(self, seq: int) -> str:
        if seq in self.in_flight:
            self.in_flight.discard(seq)
            late = self.highest_received is not None and seq < self.highest_received
            if not late:
                self.highest_received = seq
            return "reordered" if late else "ok"
        if seq < self.first or seq > self.highest_sent or seq in self.skipped:
            return "unknown"
        return "duplicate"
