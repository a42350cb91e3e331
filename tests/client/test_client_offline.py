"""The WebSocket client against a tiny fake server: routing, events, ids, rejections.

The fake speaks just enough of docs/protocol.md to exercise the client; the real-server
suite checks the same client against the real node.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from client import ClientClosed, ConnectionRejected, RendezvousClient, ServerError
from client.ws import UNDECODABLE, ids_to_int
from protocol.codec import JSON, MSGPACK, Codec, Frame, JsonCodec, codec_for
from protocol.errors import ProtocolError

BIG_ID = (1 << 60) + 12345  # past 2^53: JSON must carry it as a string
MATCH = "m-1"


class FakeServer:
    """Accepts any token but a few magic ones; answers a handful of ops."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[Frame] = []
        self.auth_frames: list[Frame] = []
        self.headers: list[str | None] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") == "Bearer http-401":
            body = json.dumps({"error": {"code": "unauthorized", "msg": "token expired"}})
            headers = Headers([("Content-Type", "application/json"),
                               ("Content-Length", str(len(body)))])
            return Response(401, "Unauthorized", headers, body.encode())
        return None

    async def handler(self, ws: ServerConnection) -> None:
        codec = codec_for(ws.subprotocol)
        header = ws.request.headers.get("Authorization") if ws.request else None
        self.headers.append(header)
        token = header.removeprefix("Bearer ") if header else None
        if token is None:
            first = codec.decode(await ws.recv())
            self.auth_frames.append(first)
            token = first.get("token") if first.get("t") == "auth" else None
        if token in (None, "bad"):
            await ws.send(codec.encode({"t": "error", "code": "unauthorized", "msg": "bad token"}))
            await ws.close(4001, "unauthorized")
            return
        if token == "silent-close":
            await ws.close(4001, "no")
            return
        if token == "mute":
            await ws.wait_closed()
            return
        if token == "chatty":  # an event before the welcome must not be lost
            await ws.send(codec.encode({"t": "presence", "u": "bob", "on": True}))
        await ws.send(codec.encode({"t": "welcome", "user": token, "session": "s-1",
                                    "node": "n-1", "hb": 25, "exp": 2_000_000_000,
                                    "limits": {"body": 4000}}))
        async for data in ws:
            try:
                frame = codec.decode(data)
            except ProtocolError:
                await ws.send(codec.encode({"t": "error", "code": "bad_frame", "msg": "?"}))
                continue
            self.received.append(frame)
            await self.dispatch(ws, codec, frame)

    async def dispatch(self, ws: ServerConnection, codec: Codec, frame: Frame) -> None:
        t, r = frame.get("t"), frame.get("r")

        async def reply(out: Frame) -> None:
            if r is not None:
                out["r"] = r
            await ws.send(codec.encode(out))

        if t == "ping":
            await reply({"t": "pong"})
        elif t == "send":
            # an unsolicited frame between request and reply goes to the events
            await ws.send(codec.encode({"t": "typing", "m": frame["m"], "from": "bob",
                                        "on": False}))
            await reply({"t": "ack", "m": frame["m"], "c": frame["c"], "id": BIG_ID,
                         "ts": 1_700_000_000_000})
        elif t == "history":
            msgs = [_msg(BIG_ID), _msg(BIG_ID - 1)]
            await reply({"t": "history", "m": frame["m"], "msgs": msgs, "more": False})
        elif t == "sync":
            conv = {"m": MATCH, "peer": "bob", "last_id": BIG_ID, "unread": 1,
                    "peer_read": BIG_ID - 1}
            await reply({"t": "sync", "convs": [conv], "msgs": [_msg(BIG_ID)],
                         "cursor": "c-1", "more": False})
        elif t == "echo":  # replies after `delay` seconds, so replies can overtake each other
            async def later() -> None:
                await asyncio.sleep(frame.get("delay", 0))
                await reply({"t": "echo", "n": frame.get("n")})
            task = asyncio.create_task(later())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif t == "emit":  # pushes the given frames as unsolicited events, in order
            for out in frame["frames"]:
                await ws.send(codec.encode(out))
            if r is not None:
                await reply({"t": "ok"})
        elif t == "limited":
            await reply({"t": "error", "code": "rate_limited", "msg": "slow down",
                         "retry_ms": 1500})
        elif t == "kick":
            await ws.close(frame["code"], frame.get("reason", ""))
        elif t in ("typing", "read", "delivered", "refresh", "presence"):
            if r is not None:
                await reply({"t": "ok"})
        else:
            await reply({"t": "error", "code": "unknown_type", "msg": f"unknown {t}"})


def _msg(message_id: int) -> Frame:
    return {"t": "msg", "m": MATCH, "id": message_id, "from": "bob", "ts": 1_700_000_000_000,
            "body": "hi", "c": f"c{message_id}"}


def _select(connection: ServerConnection, offered: Sequence[str]) -> Subprotocol | None:
    """Like the real gateway: the first known subprotocol offered, none (msgpack) if none."""
    return next((Subprotocol(p) for p in offered if p in (MSGPACK, JSON)), None)


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    async with serve(server.handler, "127.0.0.1", 0, select_subprotocol=_select,
                     compression=None, process_request=server.process_request) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        server.url = f"ws://127.0.0.1:{port}/v1/ws"
        yield server


@pytest.fixture(params=[MSGPACK, JSON])
def subprotocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- connecting ---------------------------------------------------------------------------


async def test_connect_with_header_auth(fake: FakeServer, subprotocol: str) -> None:
    async with await RendezvousClient.connect(fake.url, "alice",
                                              subprotocol=subprotocol) as c:
        assert c.subprotocol == subprotocol
        assert c.user == "alice"
        assert c.welcome["t"] == "welcome" and c.welcome["hb"] == 25
        assert fake.headers == ["Bearer alice"]
        assert not c.closed
    assert c.closed and c.close_code == 1000


async def test_connect_with_auth_frame(fake: FakeServer, subprotocol: str) -> None:
    async with await RendezvousClient.connect(fake.url, "alice", subprotocol=subprotocol,
                                              auth="frame") as c:
        assert c.user == "alice"
    assert fake.headers == [None]
    assert fake.auth_frames == [{"t": "auth", "token": "alice"}]


async def test_no_subprotocol_offered_means_msgpack(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice", subprotocol=None) as c:
        assert c.subprotocol is None
        assert c.codec.name == MSGPACK
        assert (await c.ping())["t"] == "pong"


async def test_frames_before_welcome_are_kept_as_events(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "chatty") as c:
        assert (await c.next_event("presence"))["u"] == "bob"


@pytest.mark.parametrize("auth", ["header", "frame"])
async def test_error_then_close_4001_is_rejected(fake: FakeServer, auth: str) -> None:
    with pytest.raises(ConnectionRejected) as info:
        await RendezvousClient.connect(fake.url, "bad", auth=auth)  # type: ignore[arg-type]
    assert info.value.code == 4001
    assert info.value.error_frame is not None
    assert info.value.error_code == "unauthorized"
    assert info.value.reason == "bad token"


async def test_close_without_error_frame_is_rejected(fake: FakeServer) -> None:
    with pytest.raises(ConnectionRejected) as info:
        await RendezvousClient.connect(fake.url, "silent-close")
    assert info.value.code == 4001
    assert info.value.reason == "no"
    assert info.value.error_frame is None


async def test_http_status_on_upgrade_is_rejected(fake: FakeServer) -> None:
    with pytest.raises(ConnectionRejected) as info:
        await RendezvousClient.connect(fake.url, "http-401")
    assert info.value.status == 401
    assert info.value.code is None
    assert info.value.error_code == "unauthorized"
    assert info.value.reason == "token expired"


async def test_missing_welcome_times_out(fake: FakeServer) -> None:
    with pytest.raises(TimeoutError):
        await RendezvousClient.connect(fake.url, "mute", open_timeout=0.2)


async def test_bad_auth_mode_is_refused(fake: FakeServer) -> None:
    with pytest.raises(ValueError, match="auth"):
        await RendezvousClient.connect(fake.url, "alice", auth="cookie")  # type: ignore[arg-type]


# -- requests and replies -----------------------------------------------------------------


async def test_replies_are_routed_by_r_in_any_order(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        slow = asyncio.create_task(c.request({"t": "echo", "n": 1, "delay": 0.2}))
        fast = asyncio.create_task(c.request({"t": "echo", "n": 2}))
        first_done, _ = await asyncio.wait({slow, fast}, return_when=asyncio.FIRST_COMPLETED)
        assert first_done == {fast}
        assert (await fast)["n"] == 2
        assert (await slow)["n"] == 1
        assert (await c.ping())["t"] == "pong"
        rs = [f["r"] for f in fake.received]
        assert len(set(rs)) == 3  # a fresh r for every request
        assert c.drain_events() == []


async def test_request_overrides_caller_r(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        reply = await c.request({"t": "ping", "r": 999})
        assert reply["r"] != 999 and fake.received[0]["r"] == reply["r"]


async def test_error_reply_raises_server_error(fake: FakeServer, subprotocol: str) -> None:
    async with await RendezvousClient.connect(fake.url, "alice",
                                              subprotocol=subprotocol) as c:
        with pytest.raises(ServerError) as info:
            await c.request({"t": "limited"})
        assert info.value.code == "rate_limited"
        assert info.value.retry_ms == 1500
        assert info.value.frame["r"] == fake.received[-1]["r"]
        with pytest.raises(ServerError) as info:
            await c.request({"t": "nonsense"})
        assert info.value.code == "unknown_type" and info.value.retry_ms is None
        assert (await c.ping())["t"] == "pong"  # still usable
        assert c.drain_events() == []  # error replies never leak into the events


async def test_timed_out_request_leaves_late_reply_in_events(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        with pytest.raises(TimeoutError, match="echo"):
            await c.request({"t": "echo", "n": 7, "delay": 0.3}, timeout=0.05)
        late = await c.next_event("echo")
        assert late["n"] == 7


async def test_send_returns_ack_and_builds_frame(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        ack = await c.send(MATCH, "hello")
        assert ack["t"] == "ack" and ack["id"] == BIG_ID
        sent = fake.received[-1]
        assert sent["body"] == "hello" and "media" not in sent
        assert len(sent["c"]) == 32 and ack["c"] == sent["c"]
        media = {"kind": "image", "url": "https://x/y.jpg", "w": 10, "h": 20}
        ack = await c.send(MATCH, media=media, c="client-1")
        assert ack["c"] == "client-1"
        assert fake.received[-1]["media"] == media and "body" not in fake.received[-1]
        # the typing frame the server sent before each ack is an event, not a reply
        assert [e["t"] for e in c.drain_events()] == ["typing", "typing"]


async def test_fire_and_forget_frames_carry_no_r(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        await c.typing(MATCH, True)
        assert await c.read(MATCH, BIG_ID) is None
        assert await c.delivered(MATCH, BIG_ID) is None
        ok = await c.read(MATCH, BIG_ID, ack=True)
        assert ok is not None and ok["t"] == "ok"
        assert fake.received[:3] == [
            {"t": "typing", "m": MATCH, "on": True},
            {"t": "read", "m": MATCH, "id": BIG_ID},
            {"t": "delivered", "m": MATCH, "id": BIG_ID},
        ]
        assert "r" in fake.received[3]


async def test_helpers_send_the_documented_frames(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        await c.history(MATCH)
        await c.history(MATCH, before=BIG_ID, limit=10)
        await c.sync()
        await c.sync(since="c-1")
        await c.presence()
        await c.refresh("new-token")
        await c.ping()
        sent = [{k: v for k, v in f.items() if k != "r"} for f in fake.received]
        assert sent == [
            {"t": "history", "m": MATCH},
            {"t": "history", "m": MATCH, "before": BIG_ID, "limit": 10},
            {"t": "sync"},
            {"t": "sync", "since": "c-1"},
            {"t": "presence"},
            {"t": "refresh", "token": "new-token"},
            {"t": "ping"},
        ]


# -- ids ----------------------------------------------------------------------------------


async def test_message_ids_are_ints_in_both_subprotocols(fake: FakeServer,
                                                         subprotocol: str) -> None:
    async with await RendezvousClient.connect(fake.url, "alice",
                                              subprotocol=subprotocol) as c:
        ack = await c.send(MATCH, "hi")
        assert ack["id"] == BIG_ID and type(ack["id"]) is int
        history = await c.history(MATCH, before=BIG_ID)
        assert [m["id"] for m in history["msgs"]] == [BIG_ID, BIG_ID - 1]
        sync = await c.sync()
        assert sync["convs"][0]["last_id"] == BIG_ID
        assert sync["convs"][0]["peer_read"] == BIG_ID - 1
        assert sync["msgs"][0]["id"] == BIG_ID
        assert sync["cursor"] == "c-1" and sync["convs"][0]["m"] == MATCH
        await c.request({"t": "emit", "frames": [_msg(BIG_ID + 1)]})
        assert (await c.next_event("msg"))["id"] == BIG_ID + 1


def test_json_codec_really_sends_ids_as_strings() -> None:
    wire = JsonCodec().encode({"t": "ack", "id": BIG_ID})
    assert f'"id":"{BIG_ID}"' in wire


def test_ids_to_int_touches_only_id_fields() -> None:
    frame = {"t": "sync", "m": "123", "id": "42", "body": "7", "cursor": "99",
             "convs": [{"m": "5", "last_id": "9", "peer_read": "8"}],
             "msgs": [{"id": "3", "c": "4"}], "before": "abc", "x": {"id": "-1"}}
    assert ids_to_int(frame) == {
        "t": "sync", "m": "123", "id": 42, "body": "7", "cursor": "99",
        "convs": [{"m": "5", "last_id": 9, "peer_read": 8}],
        "msgs": [{"id": 3, "c": "4"}], "before": "abc", "x": {"id": "-1"}}


# -- events -------------------------------------------------------------------------------


async def test_next_event_filters_without_dropping(fake: FakeServer, subprotocol: str) -> None:
    frames = [
        {"t": "typing", "m": MATCH, "from": "bob", "on": True},
        {"t": "msg", "m": MATCH, "id": 1, "from": "bob", "ts": 1, "body": "a", "c": "a"},
        {"t": "presence", "u": "bob", "on": True},
        {"t": "msg", "m": MATCH, "id": 2, "from": "bob", "ts": 2, "body": "b", "c": "b"},
        {"t": "read", "m": MATCH, "from": "bob", "id": 1},
    ]
    async with await RendezvousClient.connect(fake.url, "alice",
                                              subprotocol=subprotocol) as c:
        await c.request({"t": "emit", "frames": frames})
        assert (await c.next_event("msg"))["id"] == 1
        assert (await c.next_event({"read", "presence"}))["t"] == "presence"
        assert (await c.next_event(predicate=lambda f: f.get("id") == 2))["body"] == "b"
        assert (await c.next_event())["t"] == "typing"
        assert (await c.next_event())["t"] == "read"
        assert await c.no_event(within=0.05)


async def test_next_event_timeout_names_held_events(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        await c.request({"t": "emit", "frames": [{"t": "typing", "m": MATCH, "on": True}]})
        with pytest.raises(TimeoutError, match="typing"):
            await c.next_event("msg", timeout=0.05)
        assert (await c.next_event("typing"))["on"] is True  # still there


async def test_no_event_fails_loudly_when_one_arrives(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        await c.send_raw({"t": "emit", "frames": [{"t": "typing", "m": MATCH, "on": True}]})
        assert await c.no_event("msg", within=0.1)
        with pytest.raises(AssertionError, match="typing"):
            await c.no_event("typing", within=1)


async def test_drain_events_returns_everything_in_order(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        frames = [{"t": "presence", "u": str(i), "on": True} for i in range(5)]
        await c.request({"t": "emit", "frames": frames})
        assert (await c.next_event(predicate=lambda f: f["u"] == "3"))["u"] == "3"
        assert [f["u"] for f in c.drain_events()] == ["0", "1", "2", "4"]
        assert c.drain_events() == []


async def test_error_without_r_and_garbage_reply_go_to_events(fake: FakeServer) -> None:
    async with await RendezvousClient.connect(fake.url, "alice") as c:
        await c.send_raw(b"\xc1 not msgpack")
        error = await c.next_event("error")
        assert error["code"] == "bad_frame" and "r" not in error
        await c.request({"t": "emit", "frames": []})  # fake cannot emit bytes; check decode path
        assert c._decode(b"\xc1")["t"] == UNDECODABLE


async def test_on_event_callback_receives_events(fake: FakeServer) -> None:
    seen: list[Frame] = []
    async with await RendezvousClient.connect(fake.url, "alice", on_event=seen.append) as c:
        await c.request({"t": "emit", "frames": [{"t": "presence", "u": "bob", "on": True}]})
        assert seen == [{"t": "presence", "u": "bob", "on": True}]
        assert c.drain_events() == []


# -- closing ------------------------------------------------------------------------------


async def test_server_close_fails_waiters_and_reports_code(fake: FakeServer) -> None:
    c = await RendezvousClient.connect(fake.url, "alice")
    await c.request({"t": "emit", "frames": [{"t": "presence", "u": "bob", "on": False}]})
    pending = asyncio.create_task(c.request({"t": "echo", "delay": 5}))
    await asyncio.sleep(0.05)
    await c.send_raw({"t": "kick", "code": 4003, "reason": "forbidden"})
    with pytest.raises(ClientClosed) as info:
        await pending
    assert info.value.code == 4003
    assert await c.wait_closed() == 4003
    assert c.closed and c.close_code == 4003 and c.close_reason == "forbidden"
    # events that came before the close are still there; then the end is reported at once
    assert (await c.next_event("presence"))["u"] == "bob"
    with pytest.raises(ClientClosed):
        await c.next_event(timeout=5)
    with pytest.raises(ClientClosed):
        await c.ping()
    with pytest.raises(ClientClosed):
        await c.typing(MATCH)
    assert await c.no_event()
    await c.close()  # idempotent after the server closed


async def test_client_close_sends_code(fake: FakeServer) -> None:
    c = await RendezvousClient.connect(fake.url, "alice")
    await c.close(4000, "bye")
    assert c.closed and c.close_code == 4000
    assert "closed 4000" in repr(c)
