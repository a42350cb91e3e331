"""Message ids, the limits sent in `welcome`, and the code tables of `protocol.errors`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import HTTP_STATUS, CloseCode, ErrorCode, ProtocolError
from protocol.ids import (
    EPOCH_MS,
    MAX_ID,
    MAX_NODE,
    MAX_SEQ,
    IdGenerator,
    compose,
    lowest_id_at,
    ms_of,
    node_of,
)
from protocol.limits import DEFAULT_LIMITS, Limits

NOW = 1_767_225_600_000
MAX_MS = EPOCH_MS + (1 << 41) - 1
N = 100_000


def _assert_strictly_increasing(ids: list[int]) -> None:
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert len(set(ids)) == len(ids)


def _run(gen: IdGenerator, clock: Iterator[int]) -> list[int]:
    return [gen.next(next(clock)) for _ in range(N)]


def test_ids_increase_when_the_clock_stands_still() -> None:
    gen = IdGenerator(7)
    ids = _run(gen, iter([NOW] * N))
    _assert_strictly_increasing(ids)
    assert {node_of(i) for i in ids} == {7}
    assert ms_of(ids[0]) == NOW
    # 4096 ids per millisecond, then the generator borrows the next millisecond
    assert ms_of(ids[MAX_SEQ]) == NOW and ms_of(ids[MAX_SEQ + 1]) == NOW + 1
    assert ms_of(ids[-1]) == NOW + (N - 1) // (MAX_SEQ + 1)


def _stepping_back() -> Iterator[int]:
    """A clock that runs forward and jumps back by up to 2 s every 1000 reads."""
    t = NOW
    for i in range(N):
        t += 1 if i % 3 else 0
        if i % 1000 == 999:
            t -= 2000 if i % 2000 == 1999 else 7
        yield t


def test_ids_increase_when_the_clock_steps_back() -> None:
    ids = _run(IdGenerator(MAX_NODE), _stepping_back())
    _assert_strictly_increasing(ids)
    assert {node_of(i) for i in ids} == {MAX_NODE}


def test_ids_follow_a_clock_that_moves_forward() -> None:
    gen = IdGenerator(0)
    ids = [gen.next(NOW + i) for i in range(1000)]
    _assert_strictly_increasing(ids)
    assert [ms_of(i) for i in ids] == [NOW + i for i in range(1000)]


def test_later_millisecond_beats_any_node_and_sequence() -> None:
    assert compose(NOW, MAX_NODE, MAX_SEQ) < compose(NOW + 1, 0, 0) == lowest_id_at(NOW + 1)


@given(st.integers(EPOCH_MS, MAX_MS), st.integers(0, MAX_NODE), st.integers(0, MAX_SEQ))
def test_compose_round_trips(ms: int, node: int, seq: int) -> None:
    message_id = compose(ms, node, seq)
    assert 0 <= message_id <= MAX_ID
    assert ms_of(message_id) == ms
    assert node_of(message_id) == node
    assert message_id & MAX_SEQ == seq
    assert lowest_id_at(ms) <= message_id


def test_id_layout_fills_63_bits_exactly() -> None:
    assert compose(EPOCH_MS, 0, 0) == 0
    assert compose(MAX_MS, MAX_NODE, MAX_SEQ) == MAX_ID == 2**63 - 1
    assert lowest_id_at(0) == 0  # clamped to the epoch, never negative


@pytest.mark.parametrize("node", [0, 1, MAX_NODE])
def test_node_id_in_bounds(node: int) -> None:
    assert IdGenerator(node).node == node


@pytest.mark.parametrize("node", [-1, MAX_NODE + 1, 2**20])
def test_node_id_out_of_bounds(node: int) -> None:
    with pytest.raises(ValueError, match=r"node id must be 0\.\.1023"):
        IdGenerator(node)


def test_for_client_keys() -> None:
    assert DEFAULT_LIMITS.for_client() == {
        "max_frame_bytes": 65_536,
        "max_body_chars": 4000,
        "max_client_id_chars": 64,
        "history_max": 100,
        "sync_max_msgs": 200,
        "typing_ttl_s": 6.0,
    }


def test_for_client_follows_the_configured_limits_and_is_json() -> None:
    limits = Limits(max_body_chars=1000, history_max=20, max_token_chars=10)
    sent = limits.for_client()
    assert sent["max_body_chars"] == 1000 and sent["history_max"] == 20
    assert "max_token_chars" not in sent and "auth_timeout_s" not in sent
    assert json.loads(json.dumps(sent)) == sent


def test_default_limits_match_the_contract() -> None:
    assert DEFAULT_LIMITS.max_body_chars == 4000
    assert DEFAULT_LIMITS.max_client_id_chars == 64
    assert DEFAULT_LIMITS.max_user_id_chars == 64
    assert (DEFAULT_LIMITS.history_default, DEFAULT_LIMITS.history_max) == (50, 100)
    assert DEFAULT_LIMITS.typing_ttl_s == 6.0
    assert DEFAULT_LIMITS.auth_timeout_s == 5.0


def test_error_codes_are_the_contract_list() -> None:
    assert {c.value for c in ErrorCode} == {
        "bad_frame", "bad_request", "unknown_type", "too_large", "unauthorized", "forbidden",
        "not_found", "rate_limited", "unavailable", "internal", "opener_limit",
        "duplicate_opener", "quota_exceeded"}


@pytest.mark.parametrize(("code", "status"), [
    (ErrorCode.BAD_FRAME, 400), (ErrorCode.BAD_REQUEST, 400), (ErrorCode.UNKNOWN_TYPE, 400),
    (ErrorCode.TOO_LARGE, 413), (ErrorCode.UNAUTHORIZED, 401), (ErrorCode.FORBIDDEN, 403),
    (ErrorCode.NOT_FOUND, 404), (ErrorCode.RATE_LIMITED, 429), (ErrorCode.UNAVAILABLE, 503),
    (ErrorCode.INTERNAL, 500), (ErrorCode.OPENER_LIMIT, 429), (ErrorCode.DUPLICATE_OPENER, 409),
    (ErrorCode.QUOTA_EXCEEDED, 429),
])
def test_http_status_of_each_code(code: ErrorCode, status: int) -> None:
    assert HTTP_STATUS[code] == status


def test_close_codes_are_the_contract_list() -> None:
    assert {c.value for c in CloseCode} == {1001, 1009, 1012, 1013, 4001, 4002, 4003, 4008,
                                          4009}


def test_protocol_error_carries_its_decision() -> None:
    exc = ProtocolError(ErrorCode.UNAVAILABLE, "store down", r=3, retry_ms=200)
    assert (exc.code, exc.msg, exc.r, exc.retry_ms) == (ErrorCode.UNAVAILABLE, "store down",
                                                        3, 200)
    assert str(exc) == "unavailable: store down"
    quota = ProtocolError(ErrorCode.QUOTA_EXCEEDED, "no likes left", reset_ms=1_700_000_000_000)
    assert (quota.reset_ms, quota.retry_ms) == (1_700_000_000_000, None)
