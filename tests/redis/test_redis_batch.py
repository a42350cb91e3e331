"""The `TurnBatcher` contract against real Redis, standalone and cluster: one pipeline per
loop turn, order kept, a failing command fails only its caller, a bound past which callers
fail fast, and Redis outages that fail a batch without wedging the next."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from runtime.redis_batch import BatchFull, BatchScript, TurnBatcher, pack_commands
from server.backends.redis_state import connect_redis
from server.config import Config
from tests.redis_servers import RedisServer

INCR_BY = BatchScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


def test_packing_matches_redis_py() -> None:
    commands: list[tuple[Any, ...]] = [("SET", "k:é", b"\x00\xff", "PX", 30_000),
                                       ("EVALSHA", INCR_BY.sha, 1, "k", 2.5), ("PING",)]
    assert pack_commands(commands) == b"".join(Redis().connection_pool.make_connection()
                                               .pack_commands(commands))
    with pytest.raises(RedisError):
        pack_commands([("SET", "k", True)])  # as redis-py: a bool is no Redis value


async def test_calls_of_one_turn_are_one_pipeline_in_order(redis_clients: Any,
                                                           prefix: str) -> None:
    batcher = TurnBatcher(redis_clients())
    key = f"{prefix}{{k}}list"  # one slot: order on a cluster is order on one shard
    replies = await asyncio.gather(*(batcher.call("RPUSH", key, n) for n in range(200)))
    assert batcher.batches == 1 and batcher.commands == 200
    assert replies == list(range(1, 201))
    assert [int(v) for v in await batcher.call("LRANGE", key, 0, -1)] == list(range(200))
    # Sequential callers: each await is a turn of its own, and sees the one before.
    for n in range(3):
        assert await batcher.script(INCR_BY, (f"{prefix}n",), (5,)) == 5 * (n + 1)


async def test_commands_on_many_slots_come_back_to_their_callers(redis_clients: Any,
                                                                 prefix: str) -> None:
    batcher = TurnBatcher(redis_clients())
    await asyncio.gather(*(batcher.call("SET", f"{prefix}k{n}", f"v{n}") for n in range(300)))
    values = await asyncio.gather(*(batcher.call("GET", f"{prefix}k{n}") for n in range(300)))
    assert values == [f"v{n}".encode() for n in range(300)]
    many = await batcher.call_many([("GET", f"{prefix}k{n}") for n in range(5)])
    assert many == [f"v{n}".encode() for n in range(5)]


async def test_a_failing_command_fails_only_its_caller(redis_clients: Any,
                                                       prefix: str) -> None:
    batcher = TurnBatcher(redis_clients())
    await batcher.call("SET", f"{prefix}text", "not a number")
    results = await asyncio.gather(batcher.call("INCR", f"{prefix}a"),
                                   batcher.call("INCR", f"{prefix}text"),
                                   batcher.call("INCR", f"{prefix}b"),
                                   return_exceptions=True)
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], ResponseError)
    replies = await batcher.call_many([("INCR", f"{prefix}a"), ("INCR", f"{prefix}text")])
    assert replies[0] == 2 and isinstance(replies[1], ResponseError)  # in place, not raised


async def test_a_cancelled_caller_leaves_the_others_their_replies(redis_clients: Any,
                                                                  prefix: str) -> None:
    batcher = TurnBatcher(redis_clients())
    gone = asyncio.ensure_future(batcher.call("INCR", f"{prefix}gone"))
    kept = batcher.call("INCR", f"{prefix}kept")
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == 1
    assert int(await batcher.call("GET", f"{prefix}gone")) == 1  # sent all the same


async def test_past_the_bound_callers_fail_fast(redis_clients: Any, prefix: str) -> None:
    batcher = TurnBatcher(redis_clients(), max_queued=10, max_batch=4)
    queued = [batcher.call("INCR", f"{prefix}n") for _ in range(10)]
    with pytest.raises(BatchFull):
        batcher.call("INCR", f"{prefix}n")
    with pytest.raises(ValueError):
        batcher.call_many([("PING",)] * 5)  # more than one batch can hold
    assert await asyncio.gather(*queued) == list(range(1, 11))
    assert batcher.batches == 3  # 4 + 4 + 2: a batch has a bound too
    assert await batcher.call("INCR", f"{prefix}n") == 11  # room again


async def test_a_forgotten_script_is_sent_again_with_its_body(redis_clients: Any,
                                                              prefix: str) -> None:
    client = redis_clients()
    batcher = TurnBatcher(client)
    assert await batcher.script(INCR_BY, (f"{prefix}s",), (1,)) == 1
    await client.script_flush()  # what a restarted Redis forgets
    assert await asyncio.gather(*(batcher.script(INCR_BY, (f"{prefix}s",), (1,))
                                  for _ in range(3))) == [2, 3, 4]


async def test_an_outage_fails_the_batch_and_the_next_one_recovers(
        redis_server: RedisServer) -> None:
    client = connect_redis(Config(redis_url=redis_server.url))
    batcher = TurnBatcher(client)
    try:
        assert await batcher.call("INCR", "n") == 1
        redis_server.stop(kill=True)
        results = await asyncio.gather(batcher.call("INCR", "n"), batcher.call("PING"),
                                       return_exceptions=True)
        assert all(isinstance(r, RedisError | OSError) for r in results), results
        redis_server.start()  # empty: a fresh connection, no reply lost in between
        assert await batcher.call("INCR", "n") == 1
        assert batcher.queued() == 0
    finally:
        await batcher.close()
        await client.aclose()


async def test_close_fails_what_still_waits(redis_server: RedisServer) -> None:
    client = connect_redis(Config(redis_url=redis_server.url))
    batcher = TurnBatcher(client)
    waiting = batcher.call("PING")
    await batcher.close()
    with pytest.raises(RedisError):
        await waiting
    await client.aclose()


async def test_replies_are_read_from_the_hiredis_reader_in_one_loop(
        redis_server: RedisServer, prefix: str) -> None:
    """Standalone, the batcher takes a batch's replies straight from redis-py's hiredis
    reader (not `read_response` per reply), errors answered in place included; a reply
    bigger than one socket read comes back whole."""
    client = connect_redis(Config(redis_url=redis_server.url))
    batcher = TurnBatcher(client)
    try:
        await batcher.call("PING")
        conn = batcher._conn

        async def not_this_way(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("read_response was used")
        conn.read_response = not_this_way
        big = "x" * 300_000
        replies = await batcher.call_many([
            ("SET", f"{prefix}k", big), ("GET", f"{prefix}k"), ("INCR", f"{prefix}k"),
            ("PING",)])
        assert replies[0] is True or replies[0] == b"OK"
        assert replies[1] == big.encode()
        assert isinstance(replies[2], ResponseError)
        assert replies[3] in (True, b"PONG")
    finally:
        await batcher.close()
        await client.aclose()
