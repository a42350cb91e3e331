"""The data export (`GET /v1/me/export`; docs/privacy.md, "Export"): everything the store
holds about one user as one JSON document, written a page at a time.

The document is a list of sections (`SECTIONS`), one top-level key each, in order. A `Whole`
section is read entirely before the first byte goes out: small things (settings, devices,
the list of matches). A `Paged` section is read and written a page at a time while the
client reads (swipes, messages): the stream is an async generator, so a client that reads
slowly holds the next store read back (the transport's flow control waits, the generator
waits with it) and the node keeps about one page in memory whatever the user's history.
Adding a section is one entry of `SECTIONS`.

Failures: one before the first byte is raised to the caller (the HTTP API answers 503, or
429 for a refused export); one after it cannot change the status already sent, so it is
logged and raised from the stream, and the transport ends the body without the document's
closing (the JSON does not parse and the HTTP body is cut off).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from protocol.codec import ids_as_strings
from protocol.errors import ErrorCode, ProtocolError
from server.metrics import Metrics
from server.services.chat import message_entry
from storage import MatchRecord, Store, StoreUnavailable
from storage.base import MUTED_FOREVER

log = logging.getLogger("rendezvous.export")

PAGE = 500  # rows per store read of a paged section (messages of one match, swipes)
CONCURRENT_READS = 64  # store reads in flight at once for a whole section (one per match)
MAX_RUNNING = 8  # exports running at once on one node, all users together
RETRY_AFTER_MS = 5000  # what a refused export is told to wait


@dataclass(frozen=True, slots=True)
class ExportContext:
    """What every section reads from: the user, the store, and the user's matches (read
    once: the matches and messages sections both walk them)."""

    user: str
    store: Store
    exported_at: int  # unix ms
    matches: list[MatchRecord]  # every match the user was ever in, newest first


@dataclass(frozen=True, slots=True)
class Whole:
    """A section read entirely before the stream starts: its failure is still a 503."""

    name: str
    load: Callable[[ExportContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Paged:
    """A JSON array written a page (a list of items) at a time while the client reads."""

    name: str
    pages: Callable[[ExportContext], AsyncIterator[list[Any]]]


Section = Whole | Paged


# -- the sections -------------------------------------------------------------------------
async def settings(ctx: ExportContext) -> Any:
    return (await ctx.store.get_settings(ctx.user)).to_wire()


async def devices(ctx: ExportContext) -> Any:
    """Push tokens only as their SHA-256: the token is a credential for pushing to the
    phone, the hash is enough to recognise it."""
    return [{"platform": d.platform, "app": d.app, "locale": d.locale,
             "token_sha256": hashlib.sha256(d.token.encode()).hexdigest(),
             "ts": d.updated_ts} for d in await ctx.store.devices(ctx.user)]


async def swipes(ctx: ExportContext) -> AsyncIterator[list[Any]]:
    after: str | None = None
    while True:
        page = await ctx.store.swipes_given(ctx.user, after, PAGE)
        if page:
            yield [{"target": s.target, "action": s.action, "ts": s.ts} for s in page]
        if len(page) < PAGE:
            return
        after = page[-1].target


async def matches(ctx: ExportContext) -> Any:
    """Closed matches too, with `closed` (unix ms); not who closed it (a block reads as an
    unmatch to the one blocked, as it does live). With the user's own read and delivered
    cursors (message ids, as strings like every id; left out while 0), not the peer's."""
    out = []
    for start in range(0, len(ctx.matches), CONCURRENT_READS):
        batch = ctx.matches[start:start + CONCURRENT_READS]
        cursors = await asyncio.gather(*(ctx.store.cursors(m.id) for m in batch))
        for m, of_match in zip(batch, cursors, strict=True):
            entry: dict[str, Any] = {"id": m.id, "peer": m.peer_of(ctx.user), "ts": m.ts}
            if m.closed_ts is not None:
                entry["closed"] = m.closed_ts
            own = of_match.get(ctx.user)
            if own is not None and own.read_id:
                entry["read_id"] = str(own.read_id)
            if own is not None and own.delivered_id:
                entry["delivered_id"] = str(own.delivered_id)
            out.append(entry)
    return out


async def mutes(ctx: ExportContext) -> Any:
    """The matches the user muted, and until when (null: until unmuted)."""
    muted = await ctx.store.mutes(ctx.user)
    return [{"match": m, "until": None if until == MUTED_FOREVER else until}
            for m, until in sorted(muted.items())]


async def blocks(ctx: ExportContext) -> Any:
    """The blocks the user made (never those against them: the other user's)."""
    return [{"user": target, "ts": ts} for target, ts in await ctx.store.blocks_made(ctx.user)]


async def messages(ctx: ExportContext) -> AsyncIterator[list[Any]]:
    """Every message of every match the user was in, both directions, oldest first within a
    match; tombstones as `deleted: true`, as history shows them."""
    for m in ctx.matches:
        after = 0
        while True:
            page = await ctx.store.messages_after(m.id, after, PAGE)
            if page:
                yield [message_entry(msg) for msg in page]
            if len(page) < PAGE:
                break
            after = page[-1].id


SECTIONS: tuple[Section, ...] = (
    Whole("settings", settings),
    Whole("devices", devices),
    Paged("swipes", swipes),
    Whole("matches", matches),
    Whole("mutes", mutes),
    Whole("blocks", blocks),
    Paged("messages", messages),
)


# -- the stream ---------------------------------------------------------------------------
def _json(value: Any) -> str:
    """Compact JSON with message ids as strings, as the HTTP API writes them."""
    return json.dumps(ids_as_strings(value), separators=(",", ":"), ensure_ascii=False)


class ExportService:
    """Runs exports: at most one per user and `max_running` in all on this node (an export
    reads everything the user has; a second one at once would only double the cost), each
    a stream of JSON chunks (`stream`)."""

    def __init__(self, store: Store, metrics: Metrics, *,
                 sections: tuple[Section, ...] = SECTIONS, max_running: int = MAX_RUNNING,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.metrics = metrics
        self.sections = sections
        self.max_running = max_running
        self.clock = clock
        self._running: set[str] = set()

    def stream(self, user: str) -> AsyncGenerator[bytes]:
        """The user's document in chunks. The first chunk comes once every `Whole` section
        is read: take it before answering, so that a refusal (`ProtocolError`
        rate_limited) or a store failure (`StoreUnavailable`) is still a status. An
        exception from a later chunk means the document is incomplete. Close the generator
        (`aclose`) when done with it: that frees the user's slot."""
        return self._stream(user)

    async def _stream(self, user: str) -> AsyncGenerator[bytes]:
        self._claim(user)
        try:
            ctx = ExportContext(user, self.store, int(self.clock() * 1000),
                                await self.store.matches_ever(user))
            wholes = {s.name: await s.load(ctx) for s in self.sections
                      if isinstance(s, Whole)}
            head = f'{{"user":{_json(user)},"exported_at":{ctx.exported_at}'
            section = ""
            try:
                for s in self.sections:
                    section = s.name
                    if isinstance(s, Whole):
                        head += f',{_json(s.name)}:{_json(wholes.pop(s.name))}'
                        continue
                    yield (head + f',{_json(s.name)}:[').encode()
                    head, first = "]", True
                    async for page in s.pages(ctx):
                        if not page:
                            continue
                        items = ",".join(_json(item) for item in page)
                        yield (items if first else "," + items).encode()
                        first = False
                yield (head + "}").encode()
            except Exception as exc:
                self.metrics.exports_by["cut"].inc()
                log.warning("export cut short: the document ends unclosed", extra={
                    "section": section, "error": type(exc).__name__},
                    exc_info=not isinstance(exc, StoreUnavailable))  # a bug: its traceback
                raise
            except BaseException:  # GeneratorExit or a cancel: the client went away
                self.metrics.exports_by["left"].inc()
                raise
            self.metrics.exports_by["done"].inc()
        finally:
            self._running.discard(user)

    def _claim(self, user: str) -> None:
        if user in self._running or len(self._running) >= self.max_running:
            self.metrics.rate_limited_by["export"].inc()
            why = ("an export of this account is already running" if user in self._running
                   else "too many exports are running on this node")
            raise ProtocolError(ErrorCode.RATE_LIMITED, f"{why}; retry later",
                                retry_ms=RETRY_AFTER_MS)
        self._running.add(user)
