"""Firebase Cloud Messaging (HTTP v1) through firebase-admin: render, send, classify.

Sends go through the library's public async API, `messaging.send_each_async` (one HTTP/2
request per message over its httpx client, all of a call at once, at most 500 per call).
Around it, with public APIs only:

- the OAuth access token is fetched in a worker thread before a send needs it (the library
  would fetch it synchronously, on the event loop): the App's credential is a google-auth
  service account credential of ours that never does a token request on the event loop;
- after a 401 the library asks that credential for a new token; it notes the refusal
  instead, and the adapter fetches a new token in a thread and sends the refused messages
  once more;
- every answer becomes an `Outcome` (docs/push.md has the table).

Sending uses no private part of the library. Two private attributes are read outside the
send path, each checked: the send URL, set only when `fcm_url` points the adapter at a
relay or a test server (firebase-admin has no endpoint setting), and the httpx client,
closed on this loop at `close()` (`delete_app` would close it from another loop).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import firebase_admin
import requests
from firebase_admin import exceptions, messaging
from google.auth.credentials import TokenState
from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError
from google.auth.transport import requests as google_auth_requests
from google.oauth2 import service_account

from push.base import Notification, Outcome, PushResult, retry_after_seconds
from storage import Device

DEFAULT_TTL_S = 24 * 3600
MAX_BATCH = 500  # send_each_async's limit
FCM_SCOPES = ("https://www.googleapis.com/auth/firebase.messaging",)
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


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LoopSafeCredentials(service_account.Credentials):
    """A service account credential that never fetches a token on the event loop.

    firebase-admin's httpx auth flow refreshes a stale token, and fetches a new one after
    each 401 (twice), with a blocking `requests` call in the middle of the event loop. Here
    a refresh asked for on the loop does no I/O: the current token is used as it is (the
    adapter keeps it fresh from a thread, well before it expires), and after a 401 the
    refused token is noted, for the adapter to replace it in a thread and send again."""

    refused: str | None = None  # the access token a 401 refused, until it is replaced

    def refresh(self, request: Any) -> None:
        if _on_event_loop():
            if self.token is not None:
                self.refused = self.token
            return
        super().refresh(request)  # type: ignore[no-untyped-call]
        self.refused = None

    def needs_token(self) -> bool:
        return (self.token is None or self.refused == self.token
                or self.token_state is not TokenState.FRESH)


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
        self.credential: LoopSafeCredentials | None = None
        self._auth_session: requests.Session | None = None  # token endpoint connections
        self._refreshing: asyncio.Task[None] | None = None
        self.refreshes = 0  # access tokens fetched

    async def start(self) -> None:
        if self._app is not None:
            return
        account = self._service_account
        if isinstance(account, str):
            account = json.loads(await asyncio.to_thread(Path(account).read_text))
        credential = LoopSafeCredentials.from_service_account_info(  # type: ignore[no-untyped-call]
            account, scopes=FCM_SCOPES)
        project_id = self.project_id or account.get("project_id")
        options: dict[str, Any] = {"httpTimeout": self.timeout_s}
        if project_id:
            options["projectId"] = project_id
        app = firebase_admin.initialize_app(credential, options, name=self.app_name)
        try:
            if self.fcm_url:
                _point_at(app, self.fcm_url)
        except Exception:
            await asyncio.to_thread(firebase_admin.delete_app, app)
            raise
        self._app, self.credential = app, credential
        self._auth_session = requests.Session()

    async def close(self) -> None:
        app, self._app = self._app, None
        if self._refreshing is not None:
            await asyncio.gather(self._refreshing, return_exceptions=True)
            self._refreshing = None
        session, self._auth_session = self._auth_session, None
        if session is not None:
            session.close()
        if app is not None:
            await _close_client(app)
            # delete_app closes the services with asyncio.run(): not in a running loop.
            await asyncio.to_thread(firebase_admin.delete_app, app)

    async def send(self, device: Device, notification: Notification) -> PushResult:
        return (await self.send_many([device], notification))[0]

    async def send_many(self, devices: list[Device],
                        notification: Notification) -> list[PushResult]:
        """One `send_each_async` call for several devices (at most 500), a result each."""
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
                return await self._send_messages(messages)
        except TimeoutError:
            return [PushResult(Outcome.RETRY, "timeout")] * len(devices)

    async def _send_messages(self, messages: list[messaging.Message]) -> list[PushResult]:
        failed = await self._ensure_token()
        if failed is not None:
            return [failed] * len(messages)
        results = await self._send_batch(messages)
        refused = [i for i, (_, error) in enumerate(results) if _refused(error)]
        if refused and self.credential is not None and self.credential.refused is not None:
            # The access token was refused (revoked, or expired early): a new one, from a
            # thread, and the refused messages once more; a second 401 is final.
            failed = await self._ensure_token()
            again = ([(failed, None)] * len(refused) if failed is not None
                     else await self._send_batch([messages[i] for i in refused]))
            for i, answer in zip(refused, again, strict=True):
                results[i] = answer
        return [result for result, _ in results]

    async def _send_batch(self, messages: list[messaging.Message]
                          ) -> list[tuple[PushResult, BaseException | None]]:
        try:
            batch = await messaging.send_each_async(messages, app=self._app)
        except Exception as exc:  # the whole call failed: token, transport, encoding
            return [(classify_fcm(exc), exc)] * len(messages)
        return [(classify_fcm(r.exception), r.exception) for r in batch.responses]

    async def _ensure_token(self) -> PushResult | None:
        """A fresh access token before a send, fetched in a worker thread (one fetch at a
        time, shared by the sends that wait for it); the failure if it cannot be had."""
        credential = self.credential
        if credential is None:
            return PushResult(Outcome.RETRY, "fcm pusher not started")
        if not credential.needs_token():
            return None
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(
                self._refresh(credential), name="fcm-token-refresh")
        try:
            await asyncio.shield(self._refreshing)
        except Exception as exc:
            if credential.token is not None and credential.token_state is not \
                    TokenState.INVALID and credential.refused != credential.token:
                return None  # a stale token still works until it expires: try again later
            return classify_fcm(exc)
        return None

    async def _refresh(self, credential: LoopSafeCredentials) -> None:
        request = google_auth_requests.Request(self._auth_session)
        await asyncio.to_thread(credential.refresh, request)
        self.refreshes += 1


def _refused(error: BaseException | None) -> bool:
    """A 401 for our access token (not THIRD_PARTY_AUTH_ERROR: the app's APNs key)."""
    return (isinstance(error, exceptions.UnauthenticatedError)
            and not isinstance(error, messaging.ThirdPartyAuthError))


def _point_at(app: firebase_admin.App, url: str) -> None:
    """Send to `url` instead of Google's endpoint. firebase-admin has no setting for it:
    this sets the URL its messaging service keeps (the one private attribute the adapter
    uses, and only with `fcm_url`); a library without it stops the start, naming it."""
    service = messaging._get_messaging_service(app)
    if not isinstance(getattr(service, "_fcm_url", None), str):
        raise RuntimeError(f"fcm_url: firebase-admin {firebase_admin.__version__} keeps its "
                           "send URL elsewhere; the setting cannot be applied")
    project_id = getattr(service, "_project_id", "")
    service._fcm_url = url.format(project_id) if "{" in url else url


async def _close_client(app: firebase_admin.App) -> None:
    """Close the messaging service's httpx client on this loop, where its connections live.
    `delete_app` closes it with `asyncio.run` in a thread (it cannot run in a running loop),
    whose loop may not touch this loop's transports. There is no public way to the client:
    the attribute is read if it is there (after this, `delete_app`'s close is a no-op)."""
    service = messaging._get_messaging_service(app)
    client = getattr(service, "_async_client", None)
    close = getattr(client, "aclose", None)
    if close is not None:
        await close()
