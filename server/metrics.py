"""Prometheus metrics of one node, in a registry of its own.

A registry per node (not the global default) lets tests run several nodes in one process and
keeps `/metrics` to what this node exports.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from protocol.errors import CloseCode, ErrorCode
from push.base import Outcome
from server.loop_metrics import HistogramChild, LoopCounter, LoopHistogram
from storage import Store
from storage.base import REPORT_REASONS

T = TypeVar("T")
P = ParamSpec("P")


class Children(dict[str, Any]):
    """`metric.labels(value)` of a one-label metric, resolved once per value: the lookup
    (label validation, a lock, a dict of tuples) cost more than the increment on the hot
    path. Only for bounded label values (frame types, codes)."""

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, value: str) -> Any:
        child = self[value] = self.metric.labels(value)
        return child

# The label values each labelled counter is known to take, exported at 0 from the start so
# that a panel or a rate() has a series before the first event (tests/ops/test_metrics_queries.py
# checks the code counts no other value under these names).
CLOSE_CODES = (1000, 1002, 1007, 1011, *CloseCode)  # 100x/1011: closes the library starts
RATE_LIMITED_KINDS = ("frames", "refresh", "send", "swipe", "auth", "connections", "export",
                      "quota")
AUTH_FAILURE_REASONS = ("missing", "malformed", "algorithm", "signature", "expired",
                        "not_yet_valid", "invalid", "timeout", "no_auth", "bad_frame",
                        "revoked")
REDIS_FALLBACKS = ("publish", "presence", "connection_cap", "auth_throttle", "presence_flaps",
                   "rate_limit", "claims", "node_id", "node_id_conflict", "quotas")
PRESENCE_OPS = ("connect", "disconnect", "refresh", "status", "reap")
PUSH_OUTCOMES = (*Outcome, "gave_up")
EXPORT_OUTCOMES = ("done", "cut", "left")  # finished; a failure mid-way; the client went away
PUSH_SKIPPED = ("online", "delivered", "coalesced", "no_device", "duplicate", "no_provider",
                "muted", "kind_off", "unsent", "erased")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.connections = Gauge("rendezvous_connections", "Open authenticated WebSocket "
                                 "connections", registry=r)
        # per-message metrics count in plain numbers (server/loop_metrics.py)
        self.frames_in = LoopCounter("rendezvous_frames_in", "Frames received from clients",
                                     ["type"], registry=r)
        self.frames_out = LoopCounter("rendezvous_frames_out", "Frames queued to clients",
                                      ["type"], registry=r)
        self.errors = Counter("rendezvous_errors", "Error frames sent, by code", ["code"],
                              registry=r)
        self.send_to_ack = LoopHistogram("rendezvous_send_to_ack_seconds", "From a send "
                                         "frame read to its ack queued (includes the "
                                         "durable write)", buckets=LATENCY_BUCKETS,
                                         registry=r)
        self.store_ops = LoopHistogram("rendezvous_store_op_seconds", "Store call latency",
                                       ["op"], buckets=LATENCY_BUCKETS, registry=r)
        self.closes = Counter("rendezvous_closes", "Connections closed by the server, by "
                              "close code", ["code"], registry=r)
        self.close_timeouts = Counter("rendezvous_close_timeouts", "Server-initiated closes "
                                      "the client did not complete within close_timeout_s "
                                      "(a full pipe, usually a slow reader): the connection "
                                      "was dropped", registry=r)
        self.slow_consumers = Counter("rendezvous_slow_consumer_closes", "Connections closed "
                                      "because their send queue was full", registry=r)
        self.rate_limited = Counter("rendezvous_rate_limited", "Requests refused by a rate "
                                    "limit", ["kind"], registry=r)
        self.auth_failures = Counter("rendezvous_auth_failures", "Refused tokens by reason",
                                     ["reason"], registry=r)
        self.http_requests = Counter("rendezvous_http_requests", "HTTP API requests",
                                     ["route", "status"], registry=r)
        self.matches_created = Counter("rendezvous_matches_created", "Matches created",
                                       registry=r)
        self.pushes = Counter("rendezvous_pushes", "Push notifications by provider and "
                              "outcome", ["provider", "outcome"], registry=r)
        self.push_queue = Gauge("rendezvous_push_queue_depth", "Pushes waiting to be sent",
                                registry=r)
        self.push_shed = Counter("rendezvous_push_shed", "Pushes dropped because the queue "
                                 "(provider=queue) or a provider's wait line was full",
                                 ["provider"], registry=r)
        self.push_skipped = LoopCounter("rendezvous_push_skipped", "Push jobs that sent "
                                        "nothing, by reason (online, delivered, coalesced, "
                                        "no_device, duplicate, no_provider, erased)", ["reason"],
                                        registry=r)
        self.push_send_seconds = Histogram("rendezvous_push_send_seconds", "Provider send "
                                           "latency, slot wait excluded", ["provider"],
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.push_failures = Counter("rendezvous_push_failures", "Sends that did not succeed, "
                                     "by provider and the provider's reason (a bounded code: "
                                     "Unregistered, TooManyRequests, QUOTA_EXCEEDED, timeout...)",
                                     ["provider", "reason"], registry=r)
        self.push_config_errors = Counter("rendezvous_push_config_errors", "Provider answers "
                                          "that blame our credentials, topic or sender",
                                          ["provider", "reason"], registry=r)

        self.broker_publish = Histogram("rendezvous_broker_publish_seconds", "Broker publish "
                                        "latency", buckets=LATENCY_BUCKETS, registry=r)
        self.broker_healthy = Gauge("rendezvous_broker_subscription_healthy", "1 when this "
                                    "node's broker delivers: always on the in-process "
                                    "broker, while its canary comes back through Redis",
                                    registry=r)
        self.broker_resubscribes = Counter("rendezvous_broker_resubscribes", "Times the broker "
                                           "reconnected and subscribed again", registry=r)
        self.broker_dropped = Counter("rendezvous_broker_dropped", "Broker messages dropped "
                                      "as undecodable", registry=r)
        self.presence_ops = Counter("rendezvous_presence_ops", "Presence operations", ["op"],
                                    registry=r)
        self.redis_fallbacks = Counter("rendezvous_redis_fallbacks", "Operations that fell "
                                       "back to local behaviour because Redis failed",
                                       ["what"], registry=r)
        self.drain_sessions = Gauge("rendezvous_drain_sessions_left", "Sessions still open "
                                    "while draining", registry=r)
        self.exports = Counter("rendezvous_exports", "Data exports (GET /v1/me/export) that "
                               "started streaming, by outcome: done, cut (the store failed "
                               "mid-way: the document ends unclosed), left (the client went "
                               "away)", ["outcome"], registry=r)
        # -- operations (docs/operations.md, "Metrics") -------------------------------------
        self.build = Info("rendezvous_build", "Version and identity of this node", registry=r)
        self.draining = Gauge("rendezvous_draining", "1 while this node drains (stopping)",
                              registry=r)
        self.store_errors = Counter("rendezvous_store_errors", "Store calls that raised, by "
                                    "operation", ["op"], registry=r)
        self.delivery = LoopHistogram("rendezvous_message_delivery_seconds", "From a "
                                      "message's server timestamp (taken just before its "
                                      "durable write) to its frame queued to a recipient's "
                                      "session on this node: write, publish and broker hop "
                                      "(plus clock skew across nodes)",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.send_queue = Gauge("rendezvous_send_queue_frames", "Frames waiting in the "
                                "send queues of this node's sessions, all together",
                                registry=r)
        self.loop_lag = LoopHistogram("rendezvous_event_loop_lag_seconds", "How late the "
                                      "event loop wakes a 0.5 s sleep (sampled twice a "
                                      "second)", buckets=LATENCY_BUCKETS, registry=r)
        # process_resident_memory_bytes, process_open_fds, process_cpu_seconds_total, ...
        # (the default registry has them; this one is the node's own)
        ProcessCollector(registry=r)
        self.reports = Counter("rendezvous_reports", "Reports filed, by reason", ["reason"],
                               registry=r)
        self.reports_purged = Counter("rendezvous_reports_purged", "Reports deleted by the "
                                      "retention purge", registry=r)
        self.report_hook_failures = Counter("rendezvous_report_hook_failures", "Calls of the "
                                            "report hook that raised, timed out or were "
                                            "skipped (too many running)", registry=r)
        self.send_queue_max = Gauge("rendezvous_send_queue_max_frames", "Frames waiting in "
                                    "the fullest session send queue on this node", registry=r)

        # children of the per-frame counters, resolved once (see `Children`)
        self.frames_in_by = Children(self.frames_in)
        self.frames_out_by = Children(self.frames_out)
        self.errors_by = Children(self.errors)
        self.closes_by = Children(self.closes)
        self.rate_limited_by = Children(self.rate_limited)
        self.push_skipped_by = Children(self.push_skipped)
        self.exports_by = Children(self.exports)
        self._initialise_children()

    def _initialise_children(self) -> None:
        """Every known child at 0 (see `CLOSE_CODES` and the rest above): looking a child up
        creates it. Once, at start-up: nothing here runs per message."""
        for code in CLOSE_CODES:
            self.closes_by[str(int(code))]
        for error in ErrorCode:
            self.errors_by[str(error)]
        for kind in RATE_LIMITED_KINDS:
            self.rate_limited_by[kind]
        for reason in AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason)
        for what in REDIS_FALLBACKS:
            self.redis_fallbacks.labels(what)
        for op in PRESENCE_OPS:
            self.presence_ops.labels(op)
        for reason in PUSH_SKIPPED:
            self.push_skipped_by[reason]
        for outcome in ("abandoned", "store_unavailable"):  # jobs, before any provider
            self.pushes.labels("any", outcome)
        self.push_shed.labels("queue")
        for outcome in EXPORT_OUTCOMES:
            self.exports_by[outcome]
        for reason in REPORT_REASONS:
            self.reports.labels(reason)

    def initialise_providers(self, providers: Iterable[str]) -> None:
        """The push series of each configured provider at 0."""
        for provider in providers:
            for outcome in PUSH_OUTCOMES:
                self.pushes.labels(provider, str(outcome))
            self.push_shed.labels(provider)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def watch_broker(self, healthy: Callable[[], bool]) -> None:
        """`rendezvous_broker_subscription_healthy` is `healthy()` (the broker's readiness
        check) read at scrape time: the gauge and `/readyz` cannot disagree, on either
        broker (the in-process one is always subscribed: 1 on a single node)."""
        self.broker_healthy.set_function(lambda: 1.0 if healthy() else 0.0)

    def set_build(self, version: str, node: str, node_id: int | None) -> None:
        self.build.info({"version": version, "node": node,
                         "node_id": "" if node_id is None else str(node_id)})


def package_version() -> str:
    """The installed rendezvous version, for `rendezvous_build_info`."""
    try:
        return importlib.metadata.version("rendezvous")
    except importlib.metadata.PackageNotFoundError:  # running from a source checkout
        return "source"


# -- store timing -------------------------------------------------------------------------
STORE_OPS = tuple(name for name, member in vars(Store).items()
                  if inspect.iscoroutinefunction(member))


def _timed(call: Callable[P, Awaitable[T]], latency: HistogramChild,
           errors: Counter) -> Callable[P, Coroutine[Any, Any, T]]:
    """`call`, timed into `latency` and counted into `errors` when it raises; the same
    signature, so the wrapper type-checks as the method it stands for."""
    @functools.wraps(call)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        except Exception:  # CancelledError is not: a cancelled caller is no store error
            errors.inc()
            raise
        finally:
            latency.observe(time.perf_counter() - started)
    return timed


class TimedStore:
    """A `Store` whose every call is timed in `rendezvous_store_op_seconds{op}` and, when it
    raises, counted in `rendezvous_store_errors_total{op}`: one wrapper instead of timing
    code at every call site, so no store call can be missed. Each operation is one
    attribute below, with the wrapped method's signature (tests check that every one of
    `STORE_OPS` is here); other attributes pass through to the wrapped store."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.inner = store

        def timed(op: str, call: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
            return _timed(call, metrics.store_ops.labels(op), metrics.store_errors.labels(op))

        self.start = timed("start", store.start)
        self.close = timed("close", store.close)
        self.ping = timed("ping", store.ping)
        self.save_message = timed("save_message", store.save_message)
        self.history = timed("history", store.history)
        self.messages_after = timed("messages_after", store.messages_after)
        self.count_unread = timed("count_unread", store.count_unread)
        self.conversations = timed("conversations", store.conversations)
        self.cursors = timed("cursors", store.cursors)
        self.advance_cursor = timed("advance_cursor", store.advance_cursor)
        self.record_swipe = timed("record_swipe", store.record_swipe)
        self.get_swipe = timed("get_swipe", store.get_swipe)
        self.swipes_given = timed("swipes_given", store.swipes_given)
        self.create_match = timed("create_match", store.create_match)
        self.get_match = timed("get_match", store.get_match)
        self.matches_for_user = timed("matches_for_user", store.matches_for_user)
        self.matches_ever = timed("matches_ever", store.matches_ever)
        self.close_match = timed("close_match", store.close_match)
        self.add_block = timed("add_block", store.add_block)
        self.is_blocked = timed("is_blocked", store.is_blocked)
        self.blocks_made = timed("blocks_made", store.blocks_made)
        self.put_device = timed("put_device", store.put_device)
        self.delete_device = timed("delete_device", store.delete_device)
        self.devices = timed("devices", store.devices)
        self.get_settings = timed("get_settings", store.get_settings)
        self.put_settings = timed("put_settings", store.put_settings)
        self.index_swipe = timed("index_swipe", store.index_swipe)
        self.last_swipe = timed("last_swipe", store.last_swipe)
        self.undo_swipe = timed("undo_swipe", store.undo_swipe)
        self.likes_received = timed("likes_received", store.likes_received)
        self.deck_exclusions = timed("deck_exclusions", store.deck_exclusions)
        self.revoke_tokens = timed("revoke_tokens", store.revoke_tokens)
        self.tokens_not_before = timed("tokens_not_before", store.tokens_not_before)
        self.get_message = timed("get_message", store.get_message)
        self.tombstone_message = timed("tombstone_message", store.tombstone_message)
        self.has_sent = timed("has_sent", store.has_sent)
        self.put_mute = timed("put_mute", store.put_mute)
        self.delete_mute = timed("delete_mute", store.delete_mute)
        self.mute_until = timed("mute_until", store.mute_until)
        self.mutes = timed("mutes", store.mutes)
        self.begin_erasure = timed("begin_erasure", store.begin_erasure)
        self.get_erasure = timed("get_erasure", store.get_erasure)
        self.erasure_progress = timed("erasure_progress", store.erasure_progress)
        self.finish_erasure = timed("finish_erasure", store.finish_erasure)
        self.pending_erasures = timed("pending_erasures", store.pending_erasures)
        self.sent_in_match = timed("sent_in_match", store.sent_in_match)
        self.erase_in_match = timed("erase_in_match", store.erase_in_match)
        self.erase_user_data = timed("erase_user_data", store.erase_user_data)
        self.save_report = timed("save_report", store.save_report)
        self.get_report = timed("get_report", store.get_report)
        self.list_reports = timed("list_reports", store.list_reports)
        self.purge_reports = timed("purge_reports", store.purge_reports)

    def __getattr__(self, name: str) -> Any:  # only what is not a store operation
        return getattr(self.inner, name)


def timed_store(store: Store, metrics: Metrics) -> Store:
    """`store` with every call timed and its errors counted (see `TimedStore`)."""
    if isinstance(store, TimedStore):
        return store
    return TimedStore(store, metrics)
