"""An FCM v1 look-alike plus the OAuth2 token endpoint of a Google service account.

firebase-admin fetches its access token synchronously (google-auth over `requests`) from
inside its httpx flow, so this server runs in its own threads, never on the test's event
loop. The token endpoint verifies the RS256 assertion signed with the service account key it
handed out and issues opaque bearer tokens; the send endpoint answers 401 to any other
bearer. Errors have the real v1 shape: `{"error": {code, message, status, details:
[{"@type": ".../google.firebase.fcm.v1.FcmError", "errorCode": ...}]}}`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

from tests.push_servers.tls import public_key_pem, rsa_private_key_pem

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
# errorCode -> (canonical gRPC status, the message the real service sends)
ERROR_CODES: dict[str, tuple[str, str]] = {
    "UNREGISTERED": ("NOT_FOUND", "Requested entity was not found."),
    "QUOTA_EXCEEDED": ("RESOURCE_EXHAUSTED", "Quota exceeded for sending messages."),
    "SENDER_ID_MISMATCH": ("PERMISSION_DENIED", "SenderId mismatch"),
    "THIRD_PARTY_AUTH_ERROR": ("UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
    "UNAVAILABLE": ("UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": ("INTERNAL", "Internal error encountered."),
    "INVALID_ARGUMENT": ("INVALID_ARGUMENT", "Request contains an invalid argument."),
}
# google-auth signs its assertion for Google's token URI even when token_uri points elsewhere.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# What FCM answers (400 INVALID_ARGUMENT) for a string that is not a registration token.
INVALID_TOKEN_MESSAGE = "The registration token is not a valid FCM registration token"


@dataclass
class FcmRequest:
    token: str
    message: dict[str, Any]
    headers: dict[str, str]


@dataclass
class _Answer:
    status: int
    error_code: str
    message: str | None
    retry_after: int | None
    times: int


class FcmLookalike:
    """Start, point an `FcmPusher` at it with `pusher_kwargs()`, read `requests`."""

    def __init__(self, project_id: str = "rdv-test") -> None:
        self.project_id = project_id
        self.client_email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        self.private_key_pem = rsa_private_key_pem()
        self._public_pem = public_key_pem(self.private_key_pem)
        self.private_key_id = secrets.token_hex(20)
        self.requests: list[FcmRequest] = []  # every authorised send request, in order
        self.token_requests = 0  # calls to the token endpoint, whatever their answer
        self.unauthorised = 0  # send requests answered 401
        self.token_endpoint_status = 200
        self.port = 0
        self.fcm_url = ""
        self.token_uri = ""
        self._issued: set[str] = set()
        self._scripts: dict[str, deque[_Answer]] = {}
        self._lock = threading.Lock()  # handlers run in server threads
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        httpd = _Server(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = httpd.server_address[1]
        base = f"http://127.0.0.1:{self.port}"
        self.fcm_url = base + "/v1/projects/{0}/messages:send"
        self.token_uri = base + "/token"
        self._thread = threading.Thread(target=httpd.serve_forever, name="fcm-lookalike",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            await asyncio.to_thread(httpd.shutdown)
            httpd.server_close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
            self._thread = None

    def script(self, token: str, status: int, error_code: str, *,
               retry_after: int | None = None, times: int = 1,
               message: str | None = None) -> None:
        """The next `times` sends to `token` get this error; later ones succeed."""
        if error_code not in ERROR_CODES:
            raise ValueError(f"unknown FCM error code {error_code!r}")
        with self._lock:
            self._scripts.setdefault(token, deque()).append(
                _Answer(status, error_code, message, retry_after, times))

    def revoke_tokens(self) -> None:
        """Forget every access token issued so far: the next sends get 401."""
        with self._lock:
            self._issued.clear()

    def service_account(self) -> dict[str, Any]:
        return {"type": "service_account", "project_id": self.project_id,
                "private_key_id": self.private_key_id, "private_key": self.private_key_pem,
                "client_email": self.client_email, "client_id": "1234567890",
                "token_uri": self.token_uri}

    def pusher_kwargs(self) -> dict[str, Any]:
        return {"service_account": self.service_account(), "project_id": self.project_id,
                "fcm_url": self.fcm_url}

    # -- answering (server threads) --------------------------------------------------------

    def issue_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_requests += 1
            status = self.token_endpoint_status
        if status >= 500:
            return status, {"error": "internal_failure",
                            "error_description": "token service unavailable"}
        if status != 200:
            return status, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(form.get("assertion", ""), self._public_pem,
                                algorithms=["RS256"], audience=[self.token_uri, GOOGLE_TOKEN_URI])
        except jwt.PyJWTError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if claims.get("iss") != self.client_email:
            return 400, {"error": "invalid_grant", "error_description": "Invalid issuer."}
        token = "ya29." + secrets.token_urlsafe(24)
        with self._lock:
            self._issued.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def send(self, path: str, headers: dict[str, str],
             body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path != f"/v1/projects/{self.project_id}/messages:send":
            return 404, _error(404, "NOT_FOUND", "Requested entity was not found.", None), {}
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        with self._lock:
            authorised = scheme.lower() == "bearer" and bearer in self._issued
            if not authorised:
                self.unauthorised += 1
        if not authorised:
            return 401, _error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                               "credentials.", None), {}
        try:
            message = json.loads(body)["message"]
            token = message["token"]
        except (ValueError, KeyError, TypeError):
            return 400, _error(400, "INVALID_ARGUMENT", "Request contains an invalid "
                               "argument.", "INVALID_ARGUMENT"), {}
        with self._lock:
            self.requests.append(FcmRequest(token, message, headers))
            scripted = self._scripts.get(token)
            answer = scripted[0] if scripted else None
            if scripted and answer is not None:
                answer.times -= 1
                if answer.times <= 0:
                    scripted.popleft()
        if answer is None:
            name = f"projects/{self.project_id}/messages/0:{time.time_ns()}"
            return 200, {"name": name}, {}
        status_name, default_message = ERROR_CODES[answer.error_code]
        extra = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else {}
        return answer.status, _error(answer.status, status_name,
                                     answer.message or default_message, answer.error_code), extra


def _error(code: int, status: str, message: str, error_code: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if error_code is not None:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
    return {"error": error}


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # socketserver's 5 drops connection bursts (benchmark)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: httpx and requests reuse connections
    disable_nagle_algorithm = True  # headers and body go out without a delayed-ACK wait
    server_owner: FcmLookalike

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        extra: dict[str, str] = {}
        if self.path == "/token":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            status, answer = self.server_owner.issue_token(form)
        else:
            status, answer, extra = self.server_owner.send(self.path, headers, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: test output stays readable


async def _serve_until_stdin_closes() -> None:
    """`python -m tests.push_servers.fcm`: a look-alike in its own process (the benchmark
    uses it so the server's threads do not share a GIL with the client under test).
    Prints `pusher_kwargs()` as one JSON line, serves until stdin closes."""
    import sys

    server = FcmLookalike()
    await server.start()
    print(json.dumps(server.pusher_kwargs()), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await server.stop()


if __name__ == "__main__":
    asyncio.run(_serve_until_stdin_closes())
