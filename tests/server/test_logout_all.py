"""Log out everywhere on a real embedded node (SQLite): `POST /v1/me/logout-all` closes the
user's sockets with 4001 and refuses every token issued at or before it, on the WebSocket
(header and frame auth, `refresh`) and on HTTP; later tokens work (docs/protocol.md, "Log out
everywhere"). The two-node cluster over Redis and Cassandra: tests/cluster/test_logout_all.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from client import RendezvousClient
from client.errors import ConnectionRejected, ServerError
from storage import StoreUnavailable
from tests.conftest import Harness, NodeFactory

REVOKED = "revoked"  # in every refusal's message


async def close_times(clients: Sequence[RendezvousClient], started: float,
                      timeout: float = 3.0) -> list[tuple[int | None, float]]:
    """(close code, seconds after `started`) of each client, once each has closed."""
    async def one(client: RendezvousClient) -> tuple[int | None, float]:
        code = await client.wait_closed(timeout)
        return code, time.monotonic() - started
    return list(await asyncio.gather(*(one(c) for c in clients)))


async def after_second_of(ms: int) -> None:
    """Wait until the wall clock is in a later second than `ms`: a token minted now has an
    `iat` after that not-before (iat is in whole seconds)."""
    await asyncio.sleep(max(0.0, (ms // 1000 + 1) - time.time()) + 0.01)
    assert int(time.time()) > ms // 1000


async def refused_ws(harness: Harness, token: str, auth: str = "header") -> ConnectionRejected:
    with pytest.raises(ConnectionRejected) as refused:
        await harness.connect("x", token=token, auth=auth)
    return refused.value


async def http_status(harness: Harness, token: str) -> tuple[int, dict[str, str]]:
    response = await harness.http(None, token=token).raw("GET", "/v1/matches")
    return response.status_code, response.json().get("error") or {}


async def test_logout_all_closes_every_socket_and_refuses_the_old_tokens(
        rdv: Harness) -> None:
    old = rdv.token("ann")
    assert (await http_status(rdv, old))[0] == 200
    anns = [await rdv.connect("ann", token=old),
            await rdv.connect("ann", token=rdv.token("ann"), subprotocol="rdv.v1.json")]
    bob = await rdv.connect("bob")
    started = time.monotonic()
    response = await rdv.http(None, token=old).raw("POST", "/v1/me/logout-all")
    assert response.status_code == 204 and response.content == b""
    closes = await close_times(anns, started)
    print(f"\nlogout-all to 4001 on one node: {max(t for _, t in closes) * 1000:.0f} ms")
    assert [code for code, _ in closes] == [4001, 4001]
    assert max(t for _, t in closes) < 1.0
    assert all(REVOKED in (c.close_reason or "") for c in anns)
    assert not bob.closed and (await bob.ping())["t"] == "pong"  # only ann's sockets
    # the old token, and one minted in the same second as the logout, are refused
    not_before = await rdv.node.store.tokens_not_before("ann")
    assert not_before is not None and abs(not_before - time.time() * 1000) < 5_000
    same_second = rdv.token("ann", now=not_before // 1000)
    for token in (old, same_second):
        status, error = await http_status(rdv, token)
        assert status == 401 and error["code"] == "unauthorized" and REVOKED in error["msg"]
        for auth in ("header", "frame"):
            refused = await refused_ws(rdv, token, auth)
            assert refused.code == 4001 and refused.error_code == "unauthorized"
            assert REVOKED in refused.reason
    # a token minted after that second works, on both
    await after_second_of(not_before)
    fresh = rdv.token("ann")
    assert (await http_status(rdv, fresh))[0] == 200
    again = await rdv.connect("ann", token=fresh)
    assert (await again.ping())["t"] == "pong"
    assert rdv.node.metrics.auth_failures.labels("revoked")._value.get() >= 6


async def test_refresh_with_an_old_token_is_refused_and_the_socket_stays(
        rdv: Harness) -> None:
    old = rdv.token("ann")
    await rdv.http(None, token=old).logout_all()
    not_before = await rdv.node.store.tokens_not_before("ann")
    assert not_before is not None
    await after_second_of(not_before)
    ann = await rdv.connect("ann", token=rdv.token("ann", ttl_s=60))
    with pytest.raises(ServerError) as refused:
        await ann.refresh(old)
    assert refused.value.code == "unauthorized" and REVOKED in (refused.value.msg or "")
    assert (await ann.ping())["t"] == "pong"  # a refused refresh keeps the socket
    renewed = await ann.refresh(rdv.token("ann", ttl_s=7200))
    assert renewed["t"] == "ok" and renewed["exp"] > time.time() + 3600


async def test_a_revocation_closes_only_the_sockets_of_older_tokens(rdv: Harness) -> None:
    """A socket opened with a token issued after the not-before stays, however often the
    revocation is replayed (erasure calls the same operation with its own time)."""
    await rdv.http("ann").logout_all()
    not_before = await rdv.node.store.tokens_not_before("ann")
    assert not_before is not None
    await after_second_of(not_before)
    newer = await rdv.connect("ann")
    accounts = rdv.node.services.accounts
    assert await accounts.revoke_tokens("ann", not_before - 60_000) == not_before
    assert await accounts.revoke_tokens("ann", not_before) == not_before
    await asyncio.sleep(0.3)
    assert not newer.closed and (await newer.ping())["t"] == "pong"
    # ... and a later revocation closes it too
    later = int(time.time() * 1000)
    assert await accounts.revoke_tokens("ann", later) == later
    assert await newer.wait_closed(1.0) == 4001


async def test_a_token_without_iat_is_refused_once_the_user_has_a_not_before(
        rdv: Harness) -> None:
    undated = rdv.token("ann", iat=None)
    ann = await rdv.connect("ann", token=undated)  # nothing revoked yet: it works
    assert (await http_status(rdv, undated))[0] == 200
    await rdv.http("cat").logout_all()  # another user's logout changes nothing for ann
    assert (await http_status(rdv, undated))[0] == 200
    await rdv.http(None, token=undated).logout_all()
    assert await ann.wait_closed(1.0) == 4001
    assert (await http_status(rdv, undated))[0] == 401
    assert (await refused_ws(rdv, undated)).code == 4001


async def test_the_not_before_outlives_the_node(node_factory: NodeFactory,
                                                tmp_path: Path) -> None:
    """Stored, not remembered: a node started afterwards on the same data refuses the old
    token from its first request (its cache is empty)."""
    data = tmp_path / "kept"
    first = Harness(await node_factory(data_dir=data))
    old = first.token("ann")
    await first.http(None, token=old).logout_all()
    await first.close()
    await first.node.stop()
    second = Harness(await node_factory(data_dir=data))
    try:
        assert second.node.services.accounts.not_before.known("ann") is None
        assert (await http_status(second, old))[0] == 401
        assert (await refused_ws(second, old)).code == 4001
    finally:
        await second.close()


async def test_a_check_the_store_cannot_answer_refuses_rather_than_admits(
        rdv: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Storage failure injected into the not-before read: an unchecked token is not admitted
    (WS 1013 with `unavailable`, HTTP 503), and a user seen lately is answered from the
    cache."""
    seen = rdv.token("ann")
    assert (await http_status(rdv, seen))[0] == 200  # ann's not-before (none) is cached

    async def down(user: str) -> int | None:
        raise StoreUnavailable("injected: the store is down")

    not_before = rdv.node.services.accounts.not_before
    monkeypatch.setattr(not_before, "_load", down)
    unseen = rdv.token("dan")
    response = await rdv.http(None, token=unseen).raw("GET", "/v1/matches")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "unavailable"
    refused = await refused_ws(rdv, unseen)
    assert refused.code == 1013 and refused.error_code == "unavailable"
    assert (await http_status(rdv, seen))[0] == 200  # from the cache
    monkeypatch.setattr(not_before, "_ttl", 0.0)  # expired: the stale entry still answers
    not_before.raised("ann", None)
    assert (await http_status(rdv, seen))[0] == 200
