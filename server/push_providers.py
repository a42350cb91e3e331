"""The APNS and FCM pushers, built from their settings (server/compose.py decides which).

Key files are read here, at start-up, so a missing or unreadable one stops the node with
an error naming its setting instead of failing every push later.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from push.base import Pusher
from server.config import Config, ConfigError


def read_setting_file(name: str, path: Path) -> str:
    """The text of the file a setting names; ConfigError naming the setting otherwise."""
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: {path} is not a text (PEM or JSON) file") from None


def apns_pusher(config: Config) -> Pusher:
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


def fcm_pusher(config: Config, path: Path) -> Pusher:
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
