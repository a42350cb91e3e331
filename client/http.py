"""`RendezvousHttp`: the HTTP API (swipes, matches, reports, devices, settings, export)
for tests and tools.

Every method returns the parsed JSON body (None for 204) and raises `HttpError` otherwise,
so a test reads `await api.swipe("bob")` and checks failures with `pytest.raises`. Message
ids come back as ints, like the WebSocket client, whichever way the server wrote them.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from client.errors import HttpError
from client.ws import ids_to_int


class RendezvousHttp:
    """One user's HTTP API session. `token=None` sends no `Authorization` (to test 401)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self.client = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The unparsed response, whatever its status (for tests of the error paths)."""
        return await self.client.request(method, path, **kwargs)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, **kwargs)
        if not response.is_success:
            raise _error(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def swipe(self, target: str, action: str = "like") -> dict[str, Any]:
        """`{"match": null | {"id", "peer", "ts"}}`."""
        result: dict[str, Any] = await self._call(
            "POST", "/v1/swipes", json={"target": target, "action": action}
        )
        return result

    async def matches(self, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """`{"matches": [{"id", "peer", "ts", "last"?, "unread"}], "next"?}`."""
        result: dict[str, Any] = await self._call(
            "GET", "/v1/matches", params=_params(limit=limit, cursor=cursor)
        )
        for match in result.get("matches") or ():
            if isinstance(match, dict) and isinstance(match.get("last"), dict):
                ids_to_int(match["last"])  # match "id" is a match id: keep it a string
        return result

    async def unmatch(self, match_id: str) -> None:
        await self._call("DELETE", f"/v1/matches/{_seg(match_id)}")

    async def messages(
        self, match_id: str, before: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """`{"msgs": [...], "more"}`, newest first."""
        result: dict[str, Any] = await self._call(
            "GET", f"/v1/matches/{_seg(match_id)}/messages",
            params=_params(before=before, limit=limit),
        )
        ids_to_int(result.get("msgs"))
        return result

    async def block(self, user: str) -> None:
        await self._call("POST", "/v1/blocks", json={"user": user})

    async def logout_all(self) -> None:
        """Revoke every token of this user issued until now, this one included, and close
        their sockets everywhere (4001). Mint the next token in a later second."""
        await self._call("POST", "/v1/me/logout-all")

    async def erase_account(self) -> int:
        """Erase this user everywhere (`DELETE /v1/me`); the erasure's unix ms. Calling
        again, with this same token, answers the same time (and finishes one cut short)."""
        result: dict[str, Any] = await self._call("DELETE", "/v1/me")
        return int(result["erased_at"])

    async def report(self, user: str, reason: str, note: str | None = None) -> str:
        """Report `user` (which also blocks them); the report's id."""
        body: dict[str, Any] = {"user": user, "reason": reason}
        if note is not None:
            body["note"] = note
        result: dict[str, Any] = await self._call("POST", "/v1/reports", json=body)
        return str(result["id"])

    async def admin_reports(
        self, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """Moderators: `{"reports": [...], "next"?}`, newest first."""
        result: dict[str, Any] = await self._call(
            "GET", "/v1/admin/reports", params=_params(limit=limit, cursor=cursor)
        )
        for report in result.get("reports") or ():
            if isinstance(report, dict):
                ids_to_int(report.get("evidence"))  # the report "id" stays a string
        return result

    async def admin_report(self, report_id: str) -> dict[str, Any]:
        """Moderators: one report, its evidence in the shape of history."""
        result: dict[str, Any] = await self._call("GET", f"/v1/admin/reports/{_seg(report_id)}")
        ids_to_int(result.get("evidence"))
        return result

    async def put_device(
        self, token: str, platform: str, app: str | None = None, locale: str | None = None
    ) -> None:
        body: dict[str, Any] = {"platform": platform}
        if app is not None:
            body["app"] = app
        if locale is not None:
            body["locale"] = locale
        await self._call("PUT", f"/v1/devices/{_seg(token)}", json=body)

    async def delete_device(self, token: str) -> None:
        await self._call("DELETE", f"/v1/devices/{_seg(token)}")

    async def put_settings(self, **changes: Any) -> dict[str, Any]:
        """Change some of `show_online`, `read_receipts`, `push_previews` and `push_kinds`
        (a map of `message`, `match`, `like` to booleans; merged); returns them all."""
        result: dict[str, Any] = await self._call("PUT", "/v1/me/settings", json=changes)
        return result

    async def quota(self) -> dict[str, Any]:
        """`{"likes_left", "superlikes_left", "reset_at"}` (None where unlimited)."""
        result: dict[str, Any] = await self._call("GET", "/v1/me/quota")
        return result

    async def undo(self) -> dict[str, Any]:
        """Take back the latest swipe: `{"undone": {"target", "action", "ts"}}`."""
        result: dict[str, Any] = await self._call("POST", "/v1/swipes/undo")
        return result

    async def likes(self, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """`{"likes": [{"user", "action", "ts"}], "next"?}`, newest first."""
        result: dict[str, Any] = await self._call(
            "GET", "/v1/likes", params=_params(limit=limit, cursor=cursor)
        )
        return result

    async def deck_filter(self, candidates: list[str]) -> list[str]:
        """The candidates that may be shown, in their order."""
        result: dict[str, Any] = await self._call(
            "POST", "/v1/deck/filter", json={"candidates": candidates}
        )
        kept: list[str] = result["candidates"]
        return kept

    async def export(self, timeout: float = 120) -> dict[str, Any]:
        """The caller's data export (`GET /v1/me/export`), read whole and parsed; message
        ids as ints. A cut-off export raises (httpx's transfer error, or a JSON error)."""
        result: dict[str, Any] = await self._call("GET", "/v1/me/export", timeout=timeout)
        ids_to_int(result.get("messages"))
        return result

    async def get_settings(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/v1/me/settings")
        return result

    async def mute(self, match_id: str, until: int | None = None) -> dict[str, Any]:
        """No pushes for the match until unix ms `until` (forever when None):
        `{"muted_until": ms | null}`."""
        body: dict[str, Any] = {} if until is None else {"until": until}
        result: dict[str, Any] = await self._call(
            "PUT", f"/v1/matches/{_seg(match_id)}/mute", json=body)
        return result

    async def unmute(self, match_id: str) -> None:
        await self._call("DELETE", f"/v1/matches/{_seg(match_id)}/mute")

    async def aclose(self) -> None:
        await self.client.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _seg(value: str) -> str:
    """One URL path segment (device tokens and ids may hold any character)."""
    return quote(value, safe="")


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _error(response: httpx.Response) -> HttpError:
    code: str | None = None
    msg: str | None = None
    reset_at: int | None = None
    try:
        error = response.json()["error"]
        code, msg, reset_at = error.get("code"), error.get("msg"), error.get("reset_at")
    except (ValueError, TypeError, KeyError, AttributeError):
        msg = response.text[:200] or response.reason_phrase
    return HttpError(response.status_code, code, msg, _retry_after(response), reset_at)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: the server sends seconds, so this is not expected
