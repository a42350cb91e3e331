"""The node's pages in a real headless browser: the /demo page (two users chatting) and
/docs with the network cut.

Debian's `chromium` is driven by npm's `playwright-core` (tests/browser/package.json: no
browser download), from Node test files next to this one. This module starts a real node on
free ports, running on its development secret as `make serve` does (so the demo can mint
tokens), and runs them with `node --test`. It fails, never skips, when Node.js, the npm
packages or chromium are missing: `make test` installs them (`system-deps`,
`browser-deps`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from server.node import Node
from tests.conftest import SECRET, Harness, NodeFactory

HERE = Path(__file__).resolve().parent
JS_DIR = HERE.parents[1] / "clients" / "js"
CHROMIUM = os.environ.get("RDV_CHROMIUM", "/usr/bin/chromium")
HINT = "`make test` installs them first (`make system-deps browser-deps js-sdk`)."


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"`node` is not on PATH: the browser tests need Node.js 20+. {HINT}",
                    pytrace=False)
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"{HERE / 'node_modules'} has no playwright-core. {HINT}", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no chromium at {CHROMIUM} (Debian's `chromium` package). {HINT}",
                    pytrace=False)
    return node


async def run_node_tests(test_file: str, http_url: str, timeout_s: float = 150,
                         **env_vars: str) -> str:
    """Run one Node test file against the node at `http_url` (and `env_vars`); its output,
    after checking that every test in it passed and none was skipped."""
    node = _node()
    env = {**os.environ, "RDV_HTTP_URL": http_url, "RDV_CHROMIUM": CHROMIUM, **env_vars}
    proc = await asyncio.create_subprocess_exec(
        node, "--test", "--test-reporter=spec", test_file, cwd=HERE, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    output = out.decode(errors="replace")
    print(output)  # shown by pytest -s, and on failure
    assert proc.returncode == 0, f"{test_file} failed (exit {proc.returncode}):\n{output[-20000:]}"
    for counter in ("fail", "skipped", "todo", "cancelled"):
        assert re.search(rf"^(?:\S+ )?{counter} 0$", output, re.M), f"{counter}: not 0"
    passed = re.search(r"^(?:\S+ )?pass (\d+)$", output, re.M)
    assert passed and int(passed.group(1)) > 0, "no browser test passed"
    return output


@pytest.fixture
async def dev_node(node_factory: NodeFactory, tmp_path: Path) -> Node:
    """A node on its data dir's development secret, as `rendezvous serve` with no secret
    configured runs (server/config.py, `dev_secret`)."""
    data_dir = tmp_path / "dev"
    data_dir.mkdir()
    (data_dir / "jwt-secret").write_text(SECRET + "\n")
    return await node_factory(data_dir=data_dir)


@pytest.mark.timeout(180)
async def test_demo_two_users_in_a_browser(dev_node: Node) -> None:
    await run_node_tests("demo.test.mjs", f"http://127.0.0.1:{dev_node.http_port}")


@pytest.mark.timeout(180)
async def test_demo_takes_a_pasted_token_where_the_node_mints_none(rdv: Harness) -> None:
    # `rdv`'s node has its secret configured, none in the data dir: no dev tokens
    await run_node_tests("pasted.test.mjs", rdv.http_url, RDV_TOKEN_DANA=rdv.token("dana"))


@pytest.mark.timeout(180)
async def test_docs_render_with_the_network_cut(node: Node) -> None:
    await run_node_tests("docs.test.mjs", f"http://127.0.0.1:{node.http_port}")


def test_the_demo_serves_the_sdk_as_built() -> None:
    """server/edge/demo_static/rendezvous-sdk.js is what clients/js/src bundles to today."""
    node = _node()
    if not (JS_DIR / "node_modules" / "esbuild").is_dir():
        pytest.fail(f"{JS_DIR / 'node_modules'} has no esbuild. {HINT}", pytrace=False)
    done = subprocess.run([node, "scripts/bundle.mjs", "--check"], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
