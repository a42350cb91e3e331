"""Fan-out of server events to users, wherever they are connected.

The node publishes an event to users; the broker hands it to every node that holds a
connection of one of them, whose hub queues it. `MemoryBroker` is the embedded default (one
process); a Redis broker implements the same protocol for a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from protocol.codec import Frame

Deliver = Callable[[str, Frame, "str | None"], int]
Control = Callable[[Frame], None]
# a `msg` event that reached this node for a user none of whose sessions here took it
Undelivered = Callable[[str, Frame], None]
# per user published to, in order: how many nodes took the event; None when unknown
Reach = list[int] | None


class Broker(Protocol):
    async def start(self, deliver: Deliver, control: Control,
                    undelivered: Undelivered | None = None) -> None:
        """Begin calling `deliver(user, frame, skip_session)` for events to subscribed users,
        and `control(message)` for every control message published by any node.

        `undelivered(user, frame)`: a `msg` to `user` (not from them) that this node took
        from another node's publish, counted in that publish's reach, but that no session
        here took (the last one closed meanwhile): the publisher pushed nothing, so this
        node must (see `publish`)."""

    async def close(self) -> None: ...

    async def publish_control(self, message: Frame) -> None:
        """Send a small message to every node, this one included (cache invalidations).
        Best effort, like events: caches also expire by themselves."""

    async def subscribe(self, user: str) -> None:
        """Receive events for `user` on this node (called for a user's first local session).
        Events published after this returns are delivered."""

    async def unsubscribe(self, user: str) -> None:
        """Stop receiving events for `user` (their last local session ended)."""

    async def publish(self, users: Iterable[str], frame: Frame,
                      skip_session: str | None = None) -> Reach:
        """Deliver `frame` to every connection of each user, except session `skip_session`.

        At most once and fire-and-forget: a user with no connection anywhere gets nothing
        (durable state and `sync` cover them). Per publisher and user, order is kept.
        Returns the reach: for each user, how many nodes took the event (0: no session
        anywhere; such a recipient needs a push), or None if that is not known."""

    def healthy(self) -> bool:
        """Whether events published now would reach their subscribers (readiness)."""


class MemoryBroker:
    """The in-process broker: publishing is a direct call into the local hub."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._control: Control | None = None
        self._subscribed: set[str] = set()

    async def start(self, deliver: Deliver, control: Control,
                    undelivered: Undelivered | None = None) -> None:
        self._deliver = deliver  # `undelivered` never happens here: publish sees the hub
        self._control = control

    async def close(self) -> None:
        self._deliver = None
        self._control = None

    async def publish_control(self, message: Frame) -> None:
        if self._control is not None:
            self._control(message)

    async def subscribe(self, user: str) -> None:
        self._subscribed.add(user)

    async def unsubscribe(self, user: str) -> None:
        self._subscribed.discard(user)

    async def publish(self, users: Iterable[str], frame: Frame,
                      skip_session: str | None = None) -> Reach:
        deliver = self._deliver
        if deliver is None:
            return None
        return [1 if user in self._subscribed and deliver(user, frame, skip_session) else 0
                for user in users]

    def healthy(self) -> bool:
        return self._deliver is not None
