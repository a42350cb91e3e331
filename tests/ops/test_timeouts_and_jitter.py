"""No `asyncio.wait_for` in our code (on 3.11 it can swallow a cancellation; `asyncio.timeout`
cannot: runtime/tasks.py), and retry loops back off with full jitter (docs/operations.md,
"Start-up")."""

from __future__ import annotations

import ast
from pathlib import Path

from redis.backoff import FullJitterBackoff

from runtime.backoff import Backoff, full_jitter
from server.backends.redis_state import connect_redis
from server.config import Config

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("runtime", "server", "storage", "push", "client", "loadtest", "benchmarks")


def wait_for_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "wait_for":
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "asyncio":
            lines += [node.lineno for alias in node.names if alias.name == "wait_for"]
    return lines


def test_no_asyncio_wait_for_in_our_code() -> None:
    found = {str(p.relative_to(REPO)): lines for package in PACKAGES
             for p in sorted((REPO / package).rglob("*.py"))
             if (lines := wait_for_calls(p))}
    assert found == {}, f"use asyncio.timeout instead of wait_for: {found}"


def test_full_jitter_spreads_over_the_whole_range() -> None:
    delays = [full_jitter(6, 0.05, 2.0) for _ in range(500)]
    assert all(0 <= d < 2.0 for d in delays)
    assert min(delays) < 0.2 and max(delays) > 1.8  # not bunched at the cap
    assert full_jitter(2, 0.1, 10.0, rng=lambda: 0.5) == 0.2
    backoff = Backoff(0.1, 1.0, rng=lambda: 1.0)
    assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    backoff.reset()
    assert backoff.next() == 0.1


async def test_redis_clients_retry_with_full_jitter() -> None:
    client = connect_redis(Config(redis_url="redis://127.0.0.1:1/0"))
    try:
        retry = client.connection_pool.connection_kwargs["retry"]
        assert isinstance(retry._backoff, FullJitterBackoff)
    finally:
        await client.aclose()
