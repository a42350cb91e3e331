"""Apple Push Notification service through aioapns: render, send, classify the answer.

aioapns has no host, port or per-request timeout settings and keeps only the status and
reason of an answer; this adapter adds what the dispatcher needs around it (docs/push.md):
a protocol subclass points the pool at `server` and keeps the Retry-After header, every
send is bounded by `timeout_s`, and every answer becomes an `Outcome`, never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
import uuid
from typing import Any

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsTLSClientProtocol
from hpack import Encoder

from push.base import Notification, Outcome, PushResult, retry_after_seconds
from storage import Device

log = logging.getLogger("rendezvous.push")

PRIORITY_NOW = 10  # alerts the user is waiting for; Apple's "send immediately"
DEFAULT_TTL_S = 24 * 3600  # a day-old "new message" is still worth showing
_APNS_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://rendezvous/push/apns-id")

# Reasons of a 400 that mean the device token itself is bad or foreign to Apple.
_DEAD_TOKEN_400 = frozenset({"BadDeviceToken"})
# Reasons that mean our credentials, topic or environment are wrong: no device is at fault.
_CONFIG_400 = frozenset({"DeviceTokenNotForTopic", "TopicDisallowed", "MissingTopic",
                         "BadTopic", "BadCertificate", "BadCertificateEnvironment"})


def apns_id(push_id: str) -> str:
    """The apns-id of a push: the same for every delivery of one push id, so a push the
    durable queue hands out twice is recognisable in Apple's and our logs."""
    return str(uuid.uuid5(_APNS_ID_NAMESPACE, push_id))


def classify_apns(status: int | str, reason: str | None,
                  retry_after: str | None = None) -> PushResult:
    """What one APNS answer means for the dispatcher (the table in docs/push.md).

    200 sent; 410 (Unregistered, ExpiredToken) and 400 BadDeviceToken: the token is dead;
    403 (provider token, certificate) and the topic 400s: our configuration, keep the token;
    429: retry after Retry-After; 5xx: retry; 413 and any other 4xx: this push is wrong.
    """
    try:
        code = int(status)
    except (TypeError, ValueError):
        return PushResult(Outcome.RETRY, f"no status ({status!r})")
    why = reason or str(code)
    if code == 200:
        return PushResult(Outcome.SENT)
    if code == 410 or (code == 400 and why in _DEAD_TOKEN_400):
        return PushResult(Outcome.DEAD_TOKEN, why)
    if code == 403 or (code == 400 and why in _CONFIG_400):
        return PushResult(Outcome.CONFIG_ERROR, why)
    if code == 429:
        return PushResult(Outcome.RETRY, why, retry_after_seconds(retry_after))
    if code >= 500:
        return PushResult(Outcome.RETRY, why, retry_after_seconds(retry_after))
    return PushResult(Outcome.REJECTED, why)  # 413 PayloadTooLarge, other 400s, 404, 405


class RequestHeaderEncoder(Encoder):
    """HPACK for APNS requests, cheaper to make than h2's default (a third of a send's CPU
    went to it): no Huffman coding (optional in HPACK; the literals are a little longer on
    the wire), and the headers that differ on every request (the path with the device token,
    apns-id, apns-expiration) as literals never added to the dynamic table, where they only
    evicted the headers that do repeat (topic, authorization, priority, push type)."""

    UNIQUE = frozenset({":path", "apns-id", "apns-expiration"})

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        unique = self.UNIQUE
        marked = [(name, value, True) if name in unique else (name, value)
                  for name, value in headers]
        return super().encode(marked, huffman=False)


def render_apns(notification: Notification) -> dict[str, Any]:
    """The JSON payload: a localisation key and no text unless the user turned previews on."""
    alert: dict[str, Any] = {"loc-key": notification.loc_key}
    if notification.body is not None:
        alert["body"] = notification.body
    aps: dict[str, Any] = {"alert": alert, "sound": "default"}
    if notification.badge is not None:
        aps["badge"] = notification.badge
    if notification.match_id is not None:
        aps["thread-id"] = notification.match_id  # iOS groups a conversation's pushes
    payload: dict[str, Any] = {k: v for k, v in notification.data.items() if k != "aps"}
    payload["aps"] = aps
    return payload


class ApnsPusher:
    """One aioapns client (token auth, or certificate auth) for one app topic."""

    provider = "apns"

    def __init__(self, *, topic: str, key_pem: str | None = None, key_id: str | None = None,
                 team_id: str | None = None, cert_pem: str | None = None,
                 sandbox: bool = False, server: str | None = None,
                 ca_file: str | None = None, timeout_s: float = 10.0,
                 ttl_s: int = DEFAULT_TTL_S, max_connections: int = 10) -> None:
        if cert_pem is None and not (key_pem and key_id and team_id):
            raise ValueError("ApnsPusher: give key_pem, key_id and team_id (token auth) "
                             "or cert_pem (certificate auth)")
        if cert_pem is not None and key_pem is not None:
            raise ValueError("ApnsPusher: key_pem and cert_pem: give one, not both")
        self.host: str | None = None
        self.port: int | None = None
        if server is not None:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"ApnsPusher server: {server!r} is not host:port")
            self.host, self.port = host.strip("[]"), int(port)
        self.topic = topic
        self._key_pem = key_pem
        self._key_id = key_id
        self._team_id = team_id
        self._cert_pem = cert_pem
        self.sandbox = sandbox
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.max_connections = max_connections
        self._client: APNs | None = None
        self._cert_file: str | None = None
        # Retry-After values by apns-id, kept by the protocol subclass until `send` reads it.
        self._retry_after: dict[str, str] = {}

    async def start(self) -> None:
        """Make the aioapns client inside the running loop (its pool binds to the loop)."""
        if self._client is not None:
            return
        context = await asyncio.to_thread(self._ssl_context)
        if self._cert_pem is not None:
            self._cert_file = await asyncio.to_thread(_private_file, self._cert_pem)
        client = APNs(client_cert=self._cert_file, key=self._key_pem, key_id=self._key_id,
                      team_id=self._team_id, topic=self.topic,
                      max_connections=self.max_connections, max_connection_attempts=2,
                      use_sandbox=self.sandbox, ssl_context=context, err_func=_no_log)
        client.pool.protocol_class = self._protocol_class(client.pool.protocol_class)
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.pool.close()
            self._client = None
        if self._cert_file is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.unlink, self._cert_file)
            self._cert_file = None

    async def send(self, device: Device, notification: Notification) -> PushResult:
        if self._client is None:
            return PushResult(Outcome.RETRY, "apns pusher not started")
        request = NotificationRequest(
            device_token=device.token, message=render_apns(notification),
            notification_id=apns_id(notification.push_id), time_to_live=self.ttl_s,
            priority=PRIORITY_NOW, collapse_key=notification.collapse_id,
            push_type=PushType.ALERT)
        try:
            async with asyncio.timeout(self.timeout_s):
                result: NotificationResult = await self._client.send_notification(request)
        except TimeoutError:
            self._forget(request.notification_id)
            return PushResult(Outcome.RETRY, "timeout")
        except Exception as exc:  # MaxAttemptsExceeded, TLS and socket errors
            self._forget(request.notification_id)
            return PushResult(Outcome.RETRY, f"transport: {type(exc).__name__}")
        retry_after = self._retry_after.pop(request.notification_id, None)
        return classify_apns(result.status, result.description, retry_after)

    def _forget(self, notification_id: str) -> None:
        """Drop what aioapns keeps for a request we gave up on: its answer may never come,
        and a cancelled future must not be completed when the connection closes."""
        self._retry_after.pop(notification_id, None)
        if self._client is None:
            return
        for connection in self._client.pool.connections:
            connection.requests.pop(notification_id, None)
            connection.request_statuses.pop(notification_id, None)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(self.ca_file)
        return context

    def _protocol_class(self, base: type[APNsTLSClientProtocol]) -> type[APNsTLSClientProtocol]:
        """aioapns reads host and port from class attributes of its protocol class, and
        drops response headers: a subclass sets the first, keeps Retry-After and encodes
        request headers with `RequestHeaderEncoder`."""
        retry_after = self._retry_after
        attributes: dict[str, Any] = {}
        if self.host is not None:
            attributes = {"APNS_SERVER": self.host, "APNS_PORT": self.port}

        def on_response_received(protocol: APNsTLSClientProtocol,
                                 headers: dict[bytes, bytes]) -> None:
            value = headers.get(b"retry-after")
            if value:
                retry_after[headers.get(b"apns-id", b"").decode()] = value.decode()
            base.on_response_received(protocol, headers)

        def __init__(protocol: APNsTLSClientProtocol, *args: Any, **kwargs: Any) -> None:
            base.__init__(protocol, *args, **kwargs)
            protocol.conn.encoder = RequestHeaderEncoder()  # before the connection is made

        attributes["on_response_received"] = on_response_received
        attributes["__init__"] = __init__
        return type(f"Rendezvous{base.__name__}", (base,), attributes)


def _private_file(text: str) -> str:
    """A 0600 temporary file holding `text`: aioapns loads a client certificate by path."""
    fd, path = tempfile.mkstemp(prefix="rdv-apns-", suffix=".pem")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


async def _no_log(request: NotificationRequest, result: NotificationResult) -> None:
    """aioapns logs every failed answer at ERROR by default; the dispatcher logs outcomes
    (without tokens) and counts them, so the library's line would only repeat it."""
    return None
