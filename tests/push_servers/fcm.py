"""An FCM v1 look-alike plus the OAuth2 token endpoint of a Google service account.

The send endpoint speaks what firebase-admin sends to Google: HTTP/2 over TLS (its httpx
client is made with `http2=True`, and ALPN picks h2), served by the h2 library on an asyncio
loop, like the APNS look-alike. The client trusts the look-alike's throw-away CA through
`SSL_CERT_FILE` (`ca_file`), the standard setting httpx reads when it makes its SSL context.
The token endpoint is plain HTTP/1.1 from a thread: google-auth fetches tokens synchronously
over `requests` (the adapter does it in a worker thread, but a test may not). It verifies the
RS256 assertion signed with the service account key it handed out and issues opaque bearer
tokens; the send endpoint answers 401 to any other bearer. Errors have the real v1 shape:
`{"error": {code, message, status, details: [{"@type": ".../google.firebase.fcm.v1.FcmError",
"errorCode": ...}]}}`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

from tests.push_servers.h2_server import H2ServerProtocol, H2Stream
from tests.push_servers.tls import TestPki, make_pki, public_key_pem, rsa_private_key_pem

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
    at: float = 0.0  # time.time() when it was answered
    status: int = 200  # what the look-alike answered


@dataclass
class _Answer:
    status: int
    error_code: str
    message: str | None
    retry_after: int | None
    times: int


class FcmLookalike:
    """Start, point an `FcmPusher` at it with `pusher_kwargs()` (and trust `ca_file` through
    `SSL_CERT_FILE`: `client_env()`), read `requests`."""

    def __init__(self, project_id: str = "rdv-test") -> None:
        self.project_id = project_id
        self.client_email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        self.private_key_pem = rsa_private_key_pem()
        self._public_pem = public_key_pem(self.private_key_pem)
        self.private_key_id = secrets.token_hex(20)
        self.requests: list[FcmRequest] = []  # every authorised send request, in order
        self.token_requests = 0  # calls to the token endpoint, whatever their answer
        self.unauthorised = 0  # send requests answered 401
        self.protocols: set[str] = set()  # ALPN protocols the send endpoint negotiated
        self.token_endpoint_status = 200
        self.port = 0
        self.fcm_url = ""
        self.token_uri = ""
        self.ca_file = ""
        self._issued: set[str] = set()
        self._scripts: dict[str, deque[_Answer]] = {}
        self._lock = threading.Lock()  # the token endpoint answers from server threads
        self._pki: TestPki | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[H2ServerProtocol] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        self._pki = await asyncio.to_thread(make_pki)
        context = self._pki.server_context(alpn=["h2"])
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _FcmServerProtocol(self),
                                                "127.0.0.1", 0, ssl=context, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]
        self.fcm_url = f"https://127.0.0.1:{self.port}" + "/v1/projects/{0}/messages:send"
        self.ca_file = self._pki.ca_file

        owner = self

        class Handler(_TokenHandler):
            server_owner = owner

        httpd = _Server(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.token_uri = f"http://127.0.0.1:{httpd.server_address[1]}/token"
        self._thread = threading.Thread(target=httpd.serve_forever, name="fcm-token-endpoint",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close()
            await self._server.wait_closed()
            self._server = None
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            await asyncio.to_thread(httpd.shutdown)
            httpd.server_close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
            self._thread = None
        if self._pki is not None:
            await asyncio.to_thread(self._pki.cleanup)
            self._pki = None

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

    def client_env(self) -> dict[str, str]:
        """What a client process needs to trust the send endpoint's certificate: httpx
        (firebase-admin's transport) reads `SSL_CERT_FILE` when it makes its SSL context."""
        return {"SSL_CERT_FILE": self.ca_file}

    # -- answering -------------------------------------------------------------------------

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

    def send(self, method: str, path: str, headers: dict[str, str],
             body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON answer and extra headers for one complete send request."""
        if method != "POST" or path != f"/v1/projects/{self.project_id}/messages:send":
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
        request = FcmRequest(token, message, headers, time.time())
        with self._lock:
            self.requests.append(request)
            scripted = self._scripts.get(token)
            answer = scripted[0] if scripted else None
            if scripted and answer is not None:
                answer.times -= 1
                if answer.times <= 0:
                    scripted.popleft()
        if answer is None:
            name = f"projects/{self.project_id}/messages/0:{time.time_ns()}"
            return 200, {"name": name}, {}
        request.status = answer.status
        status_name, default_message = ERROR_CODES[answer.error_code]
        extra = {"retry-after": str(answer.retry_after)} if answer.retry_after is not None else {}
        return answer.status, _error(answer.status, status_name,
                                     answer.message or default_message, answer.error_code), extra


def _error(code: int, status: str, message: str, error_code: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if error_code is not None:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
    return {"error": error}


class _FcmServerProtocol(H2ServerProtocol):
    """One client connection of the send endpoint; notes the ALPN protocol it chose."""

    def __init__(self, owner: FcmLookalike) -> None:
        super().__init__(owner._connections)
        self.owner = owner

    def tls_established(self, ssl_object: ssl.SSLObject | None) -> None:
        protocol = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        self.owner.protocols.add(protocol or "none")

    def respond(self, stream_id: int, stream: H2Stream) -> None:
        headers = stream.headers
        status, answer, extra = self.owner.send(headers.get(":method", ""),
                                                headers.get(":path", ""), headers,
                                                bytes(stream.body))
        body = json.dumps(answer).encode()
        self.conn.send_headers(stream_id, [(":status", str(status)),
                                           ("content-type", "application/json; charset=UTF-8"),
                                           ("content-length", str(len(body))),
                                           *extra.items()])
        self.conn.send_data(stream_id, body, end_stream=True)


class _Server(ThreadingHTTPServer):
    request_queue_size = 64


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: requests reuses its connections
    disable_nagle_algorithm = True  # headers and body go out without a delayed-ACK wait
    server_owner: FcmLookalike

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/token":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            status, answer = self.server_owner.issue_token(form)
        else:
            status, answer = 404, {"error": "not_found"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: test output stays readable
