"""Reports: a user reports another to the moderators, with the chat frozen as evidence.

Filing a report blocks the reported user (`MatchService.block`: the match closes, both get
`unmatch`, nothing passes between them afterwards), then copies the last
`report_evidence_msgs` messages between the two into the report's own row. The copy is the
point: unsend, unmatch and either account's erasure rewrite or delete message rows, and
none of them touches a report, which is kept `report_retention_days` and then purged
(docs/privacy.md, "Reports"). The reported user is told nothing: they see the block's
`unmatch`, as after any block, and no report frame exists.

Moderators read reports through the admin endpoints (`check_admin`: a subject listed in
`admin_subjects`, or a token with the `admin` scope). A moderation service can be plugged
in as the `on_report` hook (`ReportHook`), which the node calls after each report is stored,
in a task of its own: the request never waits for it, and its failures are logged by kind
only, never with the report's text.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from protocol.codec import Frame
from protocol.errors import ErrorCode, ProtocolError
from server.config import ConfigError
from server.metrics import Metrics
from server.services.chat import message_entry
from server.services.matching import MatchService
from storage import Store, StoreUnavailable, match_id_for
from storage.base import DAY_MS, REPORT_REASONS, Report, ReportReason

log = logging.getLogger("rendezvous.reports")

NOTE_MAX_CHARS = 1000  # a longer `note` is `too_large` (413)
HOOK_TIMEOUT_S = 30.0  # a hook call still running after this is cancelled
HOOKS_RUNNING_MAX = 256  # past this many hook calls at once, a new one is skipped (logged)
PURGE_RETRY_S = 60.0  # after a purge failed (store down), the next try


class ReportHook(Protocol):
    """`on_report`: called once with each report after it is stored (evidence included).

    It runs in a task of its own, after the reporter was answered, and may be a coroutine
    function (awaited, cancelled after `HOOK_TIMEOUT_S`) or a plain function (which must
    return at once: it runs on the event loop). An exception is logged by type, without
    its message (which could quote the evidence), and counted in
    `rendezvous_report_hook_failures_total`; the report stays stored either way. Plug one
    in with the `report_hook` setting, "package.module:callable" (docs/operations.md).
    """

    def __call__(self, report: Report, /) -> Awaitable[None] | None: ...


def load_hook(path: str | None) -> ReportHook | None:
    """The callable named by the `report_hook` setting ("package.module:attr.attr"), or
    None when unset; `ConfigError` naming the setting when it cannot be imported."""
    if path is None:
        return None
    module_name, _, attrs = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for attr in attrs.split("."):
            target = getattr(target, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"report_hook: cannot load {path!r}: {exc}") from None
    if not callable(target):
        raise ConfigError(f"report_hook: {path!r} is not callable")
    return cast(ReportHook, target)


def report_entry(report: Report) -> Frame:
    """A report as the admin endpoints show it; evidence in the shape of history."""
    entry: Frame = {"id": report.id, "reporter": report.reporter,
                    "reported": report.reported, "reason": report.reason}
    if report.note is not None:
        entry["note"] = report.note
    entry["ts"] = report.ts
    entry["evidence"] = [message_entry(m) for m in report.evidence]
    return entry


class ReportService:
    def __init__(self, *, store: Store, matches: MatchService, metrics: Metrics,
                 evidence_msgs: int, retention_days: int, purge_interval_s: float,
                 admin_subjects: tuple[str, ...] = (), hook: ReportHook | None = None,
                 max_user_chars: int = 64,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.matches = matches  # its `block` is the report's block
        self.metrics = metrics
        self.evidence_msgs = evidence_msgs
        self.retention_ms = retention_days * DAY_MS
        self.purge_interval_s = purge_interval_s
        self.admin_subjects = frozenset(admin_subjects)
        self.hook = hook
        self.max_user_chars = max_user_chars
        self.clock = clock  # injectable: the purge's tests move time, not sleep
        self._hooks: set[asyncio.Task[None]] = set()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- filing ---------------------------------------------------------------------------
    async def report(self, user: str, target: str, reason: str, note: str | None) -> str:
        """File a report of `target` by `user`; its id once it is durable.

        The block comes first: it is idempotent, so a retry after a failure further on
        (the store down: `unavailable`, nothing acknowledged) redoes it harmlessly, and the
        messages it leaves in place are then read as evidence."""
        self._check(user, target, reason, note)
        await self.matches.block(user, target)
        evidence: tuple[Any, ...] = ()
        match = await self.store.get_match(match_id_for(user, target))
        if match is not None and self.evidence_msgs:  # open or closed: the messages stay
            messages, _ = await self.store.history(match.id, None, self.evidence_msgs)
            evidence = tuple(messages)
        report = Report(id="r" + secrets.token_hex(12), reporter=user, reported=target,
                        reason=cast(ReportReason, reason), ts=self.now_ms(), note=note,
                        evidence=evidence)
        await self.store.save_report(report, keep_s=self.retention_ms // 1000)
        self.metrics.reports.labels(reason).inc()
        log.info("report filed", extra={"report": report.id, "reason": reason,
                                        "evidence": len(evidence)})
        self._call_hook(report)
        return report.id

    def _check(self, user: str, target: str, reason: str, note: str | None) -> None:
        if reason not in REPORT_REASONS:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"reason must be one of "
                                f"{', '.join(REPORT_REASONS)}")
        if not 0 < len(target) <= self.max_user_chars or not _encodable(target):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"user must be a user id of 1.."
                                f"{self.max_user_chars} characters")
        if target == user:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "you cannot report yourself")
        if note is not None:
            if len(note) > NOTE_MAX_CHARS:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"note is limited to "
                                    f"{NOTE_MAX_CHARS} characters")
            if not _encodable(note):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "note must be valid text")

    def _call_hook(self, report: Report) -> None:
        if self.hook is None:
            return
        if len(self._hooks) >= HOOKS_RUNNING_MAX:
            self.metrics.report_hook_failures.inc()
            log.warning("report hook skipped: too many calls running",
                        extra={"report": report.id, "running": len(self._hooks)})
            return
        task = asyncio.get_running_loop().create_task(self._run_hook(self.hook, report),
                                                      name=f"report-hook-{report.id}")
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

    async def _run_hook(self, hook: ReportHook, report: Report) -> None:
        try:
            async with asyncio.timeout(HOOK_TIMEOUT_S):
                result = hook(report)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:  # TimeoutError too; never the message: it may quote text
            self.metrics.report_hook_failures.inc()
            log.warning("report hook failed", extra={"report": report.id,
                                                     "error": type(exc).__name__})

    async def close(self, timeout_s: float = 5.0) -> None:
        """Let running hook calls finish (up to `timeout_s`), then cancel the rest."""
        if self._hooks:
            _, pending = await asyncio.wait(set(self._hooks), timeout=timeout_s)
            for task in pending:
                task.cancel()

    # -- moderators -----------------------------------------------------------------------
    def check_admin(self, user: str, scopes: frozenset[str]) -> None:
        """`forbidden` unless the caller is a moderator: listed in `admin_subjects`, or
        holding a token with the `admin` scope."""
        if user not in self.admin_subjects and "admin" not in scopes:
            raise ProtocolError(ErrorCode.FORBIDDEN, "reports are for moderators only")

    async def list(self, limit: int, cursor: str | None) -> dict[str, Any]:
        """Reports within the retention, newest first: `{"reports", "next"?}`."""
        try:
            page = await self.store.list_reports(limit, cursor, since_ts=self._horizon())
        except ValueError:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "cursor is not one from this "
                                "API") from None
        result: dict[str, Any] = {"reports": [report_entry(r) for r in page.items]}
        if page.next is not None:
            result["next"] = page.next
        return result

    async def get(self, report_id: str) -> dict[str, Any]:
        report = await self.store.get_report(report_id)
        if report is None or report.ts < self._horizon():
            raise ProtocolError(ErrorCode.NOT_FOUND, "no report with this id")
        return report_entry(report)

    # -- retention ------------------------------------------------------------------------
    def _horizon(self) -> int:
        """The oldest filing time still kept: reports before it are expired."""
        return self.now_ms() - self.retention_ms

    async def purge(self) -> int:
        """Delete every expired report (and its evidence); how many went."""
        deleted = await self.store.purge_reports(self._horizon())
        self.metrics.reports_purged.inc(deleted)
        if deleted:
            log.info("expired reports purged", extra={"reports": deleted})
        return deleted

    async def keep_purging(self) -> None:
        """The node's purge task: at start, then every `purge_interval_s` (a day by
        default). Every node of a cluster runs it; purges are idempotent."""
        while True:
            wait = self.purge_interval_s
            try:
                await self.purge()
            except StoreUnavailable:
                log.warning("report purge failed: store unavailable; retrying")
                wait = min(wait, PURGE_RETRY_S)
            except Exception:
                log.exception("report purge failed")
            await asyncio.sleep(wait)


def _encodable(text: str) -> bool:
    """Whether `text` can be stored (UTF-8): JSON can carry a lone surrogate, which no
    store takes."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
