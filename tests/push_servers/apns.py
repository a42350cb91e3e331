"""An APNS look-alike: HTTP/2 over TLS on 127.0.0.1, answering as Apple documents.

It checks what Apple checks and the tests rely on: the ES256 provider token (signed by the
key it handed out, with its key id and team id) or, with certificate auth, a client
certificate from its CA; the `apns-topic`. Answers echo `apns-id`; an error is one DATA frame
of `{"reason": ...}` (plus `timestamp` for 410), as the real service sends it and as aioapns
expects it. `script` makes the next requests for a token fail in a chosen way.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import jwt

from tests.push_servers.h2_server import H2ServerProtocol, H2Stream
from tests.push_servers.tls import TestPki, ec_private_key_pem, make_pki, public_key_pem

TOPIC = "com.example.rendezvous"
KEY_ID = "ABC123DEFG"
TEAM_ID = "DEF123GHIJ"


@dataclass
class ApnsRequest:
    token: str
    headers: dict[str, str]
    payload: dict[str, Any]
    at: float = 0.0  # time.time() when it was answered
    status: int = 200  # what the look-alike answered


@dataclass
class _Answer:
    status: int
    reason: str
    retry_after: int | None
    times: int


class ApnsLookalike:
    """Start, point an `ApnsPusher` at it with `pusher_kwargs()`, read `requests`."""

    def __init__(self) -> None:
        self.topic = TOPIC
        self.key_id = KEY_ID
        self.team_id = TEAM_ID
        self.key_pem = ec_private_key_pem()
        self._public_pem = public_key_pem(self.key_pem)
        self.requests: list[ApnsRequest] = []  # every authenticated request, in order
        self.auth_failures = 0  # requests answered 403 for their credentials
        self.port = 0
        self.server = ""
        self.ca_file = ""
        self._pki: TestPki | None = None
        self._server: asyncio.Server | None = None
        self._scripts: dict[str, deque[_Answer]] = {}
        self._connections: set[H2ServerProtocol] = set()
        self._verified: dict[str, float] = {}  # provider tokens that passed: their iat

    @property
    def client_cert_pem(self) -> str:
        """Certificate and key for certificate auth (`ApnsPusher(cert_pem=...)`)."""
        assert self._pki is not None, "start() first"
        return self._pki.client_cert_pem

    async def start(self) -> None:
        self._pki = await asyncio.to_thread(make_pki, self.topic)
        context = self._pki.server_context(alpn=["h2"], client_certs=True)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ApnsServerProtocol(self),
                                                "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        self.server = f"127.0.0.1:{self.port}"
        self.ca_file = self._pki.ca_file

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close()
            await self._server.wait_closed()
            self._server = None
        if self._pki is not None:
            await asyncio.to_thread(self._pki.cleanup)
            self._pki = None

    def script(self, token: str, status: int, reason: str, *, retry_after: int | None = None,
               times: int = 1) -> None:
        """The next `times` requests for `token` get this answer; later ones get 200."""
        self._scripts.setdefault(token, deque()).append(_Answer(status, reason, retry_after,
                                                                times))

    def pusher_kwargs(self) -> dict[str, Any]:
        return {"topic": self.topic, "key_pem": self.key_pem, "key_id": self.key_id,
                "team_id": self.team_id, "server": self.server, "ca_file": self.ca_file}

    # -- answering -------------------------------------------------------------------------

    def answer(self, stream: H2Stream, client_cert: bool) -> tuple[int, str, int | None]:
        """Status, reason and Retry-After for one complete request."""
        headers = stream.headers
        path = headers.get(":path", "")
        if headers.get(":method") != "POST":
            return 405, "MethodNotAllowed", None
        if not path.startswith("/3/device/"):
            return 404, "BadPath", None
        auth = self._check_auth(headers.get("authorization"), client_cert)
        if auth:
            self.auth_failures += 1
            return 403, auth, None
        token = path.removeprefix("/3/device/")
        try:
            payload = json.loads(stream.body) if stream.body else {}
        except ValueError:
            payload = {}
        request = ApnsRequest(token, dict(headers), payload, time.time())
        self.requests.append(request)
        request.status, reason, retry_after = self._answer_for(token, headers, stream.body,
                                                               payload)
        return request.status, reason, retry_after

    def _answer_for(self, token: str, headers: dict[str, str], body: bytearray,
                    payload: dict[str, Any]) -> tuple[int, str, int | None]:
        topic = headers.get("apns-topic")
        if not topic:
            return 400, "MissingTopic", None
        if topic != self.topic:
            return 400, "TopicDisallowed", None
        if len(body) > 4096:
            return 413, "PayloadTooLarge", None
        if not payload:
            return 400, "PayloadEmpty", None
        scripted = self._scripts.get(token)
        if scripted:
            answer = scripted[0]
            answer.times -= 1
            if answer.times <= 0:
                scripted.popleft()
            return answer.status, answer.reason, answer.retry_after
        return 200, "", None

    def _check_auth(self, authorization: str | None, client_cert: bool) -> str:
        """"" when the request may go on, else the 403 reason Apple would give."""
        if authorization is None:
            return "" if client_cert else "MissingProviderToken"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "InvalidProviderToken"
        issued = self._verified.get(token)  # Apple too checks a provider token once
        if issued is not None:
            return "ExpiredProviderToken" if issued < time.time() - 3600 else ""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self._public_pem, algorithms=["ES256"],
                                options={"require": ["iss", "iat"]})
        except jwt.PyJWTError:
            return "InvalidProviderToken"
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return "InvalidProviderToken"
        if claims["iat"] < time.time() - 3600:
            return "ExpiredProviderToken"
        if len(self._verified) < 100:
            self._verified[token] = float(claims["iat"])
        return ""


class _ApnsServerProtocol(H2ServerProtocol):
    """One client connection; notes whether it presented a client certificate."""

    def __init__(self, owner: ApnsLookalike) -> None:
        super().__init__(owner._connections)
        self.owner = owner
        self.client_cert = False

    def tls_established(self, ssl_object: ssl.SSLObject | None) -> None:
        self.client_cert = bool(ssl_object.getpeercert()) if ssl_object is not None else False

    def respond(self, stream_id: int, stream: H2Stream) -> None:
        status, reason, retry_after = self.owner.answer(stream, self.client_cert)
        headers = [(":status", str(status)),
                   ("apns-id", stream.headers.get("apns-id", ""))]
        if retry_after is not None:
            headers.append(("retry-after", str(retry_after)))
        if status == 200:
            self.conn.send_headers(stream_id, headers, end_stream=True)
            return
        error: dict[str, Any] = {"reason": reason}
        if status == 410:
            error["timestamp"] = int(time.time() * 1000)
        body = json.dumps(error).encode()
        headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        self.conn.send_headers(stream_id, headers)
        self.conn.send_data(stream_id, body, end_stream=True)  # one DATA frame
