"""The push side of a node, built from its config: providers, queue, gates and policy.

Key files are read here, at start-up, so a missing or unreadable one stops the node with
an error naming its setting instead of failing every push later. A platform whose provider
is not configured gets the recorder (the embedded default: `data_dir/pushes.jsonl`).
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from push.base import Pusher
from push.dispatcher import PushPolicy
from push.gates import MemoryPushGates, PushGates
from push.queue import MemoryPushQueue, PushQueue
from push.recorder import RecorderPusher
from server.config import Config, ConfigError
from server.metrics import Metrics

log = logging.getLogger("rendezvous.node")


def read_setting_file(name: str, path: Path) -> str:
    """The text of the file a setting names; ConfigError naming the setting otherwise."""
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: {path} is not a text (PEM or JSON) file") from None


def build_pushers(config: Config) -> dict[str, Pusher]:
    """One pusher per device platform ("apns", "fcm"), the recorder where none is set up."""
    recorder: RecorderPusher | None = None

    def record() -> RecorderPusher:
        nonlocal recorder
        if recorder is None:
            recorder = RecorderPusher(config.data_dir / "pushes.jsonl")
        return recorder

    pushers: dict[str, Pusher] = {}
    if config.apns_configured:
        pushers["apns"] = _apns(config)
    else:
        pushers["apns"] = record()
    if config.fcm_service_account_file is not None:
        pushers["fcm"] = _fcm(config, config.fcm_service_account_file)
    else:
        pushers["fcm"] = record()
    if recorder is not None and len({id(p) for p in pushers.values()}) > 1:
        log.warning("push: only some providers are configured; the others are recorded to "
                    "%s", recorder.path)
    return pushers


def _apns(config: Config) -> Pusher:
    options: dict[str, Any] = {"topic": config.apns_topic, "sandbox": config.apns_sandbox,
                               "server": config.apns_server,
                               "timeout_s": config.push_send_timeout_s,
                               "max_connections": config.apns_max_connections}
    if config.apns_ca_file is not None:
        read_setting_file("apns_ca_file", config.apns_ca_file)  # fail now, not at the send
        options["ca_file"] = str(config.apns_ca_file)
    if config.apns_cert_file is not None:
        options["cert_pem"] = read_setting_file("apns_cert_file", config.apns_cert_file)
    else:
        assert config.apns_key_file is not None
        options.update(key_pem=read_setting_file("apns_key_file", config.apns_key_file),
                       key_id=config.apns_key_id, team_id=config.apns_team_id)
    from push.apns import ApnsPusher  # aioapns only where APNS is configured

    pusher: Pusher = ApnsPusher(**options)
    return pusher


def _fcm(config: Config, path: Path) -> Pusher:
    try:
        account = json.loads(read_setting_file("fcm_service_account_file", path))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"fcm_service_account_file: {path} is not JSON: {exc}") from None
    if not isinstance(account, dict) or "private_key" not in account:
        raise ConfigError(f"fcm_service_account_file: {path} is not a service account key "
                          "(no private_key)")
    from push.fcm import FcmPusher  # firebase-admin only where FCM is configured

    # A firebase app name of our own: several nodes in one process (tests) must not share.
    pusher: Pusher = FcmPusher(service_account=account, fcm_url=config.fcm_url,
                               timeout_s=config.push_send_timeout_s,
                               app_name=f"rendezvous-{uuid.uuid4().hex[:12]}")
    return pusher


def push_policy(config: Config) -> PushPolicy:
    return PushPolicy(workers=config.push_workers, max_in_flight=config.push_max_in_flight,
                      max_waiting=config.push_max_waiting, coalesce_s=config.push_coalesce_s,
                      delivered_window_s=config.push_delivered_window_s,
                      max_attempts=config.push_max_attempts,
                      retry_base_s=config.push_retry_base_s,
                      send_timeout_s=config.push_send_timeout_s,
                      claim_s=config.push_claim_idle_s)


def build_push_queue(config: Config, redis: Any, metrics: Metrics,
                     batcher: Any = None) -> tuple[PushQueue, PushGates]:
    """A Redis Stream and Redis gates when the node has a Redis client, else in memory;
    `batcher` is the node's `TurnBatcher` on that client, for the queue's puts and dones."""
    if redis is None:
        return MemoryPushQueue(max_jobs=config.push_queue_max), MemoryPushGates()
    from push.redis_queue import RedisPushGates, RedisPushQueue

    # A consumer per process start: a restarted node must not share a name with its past.
    consumer = f"{config.node}-{uuid.uuid4().hex[:8]}"
    queue = RedisPushQueue(redis, consumer=consumer, prefix=config.redis_prefix,
                           max_jobs=config.push_queue_max,
                           claim_idle_s=config.push_claim_idle_s,
                           batch=max(1, config.push_workers),
                           on_abandon=metrics.pushes.labels("any", "abandoned").inc,
                           batcher=batcher)
    return queue, RedisPushGates(redis, prefix=config.redis_prefix)
