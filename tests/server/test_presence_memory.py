"""MemoryPresence: the embedded default keeps the same TTL contract as RedisPresence."""

from __future__ import annotations

from server.presence import MemoryPresence, coarse


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_first_connect_and_last_disconnect() -> None:
    clock = Clock()
    presence = MemoryPresence(ttl_s=10, clock=clock)
    assert await presence.connect("u", "s1") is True
    assert await presence.connect("u", "s2") is False
    assert await presence.disconnect("u", "s1") is None
    assert await presence.disconnect("u", "s2") == coarse(int(clock.now * 1000))
    assert await presence.disconnect("u", "s2") is None


async def test_an_unrefreshed_session_expires_and_is_reaped_once() -> None:
    clock = Clock()
    presence = MemoryPresence(ttl_s=10, clock=clock)
    await presence.connect("u", "s1")
    clock.now += 11
    status = (await presence.status(["u"]))["u"]
    assert status.online is False and status.seen is not None
    assert await presence.reap() == [("u", status.seen)]  # status did not consume it
    assert await presence.reap() == []


async def test_refresh_keeps_sessions_but_never_resurrects() -> None:
    clock = Clock()
    presence = MemoryPresence(ttl_s=10, clock=clock)
    await presence.connect("u", "s1")
    for _ in range(5):
        clock.now += 6
        await presence.refresh([("u", "s1")])
    assert (await presence.status(["u"]))["u"].online is True
    await presence.disconnect("u", "s1")
    await presence.refresh([("u", "s1")])
    assert (await presence.status(["u"]))["u"].online is False
