"""The crash drill against a real node on a real Cassandra: kill -9 of Cassandra under load
loses no acknowledged message (benchmarks/cassandra_crash_drill.py; docs/storage.md)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.cassandra_node import REPO, CassandraNode

DRILL = REPO / "benchmarks" / "cassandra_crash_drill.py"


async def test_kill_9_of_cassandra_under_load_loses_no_acked_message(
        cassandra_node: CassandraNode, tmp_path: Path) -> None:
    out = tmp_path / "drill.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(DRILL), "--cassandra-dir", str(cassandra_node.workdir),
        "--runs", "1", "--senders", "8", "--kill-after", "3", "--down", "1", "--after", "1",
        "--json", str(out), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(240):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if cassandra_node.pid is None:  # the drill failed between kill and restart
            await asyncio.to_thread(cassandra_node.start)
    text = output.decode(errors="replace")
    print(text[-1500:])
    assert out.is_file(), text[-3000:]
    (run,) = json.loads(out.read_text())
    assert run["acked_before_kill"] > 0 and run["acked"] > run["acked_before_kill"], run
    assert run["missing"] == 0 and run["last_before_kill_kept"], run
    assert proc.returncode == 0, text[-3000:]
