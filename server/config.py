"""One typed, frozen configuration for a node, built once at start-up.

Every value has a default that runs the embedded single-machine mode; `validate()` names the
bad setting in its error so an operator knows what to fix.
"""

from __future__ import annotations

import hmac
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from protocol.ids import MAX_NODE
from protocol.limits import Limits

JWT_ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
SECRET_ENV = "RENDEZVOUS_JWT_SECRET"
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
# An origin as a browser sends it: lowercase scheme://host[:port], no path, no trailing slash
DEMO_CHOICES = ("auto", "true", "false")
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(:(\d{1,5}))?")


MAX_REPORT_EVIDENCE = 500  # messages copied into one report
MAX_REPORT_RETENTION_DAYS = 3650  # Cassandra's TTL, the purge's backstop, stops at 20 years
HOOK_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""


@dataclass(frozen=True, slots=True)
class JwtKey:
    """A verification key: an HS256 secret, or a PEM public key for the other algorithms."""

    algorithm: str
    key: str

    def __repr__(self) -> str:  # never print key material
        return f"JwtKey({self.algorithm}, <{len(self.key)} chars>)"


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    ws_port: int = 8080
    http_port: int = 8081
    data_dir: Path = Path("rendezvous-data")
    node_id: int | None = None  # None: 0 on the embedded default, a Redis lease in a cluster
    node_name: str = ""
    redis_url: str | None = None  # redis://host:port/db: one Redis for fan-out and presence
    redis_cluster_nodes: tuple[str, ...] = ()  # host:port seeds of a Redis Cluster (sharded)
    redis_prefix: str = "rdv:"
    cassandra_contact_points: tuple[str, ...] = ()  # host[:port]: store in Cassandra
    cassandra_keyspace: str = "rendezvous"
    cassandra_datacenter: str | None = None  # set: NetworkTopologyStrategy in this DC
    cassandra_replication_factor: int = 1
    cassandra_consistency: str = "LOCAL_QUORUM"
    workers: int = 1  # processes sharing the ports (SO_REUSEPORT), each a cluster node
    drain_timeout_s: float = 20.0  # SIGTERM: the most a node takes to let its clients go
    drain_batch: int = 500  # sessions told to reconnect per batch
    drain_interval_s: float = 0.05
    reconnect_jitter_ms: tuple[int, int] = (250, 5000)
    jwt_keys: tuple[JwtKey, ...] = ()
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: int = 0
    heartbeat_s: int = 25
    send_queue_frames: int = 512  # past it a connection is too slow: closed with 4009
    inflight_per_connection: int = 64
    sends_per_s: float = 20.0
    send_burst: int = 60
    frames_per_s: float = 100.0  # per connection, every frame after auth
    frame_burst: int = 200
    refreshes_per_s: float = 0.1  # per connection: each `refresh` is a signature check
    refresh_burst: int = 5
    close_timeout_s: float = 2.0  # a close the client does not take by then drops the socket
    swipes_per_s: float = 20.0
    swipe_burst: int = 100
    # -- chat controls (docs/chat-controls.md) ---------------------------------------------
    unsend_window_s: float = 900.0  # a sender may unsend a message this long after its ts
    openers_per_day: int = 0  # first messages per user in 24 h across matches; 0: no limit
    reject_duplicate_openers: bool = False  # refuse an opener sent in another match in 24 h
    max_http_body_bytes: int = 65_536
    cors_origins: tuple[str, ...] = ()  # browser origins the HTTP API answers; "*": any
    demo_enabled: str = "auto"  # /demo: auto (on unless clustered), true or false
    presence_ttl_s: float = 60.0
    sqlite_synchronous: str = "FULL"
    log_level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR
    log_format: str = "auto"  # json, text, or auto: text on a terminal, JSON otherwise
    # -- push (docs/push.md): no provider configured -> the recorder (data_dir/pushes.jsonl) --
    apns_topic: str | None = None  # the app's bundle id
    apns_key_file: Path | None = None  # .p8 signing key (token auth), with key and team id
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_cert_file: Path | None = None  # PEM certificate and key: instead of a signing key
    apns_sandbox: bool = False
    apns_server: str | None = None  # host:port instead of Apple's (a relay, tests)
    apns_ca_file: Path | None = None  # CA bundle to trust for apns_server
    apns_max_connections: int = 10  # HTTP/2 connections to APNS (up to 1000 sends each)
    fcm_service_account_file: Path | None = None  # the service account JSON of the project
    fcm_url: str | None = None  # instead of Google's FCM v1 endpoint (a relay, tests)
    push_workers: int = 4
    push_max_in_flight: int = 100  # sends in flight per provider
    push_max_waiting: int = 1000  # sends waiting per provider; past it pushes are shed
    push_queue_max: int = 100_000  # jobs queued (and delayed retries); past it shed
    push_coalesce_s: float = 15.0  # one notification per user and match per window
    push_delivered_window_s: float = 10.0  # no push right after a device confirmed delivery
    push_max_attempts: int = 5
    push_retry_base_s: float = 1.0  # backoff without Retry-After: doubles per attempt
    push_send_timeout_s: float = 10.0
    push_claim_idle_s: float = 60.0  # a dead node's queued pushes are taken over after this
    # -- connect-time guards and start-up (docs/operations.md) ---------------------
    max_connections_per_user: int = 10  # across the cluster; past it the oldest gets 4008
    auth_failures_per_ip: int = 30  # failed authentications per window; then HTTP 429
    auth_failure_window_s: float = 60.0
    client_ip_header: str | None = None  # e.g. X-Forwarded-For, set by a trusted proxy
    presence_grace_s: float = 5.0  # a reconnect within this is no offline/online flap
    # -- token revocation (docs/operations.md, "Log out everywhere") ---------------
    revocation_cache_s: float = 5.0  # a node trusts its copy of a not-before this long
    revocation_cache_entries: int = 100_000  # users whose not-before a node keeps
    startup_wait_s: float = 60.0  # waiting for a locked SQLite file and for Redis
    worker_max_fast_crashes: int = 5  # in a row, then the supervisor gives up (exit 1)
    worker_fast_crash_s: float = 10.0  # a worker that dies this soon after start crashed
    # -- the swipe economy (docs/operations.md, "Quotas and undo"): 0 = unlimited ----------
    likes_per_day: int = 0
    superlikes_per_day: int = 0
    quota_reset_hour_utc: int = 0  # quotas refill at this hour (0..23, UTC) every day
    quota_exempt_claim: str | None = None  # a token claim that lifts quotas, e.g. "plan"
    quota_exempt_values: tuple[str, ...] = ("premium",)  # ... when it holds one of these
    undo_window_s: float = 300.0  # how long after a swipe `POST /v1/swipes/undo` takes it back
    erasure_resume_s: float = 30.0  # how often unfinished account erasures are resumed
    # -- reports and moderation (docs/privacy.md, "Reports") ----------------------------
    report_evidence_msgs: int = 50  # the last messages between the two copied into a report
    report_retention_days: int = 90  # then the daily purge deletes the report and evidence
    report_purge_interval_s: float = 86_400.0  # how often a node purges expired reports
    admin_subjects: tuple[str, ...] = ()  # JWT subjects allowed on /v1/admin (also scope admin)
    report_hook: str | None = None  # "package.module:callable" called after each report
    limits: Limits = field(default_factory=Limits)

    def validate(self) -> Config:
        """Return self, or raise `ConfigError` naming the first bad setting."""
        for name in ("ws_port", "http_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be 0..65535, got {port}")
        if self.ws_port == self.http_port and self.ws_port != 0:
            raise ConfigError("ws_port and http_port must differ")
        if self.node_id is not None and not 0 <= self.node_id <= MAX_NODE:
            raise ConfigError(f"node_id must be 0..{MAX_NODE}, got {self.node_id}")
        if self.redis_url and self.redis_cluster_nodes:
            raise ConfigError("redis_url and redis_cluster_nodes: set one, not both")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://",
                                                            "unix://")):
            raise ConfigError(f"redis_url must start with redis://, rediss:// or unix://, "
                              f"got {self.redis_url!r}")
        for seed in self.redis_cluster_nodes:
            host, _, port = seed.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"redis_cluster_nodes: {seed!r} is not host:port")
        if self.cassandra_replication_factor < 1:
            raise ConfigError("cassandra_replication_factor must be at least 1")
        if self.cassandra_consistency not in ("ONE", "TWO", "THREE", "QUORUM", "ALL",
                                              "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"):
            raise ConfigError(f"cassandra_consistency: {self.cassandra_consistency!r} is not "
                              "a Cassandra consistency level")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if self.workers > 1 and not self.clustered:
            raise ConfigError("workers > 1 needs redis_url or redis_cluster_nodes: worker "
                              "processes share fan-out and presence through Redis")
        lo, hi = self.reconnect_jitter_ms
        if not 0 <= lo <= hi:
            raise ConfigError("reconnect_jitter_ms must be (low, high) with 0 <= low <= high")
        if not self.jwt_keys:
            raise ConfigError(f"jwt_keys: no key configured (set {SECRET_ENV} or a public key)")
        for key in self.jwt_keys:
            if key.algorithm not in JWT_ALGORITHMS:
                raise ConfigError(f"jwt_keys: algorithm {key.algorithm!r} is not one of "
                                  f"{', '.join(JWT_ALGORITHMS)}")
            if key.algorithm == "HS256" and len(key.key.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(f"jwt_keys: the HS256 secret must be at least "
                                  f"{MIN_SECRET_BYTES} bytes ({SECRET_ENV})")
        if self.sqlite_synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError("sqlite_synchronous must be FULL, NORMAL or EXTRA")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level must be DEBUG, INFO, WARNING or ERROR, got "
                              f"{self.log_level!r}")
        if self.log_format not in ("auto", "json", "text"):
            raise ConfigError(f"log_format must be json, text or auto, got "
                              f"{self.log_format!r}")
        for name in ("heartbeat_s", "send_queue_frames", "inflight_per_connection",
                     "max_http_body_bytes", "frames_per_s", "frame_burst", "refreshes_per_s",
                     "refresh_burst", "close_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.send_queue_frames <= self.inflight_per_connection:
            raise ConfigError("send_queue_frames must exceed inflight_per_connection, or a "
                              "client's own replies could fill its queue")
        self._validate_cors()
        if self.demo_enabled not in DEMO_CHOICES:
            raise ConfigError(f"demo_enabled must be auto, true or false, got "
                              f"{self.demo_enabled!r}")
        self._validate_push()
        self._validate_guards()
        self._validate_quotas()
        self._validate_revocation()
        self._validate_chat_controls()
        self._validate_reports()
        return self

    def _validate_quotas(self) -> None:
        for name in ("likes_per_day", "superlikes_per_day"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative (0 means unlimited), got "
                                  f"{getattr(self, name)}")
        if not 0 <= self.quota_reset_hour_utc <= 23:
            raise ConfigError(f"quota_reset_hour_utc must be 0..23, got "
                              f"{self.quota_reset_hour_utc}")
        if self.quota_exempt_claim is not None and not self.quota_exempt_claim.strip():
            raise ConfigError("quota_exempt_claim must be a claim name, or unset")
        if self.quota_exempt_claim is not None and not self.quota_exempt_values:
            raise ConfigError("quota_exempt_values: give at least one value with "
                              "quota_exempt_claim")
        if self.undo_window_s < 0:
            raise ConfigError(f"undo_window_s must not be negative (0 turns undo off), got "
                              f"{self.undo_window_s:g}")

    def _validate_revocation(self) -> None:
        if self.revocation_cache_s < 0:
            raise ConfigError("revocation_cache_s must not be negative (0: read the store at "
                              "every authentication)")
        if self.revocation_cache_entries < 1:
            raise ConfigError("revocation_cache_entries must be at least 1")

    def _validate_reports(self) -> None:
        if not 0 <= self.report_evidence_msgs <= MAX_REPORT_EVIDENCE:
            raise ConfigError(f"report_evidence_msgs must be 0..{MAX_REPORT_EVIDENCE}, got "
                              f"{self.report_evidence_msgs}")
        if not 1 <= self.report_retention_days <= MAX_REPORT_RETENTION_DAYS:
            raise ConfigError(f"report_retention_days must be 1..{MAX_REPORT_RETENTION_DAYS}"
                              f", got {self.report_retention_days}")
        if not self.report_purge_interval_s > 0:
            raise ConfigError("report_purge_interval_s must be positive")
        for subject in self.admin_subjects:
            if not 0 < len(subject) <= self.limits.max_user_id_chars or subject.isspace():
                raise ConfigError(f"admin_subjects: {subject!r} is not a user id (1.."
                                  f"{self.limits.max_user_id_chars} characters)")
        if self.report_hook is not None and not HOOK_PATH.fullmatch(self.report_hook):
            raise ConfigError(f"report_hook: {self.report_hook!r} is not "
                              "\"package.module:callable\"")

    def _validate_cors(self) -> None:
        for origin in self.cors_origins:
            match = ORIGIN.fullmatch(origin)
            if origin != "*" and (match is None or int(match.group(3) or 0) > 65535):
                raise ConfigError(f"cors_origins: {origin!r} is not an origin: give "
                                  "scheme://host[:port] in lowercase (no path, no trailing "
                                  "slash), or \"*\" for any origin")

    def _validate_chat_controls(self) -> None:
        if self.unsend_window_s < 0:
            raise ConfigError("unsend_window_s must not be negative (0 turns unsend off)")
        if self.openers_per_day < 0:
            raise ConfigError("openers_per_day must not be negative (0 turns the limit off)")

    @property
    def opener_rules_on(self) -> bool:
        return self.openers_per_day > 0 or self.reject_duplicate_openers

    def _validate_guards(self) -> None:
        for name in ("max_connections_per_user", "auth_failures_per_ip",
                     "presence_grace_s", "startup_wait_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative (0 turns it off)")
        for name in ("auth_failure_window_s", "worker_fast_crash_s", "erasure_resume_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.worker_max_fast_crashes < 1:
            raise ConfigError("worker_max_fast_crashes must be at least 1")
        if self.client_ip_header is not None and not self.client_ip_header.strip():
            raise ConfigError("client_ip_header must be a header name, or unset")

    def _validate_push(self) -> None:
        apns_auth = {"apns_key_file": self.apns_key_file, "apns_key_id": self.apns_key_id,
                     "apns_team_id": self.apns_team_id}
        if any(apns_auth.values()) and self.apns_cert_file:
            raise ConfigError("apns_key_file and apns_cert_file: set one, not both")
        if any(apns_auth.values()) and not all(apns_auth.values()):
            missing = ", ".join(k for k, v in apns_auth.items() if not v)
            raise ConfigError(f"{missing}: needed with the other apns_key_* settings")
        if self.apns_configured and not self.apns_topic:
            raise ConfigError("apns_topic: needed to send through APNS (the app's bundle id)")
        if not self.apns_configured:
            for name in ("apns_topic", "apns_server", "apns_ca_file"):
                if getattr(self, name):
                    raise ConfigError(f"{name} is set but APNS has no credentials: set "
                                      "apns_key_file, apns_key_id and apns_team_id, or "
                                      "apns_cert_file")
        if self.apns_server:
            host, _, port = self.apns_server.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"apns_server: {self.apns_server!r} is not host:port")
        if self.fcm_url and not self.fcm_service_account_file:
            raise ConfigError("fcm_url is set but fcm_service_account_file is not")
        if self.fcm_url and not self.fcm_url.startswith(("http://", "https://")):
            raise ConfigError(f"fcm_url must be an http(s) URL, got {self.fcm_url!r}")
        for name in ("push_workers", "push_max_in_flight", "push_queue_max",
                     "push_max_attempts", "apns_max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        for name in ("push_max_waiting", "push_coalesce_s", "push_delivered_window_s",
                     "push_retry_base_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        for name in ("push_send_timeout_s", "push_claim_idle_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")

    @property
    def apns_configured(self) -> bool:
        """APNS credentials are set (else iOS devices get the recorder)."""
        return bool(self.apns_key_file or self.apns_cert_file)

    @property
    def demo(self) -> bool:
        """Whether the node serves the browser demo at /demo (docs/demo.md): by default
        on the embedded default only, since a cluster is rarely a developer's machine."""
        if self.demo_enabled == "auto":
            return not self.clustered
        return self.demo_enabled == "true"

    @property
    def clustered(self) -> bool:
        """Whether this node shares fan-out and presence with others through Redis."""
        return bool(self.redis_url or self.redis_cluster_nodes)

    @property
    def node(self) -> str:
        """This node's name: configured, else unique per host and process."""
        if self.node_name:
            return self.node_name
        if self.clustered:
            return f"{socket.gethostname()}-{os.getpid()}"
        return f"node-{self.node_id or 0}"


def dev_secret(data_dir: Path) -> str:
    """The HS256 secret of this data dir, created once (mode 0600) on first use.

    It lets `rendezvous serve` and `rendezvous token` agree with zero set-up; production sets
    RENDEZVOUS_JWT_SECRET or configures public keys instead.
    """
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = os.urandom(32).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


def dev_secret_in_force(config: Config) -> str | None:
    """The data dir's dev secret if the node verifies tokens with it, else None (the node
    runs on $RENDEZVOUS_JWT_SECRET or public keys). Only then may the demo mint tokens."""
    try:
        secret = (config.data_dir / "jwt-secret").read_text().strip()
    except OSError:
        return None
    for key in config.jwt_keys:
        if secret and key.algorithm == "HS256" and hmac.compare_digest(key.key.encode(),
                                                                     secret.encode()):
            return secret
    return None


def hs256_secret(data_dir: Path,
                 environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """The HS256 secret in force and where it came from (for the start-up banner)."""
    env = environ.get(SECRET_ENV)
    if env:
        return env, f"${SECRET_ENV}"
    return dev_secret(data_dir), str(data_dir / "jwt-secret")
