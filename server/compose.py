"""Which implementation stands behind each interface, chosen once from the config, and the
services wired around them: the one place a node is put together (docs/architecture.md).

`compose_backends` runs when the node is made, so a bad setting (an unreadable key file)
stops it there; it picks the store, the broker, presence, limits, claims, guards and the
push queue and providers: all in process for the embedded default, Redis for a cluster.
`compose_services` runs in `Node.start`, once the node id is leased, and builds the
services, the gateway and the HTTP API with everything they need given at construction.
Nothing else in the node knows which implementation it got.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from protocol.ids import IdGenerator
from push.base import Pusher
from push.dispatcher import PushDispatcher, PushPolicy
from push.gates import MemoryPushGates, PushGates
from push.queue import MemoryPushQueue, PushQueue
from push.recorder import RecorderPusher
from runtime.redis_batch import TurnBatcher
from runtime.redis_calls import RedisClient
from server.backends.broker import Broker, MemoryBroker
from server.backends.cluster_state import (
    FixedNodeId,
    Limiter,
    MemoryLimiter,
    NodeIds,
    SendClaims,
    SendGate,
    SequentialSendGate,
    StoreClaims,
)
from server.backends.guards import (
    AuthThrottle,
    ConnectionCap,
    FlapMarks,
    MemoryAuthThrottle,
    MemoryConnectionCap,
    MemoryFlapMarks,
)
from server.backends.openers import MemoryOpenerLedger, OpenerLedger, OpenerRules
from server.backends.presence import MemoryPresence, Presence
from server.backends.quotas import MemoryQuotas, Quotas
from server.backends.traces import MemoryTraces, UserTraces
from server.config import Config
from server.edge.auth import Authenticator
from server.edge.connection_guard import ConnectionGuard
from server.edge.gateway import Gateway
from server.edge.http_api import EmbeddedUvicorn, create_app, http_server
from server.edge.http_swipes import swipe_router
from server.edge.hub import Hub
from server.edge.report_api import report_router
from server.metrics import Metrics, timed_store
from server.push_providers import apns_pusher, fcm_pusher
from server.services.accounts import AccountService, NotBefore
from server.services.caches import Caches
from server.services.chat import ChatService
from server.services.chat_controls import ChatControls
from server.services.deck import DeckService
from server.services.erasure import ErasureService
from server.services.export import ExportService
from server.services.matching import MatchService
from server.services.openers import OpenerGate
from server.services.presence import PresenceService
from server.services.quotas import QuotaPolicy, QuotaService
from server.services.reports import ReportHook, ReportService, load_hook
from server.services.swipes import SwipeService
from storage import Store
from storage.sqlite import SqliteStore

log = logging.getLogger("rendezvous.node")


@dataclass(frozen=True, slots=True)
class Backends:
    """One implementation of each interface the services talk to."""

    store: Store  # timed (server/metrics.py)
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
    push_queue: PushQueue
    push_gates: PushGates
    pushers: Mapping[str, Pusher]
    traces: UserTraces  # what erasure removes of a user from the above
    openers: OpenerLedger | None = None  # only when an opener rule is on
    quotas: Quotas = field(default_factory=MemoryQuotas)  # daily likes (cluster-wide: Redis)
    report_hook: ReportHook | None = None  # `on_report` of a moderation service
    redis: RedisClient | None = None  # the shared client, closed last
    batcher: TurnBatcher | None = None  # the one pipeline per loop turn on that client

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self.redis is not None:
            await self.redis.aclose()


def compose_backends(config: Config, metrics: Metrics, *, store: Store | None = None,
                     pushers: Mapping[str, Pusher] | None = None) -> Backends:
    """Every implementation, from the config (`store` and `pushers` override, for tests)."""
    chosen_store = timed_store(store or build_store(config), metrics)
    if pushers is None:
        pushers = build_pushers(config)  # reads key files: fails here, naming the key
    report_hook = load_hook(config.report_hook)  # imports it: fails here, naming the setting
    send_local = MemoryLimiter(config.sends_per_s, config.send_burst)
    swipe_local = MemoryLimiter(config.swipes_per_s, config.swipe_burst)
    if not config.clustered:
        local_claims = StoreClaims()
        presence = MemoryPresence(ttl_s=config.presence_ttl_s, ops=metrics.presence_ops)
        cap = MemoryConnectionCap(config.max_connections_per_user, config.node)
        marks = MemoryFlapMarks()
        queue = MemoryPushQueue(max_jobs=config.push_queue_max)
        gates = MemoryPushGates()
        return Backends(
            store=chosen_store, broker=MemoryBroker(), presence=presence,
            send_limiter=send_local, swipe_limiter=swipe_local, claims=local_claims,
            send_gate=SequentialSendGate(send_local, local_claims),
            node_ids=FixedNodeId(config.node_id or 0), connection_cap=cap,
            auth_throttle=MemoryAuthThrottle(config.auth_failures_per_ip,
                                             config.auth_failure_window_s),
            flap_marks=marks, push_queue=queue, push_gates=gates, pushers=pushers,
            quotas=MemoryQuotas(),
            openers=MemoryOpenerLedger(opener_rules(config)) if config.opener_rules_on
            else None, report_hook=report_hook,
            traces=MemoryTraces(presence=presence, limiters=(send_local, swipe_local),
                                cap=cap, marks=marks, queue=queue, gates=gates))
    from push.redis_queue import RedisPushGates, RedisPushQueue
    from server.backends.redis_broker import RedisBroker
    from server.backends.redis_guards import RedisAuthThrottle, RedisConnectionCap, RedisFlapMarks
    from server.backends.redis_openers import RedisOpenerLedger
    from server.backends.redis_presence import RedisPresence
    from server.backends.redis_quotas import RedisQuotas
    from server.backends.redis_state import (
        RedisLimiter,
        RedisNodeIds,
        RedisSendClaims,
        RedisSendGate,
        connect_redis,
    )
    from server.backends.redis_traces import RedisTraces

    client = connect_redis(config)
    # One batcher for the node: a turn's takes, claims, confirms, publishes, presence
    # writes and push-queue puts share one pipeline (docs/cluster.md).
    batcher = TurnBatcher(client)
    prefix = config.redis_prefix
    node_ids: NodeIds = (FixedNodeId(config.node_id) if config.node_id is not None else
                         RedisNodeIds(client, node=config.node, prefix=prefix,
                                      metrics=metrics))
    send_limiter = RedisLimiter(client, name="send", prefix=prefix, rate=config.sends_per_s,
                                burst=config.send_burst, fallback=send_local, metrics=metrics,
                                batcher=batcher)
    claims = RedisSendClaims(client, prefix=prefix, metrics=metrics, batcher=batcher)
    # A consumer per process start: a restarted node must not share a name with its past.
    consumer = f"{config.node}-{uuid.uuid4().hex[:8]}"
    r_presence = RedisPresence(client, node=config.node, prefix=prefix,
                             ttl_s=config.presence_ttl_s, metrics=metrics, batcher=batcher)
    swipe_limiter = RedisLimiter(client, name="swipe", prefix=prefix, rate=config.swipes_per_s,
                                 burst=config.swipe_burst, fallback=swipe_local,
                                 metrics=metrics, batcher=batcher)
    r_cap = RedisConnectionCap(batcher, cap=config.max_connections_per_user, node=config.node,
                             prefix=prefix, metrics=metrics)
    r_marks = RedisFlapMarks(batcher, prefix=prefix, metrics=metrics)
    r_queue = RedisPushQueue(client, consumer=consumer, prefix=prefix,
                           max_jobs=config.push_queue_max, claim_idle_s=config.push_claim_idle_s,
                           batch=max(1, config.push_workers),
                           on_abandon=metrics.pushes.labels("any", "abandoned").inc,
                           batcher=batcher)
    r_gates = RedisPushGates(client, prefix=prefix)
    return Backends(
        store=chosen_store,
        broker=RedisBroker(client, node=config.node, prefix=prefix,
                           sharded=bool(config.redis_cluster_nodes), metrics=metrics,
                           batcher=batcher),
        presence=r_presence,
        send_limiter=send_limiter,
        swipe_limiter=swipe_limiter,
        claims=claims,
        send_gate=RedisSendGate(send_limiter, claims, batcher),
        node_ids=node_ids,
        connection_cap=r_cap,
        auth_throttle=RedisAuthThrottle(batcher, limit=config.auth_failures_per_ip,
                                        window_s=config.auth_failure_window_s, prefix=prefix,
                                        metrics=metrics),
        flap_marks=r_marks,
        push_queue=r_queue,
        push_gates=r_gates,
        pushers=pushers,
        quotas=RedisQuotas(batcher, prefix=prefix, fallback=MemoryQuotas(), metrics=metrics),
        openers=RedisOpenerLedger(batcher, opener_rules(config), prefix=prefix)
        if config.opener_rules_on else None,
        traces=RedisTraces(client, presence=r_presence,
                           limiters=(send_limiter, swipe_limiter), claims=claims, cap=r_cap,
                           marks=r_marks, queue=r_queue, gates=r_gates),
        report_hook=report_hook,
        redis=client,
        batcher=batcher,
    )


def opener_rules(config: Config) -> OpenerRules:
    return OpenerRules(per_day=config.openers_per_day,
                       reject_duplicates=config.reject_duplicate_openers)


def build_store(config: Config) -> Store:
    """Cassandra when contact points are configured, else the SQLite file of the data dir."""
    if config.cassandra_contact_points:
        from storage.cassandra import CassandraStore

        dc = config.cassandra_datacenter
        replication: dict[str, object] = (
            {"class": "NetworkTopologyStrategy", dc: config.cassandra_replication_factor}
            if dc else {"class": "SimpleStrategy",
                        "replication_factor": config.cassandra_replication_factor})
        return CassandraStore(list(config.cassandra_contact_points),
                              keyspace=config.cassandra_keyspace, replication=replication,
                              consistency=config.cassandra_consistency, local_dc=dc)
    return SqliteStore(config.data_dir / "rendezvous.db", synchronous=config.sqlite_synchronous,
                       lock_wait_s=config.startup_wait_s)


def build_pushers(config: Config) -> dict[str, Pusher]:
    """One pusher per device platform ("apns", "fcm"): the provider where it is configured,
    else the recorder (the embedded default: `data_dir/pushes.jsonl`)."""
    recorder: RecorderPusher | None = None

    def record() -> RecorderPusher:
        nonlocal recorder
        if recorder is None:
            recorder = RecorderPusher(config.data_dir / "pushes.jsonl")
        return recorder

    pushers: dict[str, Pusher] = {}
    pushers["apns"] = apns_pusher(config) if config.apns_configured else record()
    fcm_key = config.fcm_service_account_file
    pushers["fcm"] = fcm_pusher(config, fcm_key) if fcm_key is not None else record()
    if recorder is not None and len({id(p) for p in pushers.values()}) > 1:
        log.warning("push: only some providers are configured; the others are recorded to "
                    "%s", recorder.path)
    return pushers


def push_policy(config: Config) -> PushPolicy:
    return PushPolicy(workers=config.push_workers, max_in_flight=config.push_max_in_flight,
                      max_waiting=config.push_max_waiting, coalesce_s=config.push_coalesce_s,
                      delivered_window_s=config.push_delivered_window_s,
                      max_attempts=config.push_max_attempts,
                      retry_base_s=config.push_retry_base_s,
                      send_timeout_s=config.push_send_timeout_s,
                      claim_s=config.push_claim_idle_s)


def quota_policy(config: Config) -> QuotaPolicy:
    return QuotaPolicy(likes_per_day=config.likes_per_day,
                       superlikes_per_day=config.superlikes_per_day,
                       reset_hour_utc=config.quota_reset_hour_utc,
                       exempt_values=frozenset(config.quota_exempt_values
                                               if config.quota_exempt_claim else ()))


@dataclass(frozen=True, slots=True)
class Services:
    """What a started node runs on its backends: each built once, complete."""

    caches: Caches
    pushes: PushDispatcher
    presence: PresenceService
    chat: ChatService
    controls: ChatControls
    matches: MatchService
    accounts: AccountService
    erasure: ErasureService
    reports: ReportService
    guard: ConnectionGuard
    gateway: Gateway
    http: EmbeddedUvicorn


def compose_services(config: Config, backends: Backends, *, metrics: Metrics, hub: Hub,
                     node_id: int, ready: Callable[[], Awaitable[dict[str, bool]]]) -> Services:
    """The services of a node whose id is `node_id` (leased or configured)."""
    store, broker = backends.store, backends.broker
    caches = Caches(store)
    pushes = PushDispatcher(store=store, presence=backends.presence, pushers=backends.pushers,
                            metrics=metrics, queue=backends.push_queue,
                            gates=backends.push_gates, policy=push_policy(config))
    auth = Authenticator(config.jwt_keys, issuer=config.jwt_issuer,
                         audience=config.jwt_audience, leeway_s=config.jwt_leeway_s,
                         max_user_chars=config.limits.max_user_id_chars,
                         tier_claim=config.quota_exempt_claim)
    presence = PresenceService(registry=backends.presence, store=store, caches=caches,
                               broker=broker, marks=backends.flap_marks,
                               grace_s=config.presence_grace_s, ttl_s=config.presence_ttl_s)
    chat = ChatService(store=store, broker=broker, caches=caches, ids=IdGenerator(node_id),
                       limits=config.limits, metrics=metrics, pushes=pushes,
                       claims=backends.claims, send_gate=backends.send_gate,
                       held_here=hub.has_user,
                       openers=OpenerGate(store, backends.openers, opener_rules(config))
                       if backends.openers is not None else None)
    controls = ChatControls(store=store, broker=broker, open_match=chat.open_match,
                            unsend_window_s=config.unsend_window_s)
    quotas = QuotaService(backends.quotas, quota_policy(config))
    matches = MatchService(store=store, broker=broker, caches=caches, presence=presence,
                           pushes=pushes, metrics=metrics, swipe_limiter=backends.swipe_limiter,
                           forget_typing=chat.forget_typing, quotas=quotas)
    swipes = SwipeService(store=store, matches=matches, quotas=quotas,
                          undo_window_s=config.undo_window_s)
    not_before = NotBefore(store.tokens_not_before, ttl_s=config.revocation_cache_s,
                           max_entries=config.revocation_cache_entries)
    accounts = AccountService(store=store, broker=broker, not_before=not_before,
                              sessions_of=hub.sessions_of)
    for counters in (backends.quotas, backends.openers):
        if counters is not None:
            backends.traces.also_forget(counters)
    erasure = ErasureService(store=store, matches=matches, traces=backends.traces,
                             revoker=accounts, broker=broker, presence=backends.presence,
                             damper=presence.damper, held_here=hub.has_user,
                             resume_s=config.erasure_resume_s)
    pushes.drops = erasure.drops  # jobs to or about an erased user are dropped
    chat.readable_closed = erasure.closed_by_erasure  # the peer keeps reading the history
    reports = ReportService(store=store, matches=matches, metrics=metrics,
                            evidence_msgs=config.report_evidence_msgs,
                            retention_days=config.report_retention_days,
                            purge_interval_s=config.report_purge_interval_s,
                            admin_subjects=config.admin_subjects, hook=backends.report_hook,
                            max_user_chars=config.limits.max_user_id_chars)
    guard = ConnectionGuard(node=config.node, cap=backends.connection_cap,
                            max_per_user=config.max_connections_per_user,
                            throttle=backends.auth_throttle, broker=broker,
                            metrics=metrics, ip_header=config.client_ip_header)
    gateway = Gateway(config=config, auth=auth, hub=hub, broker=broker, presence=presence,
                      chat=chat, controls=controls, metrics=metrics, guard=guard,
                      not_before=not_before)
    exports = ExportService(store, metrics)
    app = create_app(auth=auth, matches=matches, chat=chat, controls=controls, exports=exports,
                     metrics=metrics, max_body_bytes=config.max_http_body_bytes, ready=ready,
                     guard=guard, cors_origins=config.cors_origins, accounts=accounts,
                     erasure=erasure,
                     demo=(config, lambda: gateway.port) if config.demo else None,
                     routers=[swipe_router(swipes=swipes, deck=DeckService(store),
                                           quotas=quotas),
                              report_router(reports)])
    return Services(caches=caches, pushes=pushes, presence=presence, chat=chat,
                    controls=controls, matches=matches, accounts=accounts, erasure=erasure,
                    reports=reports, guard=guard, gateway=gateway,
                    http=http_server(app, config))
