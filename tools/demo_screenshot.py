"""Take docs/demo.png: start a node as `rendezvous serve` does (embedded default, on a fresh
data dir's development secret, free ports), drive its /demo page in headless chromium into
a conversation (tools/demo_screenshot.mjs) and save the screenshot.

    make screenshot        # or: .venv/bin/python tools/demo_screenshot.py docs/demo.png
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from server.config import Config, JwtKey, dev_secret  # noqa: E402
from server.node import Node  # noqa: E402


async def main(out: Path) -> int:
    node_exe = shutil.which("node")
    if node_exe is None:
        print("node is not on PATH (Node.js 20+)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="rdv-demo-") as data:
        data_dir = Path(data)
        config = Config(ws_port=0, http_port=0, data_dir=data_dir, presence_grace_s=0.0,
                        jwt_keys=(JwtKey("HS256", dev_secret(data_dir)),))
        node = Node(config)
        await node.start()
        try:
            url = f"http://127.0.0.1:{node.http_port}"
            proc = await asyncio.create_subprocess_exec(
                node_exe, str(REPO / "tools" / "demo_screenshot.mjs"), url, str(out))
            return await asyncio.wait_for(proc.wait(), timeout=120)
        finally:
            await node.stop()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "docs" / "demo.png").resolve()
    sys.exit(asyncio.run(main(target)))
