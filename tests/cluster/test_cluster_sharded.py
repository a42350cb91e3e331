"""Nodes joined through a real 3-master Redis Cluster: sharded pub/sub (SSUBSCRIBE)."""

from __future__ import annotations

import redis

from tests.cluster.conftest import StartNode, Users
from tests.redis_servers import RedisCluster


async def test_chat_across_nodes_over_sharded_pubsub(
        redis_cluster: RedisCluster, start_node: StartNode, users: Users) -> None:
    seeds = ",".join(redis_cluster.seeds)
    a = await start_node("--redis-cluster", seeds, "--node-name", "SA")
    b = await start_node("--redis-cluster", seeds, "--node-name", "SB")
    names = [f"s{i}" for i in range(6)]
    pairs = [(names[i], names[i + 1]) for i in range(0, 6, 2)]
    matches = [await users.pair(a, x, b, y) for x, y in pairs]
    for (x, y), m in zip(pairs, matches, strict=True):
        cx = await users.connect(a, x)
        cy = await users.connect(b, y)
        ack = await cx.send(m, f"{x} to {y}")
        assert (await cy.next_event("msg"))["id"] == ack["id"]
        await cy.typing(m, True)
        assert (await cx.next_event("typing"))["from"] == y
        assert (await cx.presence())["users"] == [{"u": y, "on": True}]
    # The user channels live on different shards, and each is subscribed only where needed.
    owners = set()
    for user in names:
        slot = redis.Redis(port=redis_cluster.servers[0].port).cluster(
            "keyslot", f"rdv:u:{user}")
        owners.add(next(i for i, s in enumerate(_slot_ranges(redis_cluster))
                        if any(lo <= slot <= hi for lo, hi in s)))
    assert len(owners) > 1, "the test users all hash to one shard; pick other names"


def _slot_ranges(cluster: RedisCluster) -> list[list[tuple[int, int]]]:
    """Per server, the slot ranges it owns."""
    client = redis.Redis(port=cluster.servers[0].port)
    ranges: dict[int, list[tuple[int, int]]] = {s.port: [] for s in cluster.servers}
    for lo, hi, (_, port, *_rest), *_replicas in client.execute_command("CLUSTER SLOTS"):
        ranges[int(port)].append((int(lo), int(hi)))
    return [ranges[s.port] for s in cluster.servers]
