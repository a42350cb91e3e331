"""With Redis configured, a node killed while pushes are queued does not lose them. Real node
processes, a real redis-server, the real push libraries against the look-alike APNS and FCM
servers; each push must arrive exactly once per device."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from push.queue import unpack_job
from tests.cluster.conftest import StartNode, Users
from tests.helpers import stays, wait_until
from tests.node_process import NodeProcess
from tests.push_servers.apns import ApnsLookalike
from tests.push_servers.fcm import FcmLookalike
from tests.redis_servers import RedisServer

IOS = "c0d1e2f3" * 8
ANDROID = "fcm-durable:APA91bH-android-token-0123456789"
RECEIVERS = ("bob", "cat", "dan")


class BlackHole:
    """A TCP server that accepts and never answers: a provider that hangs."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def providers() -> AsyncIterator[tuple[ApnsLookalike, FcmLookalike, BlackHole]]:
    apns, fcm, hole = ApnsLookalike(), FcmLookalike(), BlackHole()
    for server in (apns, fcm, hole):
        await server.start()
    yield apns, fcm, hole
    for server in (hole, fcm, apns):
        await server.stop()


def push_env(tmp_path: Path, apns: ApnsLookalike, fcm: FcmLookalike,
             hole: BlackHole | None = None) -> dict[str, str]:
    """Push settings for a node process; with `hole`, both providers hang."""
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(apns.key_pem)
    account_file = tmp_path / "firebase-sa.json"
    account_file.write_text(json.dumps(fcm.service_account()))
    env = {"RENDEZVOUS_APNS_TOPIC": apns.topic, "RENDEZVOUS_APNS_KEY_FILE": str(key_file),
           "RENDEZVOUS_APNS_KEY_ID": apns.key_id, "RENDEZVOUS_APNS_TEAM_ID": apns.team_id,
           "RENDEZVOUS_APNS_SERVER": apns.server, "RENDEZVOUS_APNS_CA_FILE": apns.ca_file,
           "RENDEZVOUS_FCM_SERVICE_ACCOUNT_FILE": str(account_file),
           "RENDEZVOUS_FCM_URL": fcm.fcm_url, "RENDEZVOUS_PUSH_CLAIM_IDLE_S": "1.5",
           "RENDEZVOUS_PUSH_SEND_TIMEOUT_S": "30", "RENDEZVOUS_PUSH_WORKERS": "2",
           "RENDEZVOUS_PUSH_COALESCE_S": "0", **fcm.client_env()}
    if hole is not None:
        env["RENDEZVOUS_APNS_SERVER"] = f"127.0.0.1:{hole.port}"
        env["RENDEZVOUS_FCM_URL"] = f"http://127.0.0.1:{hole.port}/v1/projects/{{0}}/" \
                                    "messages:send"
    return env


async def queued(redis_url: str) -> int:
    """Push jobs in Redis: in the stream (read or not) and waiting as delayed retries."""
    client = Redis.from_url(redis_url)
    try:
        return int(await client.xlen("rdv:{push}:jobs")) + int(
            await client.zcard("rdv:{push}:delayed"))
    finally:
        await client.aclose()


async def receiver_jobs(redis_url: str) -> int:
    """The receivers' jobs in the stream, read or not."""
    client = Redis.from_url(redis_url)
    try:
        entries = await client.xrange("rdv:{push}:jobs")
    finally:
        await client.aclose()
    return sum(unpack_job(fields[b"j"]).user in RECEIVERS for _, fields in entries)


async def make_pushes(node: NodeProcess, users: Users) -> None:
    """Each receiver (an iOS and an Android device, no socket) gets a match and a message."""
    for user in RECEIVERS:
        await users.http(node, user).put_device(IOS + user, "apns")
        await users.http(node, user).put_device(ANDROID + user, "fcm")
    matches = [await users.pair(node, "ann", node, user) for user in RECEIVERS]
    ann = await users.connect(node, "ann")
    for match_id in matches:
        await ann.send(match_id, "are you there?")


def delivered_once(apns: ApnsLookalike, fcm: FcmLookalike) -> bool:
    """Every device got its two pushes (match, message): no more, no fewer."""
    ios = Counter(r.token for r in apns.requests)
    android = Counter(r.token for r in fcm.requests)
    return (ios == Counter({IOS + u: 2 for u in RECEIVERS})
            and android == Counter({ANDROID + u: 2 for u in RECEIVERS}))


async def test_pushes_in_flight_on_a_killed_node_arrive_exactly_once(
        redis_server: RedisServer, start_node: StartNode, users: Users, tmp_path: Path,
        providers: tuple[ApnsLookalike, FcmLookalike, BlackHole]) -> None:
    apns, fcm, hole = providers
    stuck = await start_node("--redis-url", redis_server.url, "--node-name", "stuck",
                             **push_env(tmp_path, apns, fcm, hole))
    await make_pushes(stuck, users)
    await wait_until(lambda: hole.connections >= 2, timeout=10)  # sends hang in flight
    # Every receiver's match and message job is in the stream before the kill. A count of
    # all entries is not enough: ann's own match jobs (skipped, she is online) count too,
    # and the last message's job, queued just after its ack, could still be missing.
    async def receivers_queued() -> bool:
        return await receiver_jobs(redis_server.url) == 6

    await wait_until(receivers_queued, timeout=10)
    await stuck.stop(signal.SIGKILL)
    assert apns.requests == [] and fcm.requests == []

    # two living nodes compete to take the dead node's pushes over
    heirs = [await start_node("--redis-url", redis_server.url, "--node-name", name,
                              **push_env(tmp_path, apns, fcm)) for name in ("heir-1", "heir-2")]
    await wait_until(lambda: delivered_once(apns, fcm), timeout=30)
    assert await stays(lambda: delivered_once(apns, fcm), within=2.0)
    apns_ids = [r.headers["apns-id"] for r in apns.requests]
    assert len(set(apns_ids)) == len(apns_ids) == 6
    async def drained() -> bool:
        return await queued(redis_server.url) == 0

    await wait_until(drained, timeout=10)
    logs = ""
    for heir in heirs:  # the in-flight ones came from the dead node's pending list
        await heir.stop()
        assert heir.proc is not None and heir.proc.stderr is not None
        logs += (await heir.proc.stderr.read()).decode()
    assert "took over pushes of a stopped node" in logs


async def test_retries_waiting_on_a_killed_node_are_sent_by_another(
        redis_server: RedisServer, start_node: StartNode, users: Users, tmp_path: Path,
        providers: tuple[ApnsLookalike, FcmLookalike, BlackHole]) -> None:
    apns, fcm, _ = providers
    for user in RECEIVERS:  # every first try fails with a long Retry-After
        apns.script(IOS + user, 503, "ServiceUnavailable", retry_after=5, times=2)
        # (a 429: firebase-admin retries a 503 itself, at once)
        fcm.script(ANDROID + user, 429, "QUOTA_EXCEEDED", retry_after=5, times=2)
    first = await start_node("--redis-url", redis_server.url, "--node-name", "first",
                             **push_env(tmp_path, apns, fcm))
    await make_pushes(first, users)
    await wait_until(lambda: len(apns.requests) == 6 and len(fcm.requests) == 6, timeout=15)
    await stuck_in_redis(redis_server.url, 6)
    await first.stop(signal.SIGKILL)

    await start_node("--redis-url", redis_server.url, "--node-name", "second",
                     **push_env(tmp_path, apns, fcm))
    await wait_until(lambda: len(apns.requests) == 12 and len(fcm.requests) == 12, timeout=20)
    assert await stays(lambda: len(apns.requests) == 12 and len(fcm.requests) == 12,
                       within=1.5)
    per_push = Counter(r.headers["apns-id"] for r in apns.requests)
    assert set(per_push.values()) == {2}  # each push: the failed try, then one retry


async def stuck_in_redis(redis_url: str, jobs: int) -> None:
    async def waiting() -> bool:
        return await queued(redis_url) >= jobs

    await wait_until(waiting, timeout=10)
