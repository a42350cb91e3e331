"""The HTTP side of the data export: its first chunk read before the status is sent, the
rest streamed with the transport's flow control, and a body cut off (not completed) when
the document could not be finished (server/services/export.py; docs/privacy.md)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from server.services.export import ExportService


class ExportResponse(StreamingResponse):
    """Starlette's streaming response (which stops the stream when the client leaves),
    except that a failing stream ends the body without its last chunk: uvicorn then closes
    the connection, so the client sees a truncated transfer as well as unparseable JSON,
    never a well-formed end of a wrong document. The stream is closed in every case (that
    frees the user's export slot)."""

    media_type = "application/json"

    def __init__(self, first: bytes, chunks: AsyncGenerator[bytes]) -> None:
        super().__init__(chunks, headers={
            "Cache-Control": "no-store",
            "Content-Disposition": 'attachment; filename="export.json"'})
        self.first = first
        self.chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # here, outside the cancelled scope of a client that left
            await self.chunks.aclose()

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.first, "more_body": True})
        try:
            async for chunk in self.chunks:  # each send waits while the client is behind
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception:  # logged by the service: leave the body unfinished
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def export_response(exports: ExportService, user: str) -> ExportResponse:
    """Start the user's export: raises (rate_limited, or StoreUnavailable for a 503)
    before anything is sent, else the response that streams the rest."""
    chunks = exports.stream(user)
    first = await anext(chunks)  # a failure here has closed the generator already
    return ExportResponse(first, chunks)
