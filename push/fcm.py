"""Firebase Cloud Messaging (HTTP v1) through firebase-admin: render, send, classify.

firebase-admin has no endpoint setting and fetches OAuth tokens synchronously inside its
httpx flow; this adapter points the messaging service of its own App at `fcm_url`, refreshes
the access token in a worker thread so the event loop never waits on Google's token
endpoint, leaves retries to the dispatcher (which honours Retry-After, the library does not),
and turns every answer into an `Outcome` (docs/push.md has the table).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Any

import firebase_admin
import httpx
import requests
from firebase_admin import credentials, exceptions, messaging
from firebase_admin._http_client import HttpxAsyncClient
from firebase_admin._retry import HttpxRetry
from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError
from google.auth.transport import requests as google_auth_requests

from push.base import Notification, Outcome, PushResult, retry_after_seconds
from storage import Device

DEFAULT_TTL_S = 24 * 3600
MAX_BATCH = 500  # send_each_async's limit
# The text of FCM's 400 INVALID_ARGUMENT for a string that is not a registration token
# ("The registration token is not a valid FCM registration token"): the token is dead.
_NOT_A_TOKEN = "registration token is not a valid fcm registration token"


def _retry_after(error: exceptions.FirebaseError) -> float | None:
    response = error.http_response
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    return retry_after_seconds(value if isinstance(value, str) else None)


# Order matters: the FCM-specific errors subclass the generic platform ones
# (UnregisteredError is a NotFoundError, SenderIdMismatchError a PermissionDeniedError...).
_FCM_TABLE: tuple[tuple[type[exceptions.FirebaseError], Outcome], ...] = (
    (messaging.UnregisteredError, Outcome.DEAD_TOKEN),
    (messaging.SenderIdMismatchError, Outcome.CONFIG_ERROR),
    (messaging.ThirdPartyAuthError, Outcome.CONFIG_ERROR),  # the app's APNs key in Firebase
    (messaging.QuotaExceededError, Outcome.RETRY),
    (exceptions.UnavailableError, Outcome.RETRY),
    (exceptions.InternalError, Outcome.RETRY),
    (exceptions.DeadlineExceededError, Outcome.RETRY),
    (exceptions.ResourceExhaustedError, Outcome.RETRY),
    (exceptions.UnknownError, Outcome.RETRY),  # transport failures end here
    (exceptions.UnauthenticatedError, Outcome.CONFIG_ERROR),  # our OAuth token refused
    (exceptions.PermissionDeniedError, Outcome.CONFIG_ERROR),  # API off, role missing
    (exceptions.NotFoundError, Outcome.CONFIG_ERROR),  # wrong project id or fcm_url
    (exceptions.InvalidArgumentError, Outcome.REJECTED),
)


def classify_fcm(error: BaseException | None) -> PushResult:
    """What one message's answer means for the dispatcher (the table in docs/push.md).

    None (success) is sent. An INVALID_ARGUMENT whose message says the registration token is
    malformed is a dead token (FCM gives no UNREGISTERED for a string that never was a
    token); any other INVALID_ARGUMENT is this push's fault. Retry-After is read from the
    error's HTTP response when there is one (QUOTA_EXCEEDED, 503).
    """
    if error is None:
        return PushResult(Outcome.SENT)
    token_failure = _token_failure(error)  # before the table: it may come as UnknownError
    if token_failure is not None:
        return token_failure
    if isinstance(error, exceptions.FirebaseError):
        reason = _reason(error)
        if (isinstance(error, exceptions.InvalidArgumentError)
                and _NOT_A_TOKEN in str(error).lower()):
            return PushResult(Outcome.DEAD_TOKEN, reason)
        for kind, outcome in _FCM_TABLE:
            if isinstance(error, kind):
                after = _retry_after(error) if outcome is Outcome.RETRY else None
                return PushResult(outcome, reason, after)
        return PushResult(Outcome.REJECTED, reason)  # other 4xx: aborted, conflict...
    if isinstance(error, ValueError):  # the library refused to encode the message
        return PushResult(Outcome.REJECTED, f"invalid message: {error}")
    return PushResult(Outcome.RETRY, f"transport: {type(error).__name__}")


def classify_token_failure(retryable: bool) -> PushResult:
    """The OAuth token endpoint failed, so no message could go out. A 5xx (google-auth
    marks it retryable) is temporary; a 400/401 invalid_grant means the service account
    key is wrong, revoked or deleted: configuration."""
    if retryable:
        return PushResult(Outcome.RETRY, "oauth token endpoint unavailable")
    return PushResult(Outcome.CONFIG_ERROR, "oauth token refused (service account key)")


def _token_failure(error: BaseException) -> PushResult | None:
    """A google-auth failure, raised directly or wrapped by the library in UnknownError."""
    seen: BaseException | None = error
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, RefreshError):
            return classify_token_failure(bool(getattr(seen, "retryable", False)))
        if isinstance(seen, TransportError):
            return classify_token_failure(True)
        if isinstance(seen, GoogleAuthError):
            return classify_token_failure(False)
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    return None


def _reason(error: exceptions.FirebaseError) -> str:
    """A short reason for logs and metrics: the error code, never the request or token."""
    code = getattr(error, "code", "") or type(error).__name__
    return f"{type(error).__name__} ({code})"


def render_fcm(token: str, notification: Notification, ttl_s: int) -> messaging.Message:
    """One FCM message: localisation keys and no text unless the user turned previews on."""
    android_notification = messaging.AndroidNotification(
        body_loc_key=notification.loc_key,
        title_loc_key=f"{notification.loc_key}.title",
        body=notification.body,
        tag=notification.collapse_id,  # replaces the shown notification of the same match
        notification_count=notification.badge,
        visibility="private",  # a secure lock screen shows no content
    )
    android = messaging.AndroidConfig(collapse_key=notification.collapse_id, priority="high",
                                      ttl=ttl_s, notification=android_notification)
    data = {str(k): v if isinstance(v, str) else json.dumps(v)
            for k, v in notification.data.items()}
    message = messaging.Message(data=data or None, android=android)
    # `Message(token=...)` warns since 7.5 and points to `fid`, which is a Firebase
    # installation id, not the registration token the app registers; FCM v1 still takes
    # `token`. The attribute is what the encoder reads; setting it after construction skips
    # the warning without touching the process-wide warning filters.
    message.token = token
    return message


class ThreadedCredentialAuth(httpx.Auth):
    """firebase-admin's auth flow refreshes the OAuth token with a blocking `requests` call
    on the event loop, when the token is stale and again after each 401 (twice). This flow
    does the same refreshes in a worker thread, one at a time, and retries a 401 once."""

    def __init__(self, credential: Any, session: requests.Session) -> None:
        self.credential = credential
        self.session = session
        self.lock = asyncio.Lock()
        self.refreshes = 0

    async def _refresh(self, stale_token: str | None) -> None:
        async with self.lock:
            if self.credential.valid and self.credential.token != stale_token:
                return  # another request refreshed it meanwhile
            await asyncio.to_thread(self.credential.refresh,
                                    google_auth_requests.Request(self.session))
            self.refreshes += 1

    async def async_auth_flow(
            self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        original = request.headers.copy()
        for attempt in range(2):
            if not self.credential.valid:
                await self._refresh(None)
            request.headers = original.copy()
            used = self.credential.token
            # Applies the bearer (and google-auth's extra headers); refreshes nothing now.
            self.credential.before_request(google_auth_requests.Request(self.session),
                                           request.method, str(request.url), request.headers)
            response = yield request
            if response.status_code != 401 or attempt == 1:
                return
            await self._refresh(used)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request,
                                                                   httpx.Response, None]:
        raise RuntimeError("FcmPusher sends with an async client only")
        yield request  # pragma: no cover (makes this a generator)


class FcmPusher:
    """One firebase App (own name, own credentials) for one Firebase project."""

    provider = "fcm"

    def __init__(self, *, service_account: dict[str, Any] | str,
                 project_id: str | None = None, fcm_url: str | None = None,
                 timeout_s: float = 10.0, app_name: str | None = None,
                 ttl_s: int = DEFAULT_TTL_S) -> None:
        self._service_account = service_account
        self.project_id = project_id
        self.fcm_url = fcm_url
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.app_name = app_name or f"rendezvous-fcm-{uuid.uuid4().hex[:12]}"
        self._app: firebase_admin.App | None = None
        self._service: Any = None  # firebase_admin.messaging._MessagingService
        self._auth_session: requests.Session | None = None  # token endpoint connections
        self.auth: ThreadedCredentialAuth | None = None

    async def start(self) -> None:
        if self._app is not None:
            return
        account = self._service_account
        if isinstance(account, str):
            account = json.loads(await asyncio.to_thread(Path(account).read_text))
        certificate = credentials.Certificate(account)
        options: dict[str, Any] = {"httpTimeout": self.timeout_s}
        if self.project_id:
            options["projectId"] = self.project_id
        app = firebase_admin.initialize_app(certificate, options, name=self.app_name)
        service = messaging._get_messaging_service(app)
        if self.fcm_url:
            url = self.fcm_url
            service._fcm_url = url.format(service._project_id) if "{" in url else url
        # Retries belong to the dispatcher (backoff, Retry-After, a durable queue); the
        # library's own 4 retries with backoff would hold a send slot for seconds. The
        # client is made without the library's credential flow: ours refreshes in a thread.
        default_client = service._async_client
        client = HttpxAsyncClient(credential=None, timeout=self.timeout_s,
                                  retry_config=HttpxRetry(max_retries=0))
        session = requests.Session()
        self.auth = ThreadedCredentialAuth(service._credential, session)
        client.async_client.auth = self.auth
        service._async_client = client
        await default_client.aclose()
        self._app, self._service, self._auth_session = app, service, session

    async def close(self) -> None:
        app, service = self._app, self._service
        self._app = self._service = self.auth = None
        if service is not None:
            await service._async_client.aclose()  # on this loop, where it was used
        session, self._auth_session = self._auth_session, None
        if session is not None:
            session.close()
        if app is not None:
            # delete_app closes the service with asyncio.run(): not inside a running loop.
            await asyncio.to_thread(firebase_admin.delete_app, app)

    async def send(self, device: Device, notification: Notification) -> PushResult:
        return (await self.send_many([device], notification))[0]

    async def send_many(self, devices: list[Device],
                        notification: Notification) -> list[PushResult]:
        """One `send_each_async` batch for several devices (at most 500), a result each."""
        if not devices:
            return []
        if len(devices) > MAX_BATCH:
            results: list[PushResult] = []
            for start in range(0, len(devices), MAX_BATCH):
                results += await self.send_many(devices[start:start + MAX_BATCH], notification)
            return results
        if self._app is None:
            return [PushResult(Outcome.RETRY, "fcm pusher not started")] * len(devices)
        try:
            messages = [render_fcm(d.token, notification, self.ttl_s) for d in devices]
        except ValueError as exc:
            return [PushResult(Outcome.REJECTED, f"invalid message: {exc}")] * len(devices)
        try:
            async with asyncio.timeout(self.timeout_s):
                batch = await self._send_batch(messages)
        except TimeoutError:
            return [PushResult(Outcome.RETRY, "timeout")] * len(devices)
        except Exception as exc:  # the whole batch failed: token endpoint, transport
            return [classify_fcm(exc)] * len(devices)
        return [classify_fcm(response.exception) for response in batch.responses]

    async def _send_batch(self, messages: list[messaging.Message]) -> messaging.BatchResponse:
        return await messaging.send_each_async(messages, app=self._app)
