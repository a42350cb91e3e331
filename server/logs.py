"""Structured logs: one JSON object per line, with the node and the request or connection.

Every line carries `ts`, `level`, `logger`, `msg` and `node`, plus `request_id` (HTTP) or
`conn_id` (WebSocket) when the line was written while serving one: both live in context
variables, so code deep in a request logs them without passing them along. Fields given with
`extra=` become keys of the object.

Nothing in the code logs message bodies, JWTs or push tokens; `ScrubFilter` is the defence
in depth for the day someone does: it redacts sensitive `extra` keys and anything in a
message or traceback that looks like a JWT, a bearer credential or a push token.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id",
                                                                        default=None)
CONNECTION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("conn_id",
                                                                          default=None)
LOG_FORMATS = ("auto", "json", "text")
REDACTED = "[redacted]"

# `extra=` keys whose values never reach the output (compared lower-cased).
SENSITIVE_KEYS = frozenset({"body", "text", "token", "authorization", "push_token", "jwt",
                            "password", "secret", "device_token", "media", "preview"})
_SECRETS = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[jwt]"),
    (re.compile(r"(?i)\b(bearer)\s+\S+"), r"\1 [redacted]"),
    (re.compile(r"\b[0-9a-fA-F]{64}\b"), "[hex64]"),  # the shape of an APNS device token
    (re.compile(r"\b[A-Za-z0-9_-]{20,}:[A-Za-z0-9_-]{100,}"), "[fcm-token]"),
    (re.compile(r"(/v1/devices/)(?!\{token\})[^/\s\"'?]+"), r"\1[redacted]"),  # raw paths
)
# Third-party loggers whose debug output carries frames or headers, or that log every
# connection (the gateway's own debug lines do, with the connection id): never below these.
QUIET_LOGGERS = {"websockets": logging.WARNING, "uvicorn.access": logging.WARNING,
                 "httpx": logging.WARNING, "httpcore": logging.INFO, "hpack": logging.WARNING,
                 "h2": logging.WARNING, "aioapns": logging.INFO, "asyncio": logging.INFO,
                 "cassandra": logging.INFO, "firebase_admin": logging.INFO,
                 "urllib3": logging.INFO}
# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "node", "request_id", "conn_id",
    "color_message"}  # uvicorn's ANSI-coloured copy of msg
_REQUEST_ID_OK = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def scrub(text: str) -> str:
    """`text` with anything that looks like a credential replaced."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _scrub_value(key: str, value: Any) -> Any:
    """An `extra=` value fit for the log: redacted by key, else scrubbed all the way down."""
    lowered = key.lower()
    if lowered in SENSITIVE_KEYS or lowered.endswith(("_token", "_secret")):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {str(k): _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(key, v) for v in value]
    return scrub(repr(value) if isinstance(value, bytes | bytearray) else str(value))


class ScrubFilter(logging.Filter):
    """Redacts credentials and bodies on every record, then stamps the context ids."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node
        self._traceback = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, _scrub_value(key, value))
        record.node = self.node
        record.request_id = REQUEST_ID.get()
        record.conn_id = CONNECTION_ID.get()
        return True


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record got from `extra=`."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line (newlines inside values are escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(), "node": getattr(record, "node", None)}
        for key in ("request_id", "conn_id"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        for key, value in extras(record).items():
            out.setdefault(key, value)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = scrub(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the same ids and extras appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: getattr(record, k, None) for k in ("request_id", "conn_id")}
        fields.update(extras(record))
        tail = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        if not tail:
            return line
        head, sep, trace = line.partition("\n")
        return f"{head} [{tail}]{sep}{trace}"


def resolve_format(log_format: str, stream: TextIO) -> str:
    """`auto` is text on a terminal and JSON otherwise (containers, systemd, files)."""
    if log_format != "auto":
        return log_format
    return "text" if stream.isatty() else "json"


def setup_logging(level: str, log_format: str, node: str,
                  stream: TextIO | None = None) -> None:
    """Route every logger to one stderr handler with scrubbing and the chosen format."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubFilter(node))
    handler.setFormatter(JsonFormatter() if resolve_format(log_format, stream) == "json"
                         else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # a warning is a log line too, not raw text on stderr
    for name, floor in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, root.level))


def new_connection_id() -> str:
    """A fresh id for one WebSocket connection, bound to the current task's context."""
    conn_id = uuid.uuid4().hex[:16]
    CONNECTION_ID.set(conn_id)
    return conn_id


class RequestIds:
    """ASGI middleware: take the client's `X-Request-Id` (if it is a sane token) or make
    one, keep it in the context for the request's log lines, echo it in the response, and
    log each request at debug level with its route template (never the raw path: it may
    hold a push token)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("rendezvous.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID_OK.fullmatch(offered) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.log.debug("http request", extra={
                "method": scope.get("method"), "route": route, "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
            REQUEST_ID.reset(token)
