"""Prometheus metrics of one node, in a registry of its own.

A registry per node (not the global default) lets tests run several nodes in one process and
keeps `/metrics` to what this node exports.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.connections = Gauge("rendezvous_connections", "Open authenticated WebSocket "
                                 "connections", registry=r)
        self.frames_in = Counter("rendezvous_frames_in", "Frames received from clients",
                                 ["type"], registry=r)
        self.frames_out = Counter("rendezvous_frames_out", "Frames queued to clients",
                                  ["type"], registry=r)
        self.errors = Counter("rendezvous_errors", "Error frames sent, by code", ["code"],
                              registry=r)
        self.send_to_ack = Histogram("rendezvous_send_to_ack_seconds", "From a send frame "
                                     "read to its ack queued (includes the durable write)",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.store_ops = Histogram("rendezvous_store_op_seconds", "Store call latency",
                                   ["op"], buckets=LATENCY_BUCKETS, registry=r)
        self.closes = Counter("rendezvous_closes", "Connections closed by the server, by "
                              "close code", ["code"], registry=r)
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

        self.broker_publish = Histogram("rendezvous_broker_publish_seconds", "Broker publish "
                                        "latency", buckets=LATENCY_BUCKETS, registry=r)
        self.broker_healthy = Gauge("rendezvous_broker_subscription_healthy", "1 when this "
                                    "node's subscription is live (its canary came back)",
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
