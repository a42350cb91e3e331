"""Which implementation stands behind each interface, chosen once from the config.

The embedded default is all in-process; naming a Redis (or a Redis Cluster) swaps in the
Redis broker, presence, rate limits, send claims and node-id lease. Nothing else in the node
knows which it got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.broker import Broker, MemoryBroker
from server.cluster_state import (
    FixedNodeId,
    Limiter,
    MemoryLimiter,
    NodeIds,
    SendClaims,
    SendGate,
    SequentialSendGate,
    StoreClaims,
)
from server.config import Config
from server.guards import (
    AuthThrottle,
    ConnectionCap,
    FlapMarks,
    MemoryAuthThrottle,
    MemoryConnectionCap,
    MemoryFlapMarks,
)
from server.metrics import Metrics
from server.presence import MemoryPresence, Presence


@dataclass
class Backends:
    broker: Broker
    presence: Presence
    send_limiter: Limiter
    swipe_limiter: Limiter
    claims: SendClaims
    send_gate: SendGate  # send_limiter and claims together
    node_ids: NodeIds
    connection_cap: ConnectionCap
    auth_throttle: AuthThrottle
    flap_marks: FlapMarks
    redis: Any = None  # the shared client, closed last
    batcher: Any = None  # the shared TurnBatcher (runtime/redis_batch.py) on that client

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self.redis is not None:
            await self.redis.aclose()


def build_backends(config: Config, metrics: Metrics) -> Backends:
    send_local = MemoryLimiter(config.sends_per_s, config.send_burst)
    swipe_local = MemoryLimiter(config.swipes_per_s, config.swipe_burst)
    if not config.clustered:
        local_claims = StoreClaims()
        return Backends(broker=MemoryBroker(),
                        presence=MemoryPresence(ttl_s=config.presence_ttl_s,
                                                ops=metrics.presence_ops),
                        send_limiter=send_local, swipe_limiter=swipe_local,
                        claims=local_claims,
                        send_gate=SequentialSendGate(send_local, local_claims),
                        node_ids=FixedNodeId(config.node_id or 0),
                        connection_cap=MemoryConnectionCap(config.max_connections_per_user,
                                                           config.node),
                        auth_throttle=MemoryAuthThrottle(config.auth_failures_per_ip,
                                                         config.auth_failure_window_s),
                        flap_marks=MemoryFlapMarks())
    from runtime.redis_batch import TurnBatcher
    from server.redis_broker import RedisBroker
    from server.redis_guards import RedisAuthThrottle, RedisConnectionCap, RedisFlapMarks
    from server.redis_presence import RedisPresence
    from server.redis_state import (
        RedisLimiter,
        RedisNodeIds,
        RedisSendClaims,
        RedisSendGate,
        connect_redis,
    )

    client = connect_redis(config)
    # One batcher for the node: a turn's takes, claims, confirms, publishes and presence
    # writes share one pipeline.
    batcher = TurnBatcher(client)
    prefix = config.redis_prefix
    sharded = bool(config.redis_cluster_nodes)
    node_ids: NodeIds = (FixedNodeId(config.node_id) if config.node_id is not None else
                         RedisNodeIds(client, node=config.node, prefix=prefix,
                                      metrics=metrics))
    send_limiter = RedisLimiter(client, name="send", prefix=prefix, rate=config.sends_per_s,
                                burst=config.send_burst, fallback=send_local, metrics=metrics,
                                batcher=batcher)
    claims = RedisSendClaims(client, prefix=prefix, metrics=metrics, batcher=batcher)
    return Backends(
        broker=RedisBroker(client, node=config.node, prefix=prefix, sharded=sharded,
                           metrics=metrics, batcher=batcher),
        presence=RedisPresence(client, node=config.node, prefix=prefix,
                               ttl_s=config.presence_ttl_s, metrics=metrics, batcher=batcher),
        send_limiter=send_limiter,
        swipe_limiter=RedisLimiter(client, name="swipe", prefix=prefix,
                                   rate=config.swipes_per_s, burst=config.swipe_burst,
                                   fallback=swipe_local, metrics=metrics, batcher=batcher),
        claims=claims,
        send_gate=RedisSendGate(send_limiter, claims, batcher),
        node_ids=node_ids,
        connection_cap=RedisConnectionCap(batcher, cap=config.max_connections_per_user,
                                          node=config.node, prefix=prefix, metrics=metrics),
        auth_throttle=RedisAuthThrottle(batcher, limit=config.auth_failures_per_ip,
                                        window_s=config.auth_failure_window_s, prefix=prefix,
                                        metrics=metrics),
        flap_marks=RedisFlapMarks(batcher, prefix=prefix, metrics=metrics),
        redis=client,
        batcher=batcher,
    )
