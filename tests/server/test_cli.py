"""`rendezvous serve` and `rendezvous token` as a user runs them: a real process."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from client import RendezvousClient, RendezvousHttp
from tests.node_process import CLI, NodeProcess, env_without_secret
from tests.redis_servers import free_port


@pytest.fixture
async def node_process(tmp_path: Path) -> AsyncIterator[NodeProcess]:
    node = NodeProcess(tmp_path / "data")
    await node.start()
    yield node
    await node.stop(signal.SIGKILL)


async def make_match(node: NodeProcess, a: str, b: str) -> str:
    async with RendezvousHttp(node.http_url, node.token(a)) as api_a, \
            RendezvousHttp(node.http_url, node.token(b)) as api_b:
        await api_a.swipe(b)
        result = await api_b.swipe(a)
    match_id: str = result["match"]["id"]
    return match_id


def test_help() -> None:
    out = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--ws-port", "--http-port", "--data-dir", "--host", "--jwt-key"):
        assert flag in out.stdout
    top = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True)
    assert "serve" in top.stdout and "token" in top.stdout


def test_token_uses_the_data_dir_secret_or_the_environment(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    out = subprocess.run([*CLI, "token", "alice", "--ttl", "60", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, check=True, env=env_without_secret())
    secret = (data_dir / "jwt-secret").read_text().strip()
    claims = jwt.decode(out.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 60
    assert oct((data_dir / "jwt-secret").stat().st_mode & 0o777) == "0o600"
    env = {**env_without_secret(), "RENDEZVOUS_JWT_SECRET": "from-the-environment-0123456789abcdef"}
    out = subprocess.run([*CLI, "token", "bob", "--data-dir", str(data_dir)],
                         capture_output=True, text=True, check=True, env=env)
    claims = jwt.decode(out.stdout.strip(), "from-the-environment-0123456789abcdef",
                        algorithms=["HS256"])
    assert claims["sub"] == "bob"


def test_bad_setting_is_named(tmp_path: Path) -> None:
    out = subprocess.run([*CLI, "serve", "--node-id", "5000", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, env=env_without_secret())
    assert out.returncode == 2 and "node_id" in out.stderr


@pytest.mark.parametrize("setting", ["ws_port", "http_port"])
def test_busy_port_is_a_clear_error(tmp_path: Path, setting: str) -> None:
    flag = "--" + setting.replace("_", "-")
    other = "--http-port" if setting == "ws_port" else "--ws-port"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([*CLI, "serve", flag, str(port), other, str(free_port()),
                              "--data-dir", str(tmp_path)],
                             capture_output=True, text=True, env=env_without_secret(),
                             timeout=30)
    assert out.returncode == 1, out.stderr
    assert f"rendezvous: {setting} {port} ({flag}) is already in use on 127.0.0.1" \
        in out.stderr
    assert "Traceback" not in out.stderr and "Errno" not in out.stderr, out.stderr
    assert "ready" not in out.stdout


async def test_serve_banner_chat_and_graceful_stop(node_process: NodeProcess) -> None:
    banner = "".join(node_process.banner)
    assert f"ws://127.0.0.1:{node_process.ws_port}/v1/ws" in banner
    assert "token USER --data-dir" in banner
    m = await make_match(node_process, "alice", "bob")
    alice = await RendezvousClient.connect(node_process.ws_url, node_process.token("alice"))
    bob = await RendezvousClient.connect(node_process.ws_url, node_process.token("bob"))
    ack = await alice.send(m, "over a real process")
    assert (await bob.next_event("msg"))["id"] == ack["id"]
    assert await node_process.stop(signal.SIGTERM) == 0
    assert await alice.wait_closed() == 1012  # restart: reconnect with jitter
    assert await bob.wait_closed() == 1012


async def test_acked_messages_survive_kill_9(node_process: NodeProcess) -> None:
    m = await make_match(node_process, "alice", "bob")
    alice = await RendezvousClient.connect(node_process.ws_url, node_process.token("alice"))
    acks = await asyncio.gather(*(alice.send(m, f"n{i}") for i in range(30)))
    await node_process.stop(signal.SIGKILL)
    await alice.close()
    await node_process.start()
    async with await RendezvousClient.connect(node_process.ws_url,
                                              node_process.token("bob")) as bob:
        page = await bob.history(m, limit=100)
    assert {x["id"] for x in page["msgs"]} == {a["id"] for a in acks}


def test_short_secret_is_refused(tmp_path: Path) -> None:
    env = {**env_without_secret(), "RENDEZVOUS_JWT_SECRET": "short"}
    out = subprocess.run([*CLI, "serve", "--data-dir", str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=30)
    assert out.returncode == 2 and "RENDEZVOUS_JWT_SECRET" in out.stderr


REPO = Path(__file__).resolve().parents[2]


def banner_token_command(banner: list[str]) -> str:
    """The `Tokens` line's command, exactly as printed."""
    found = re.search(r"^  Tokens +(.+?) {3}\(HS256", "".join(banner), re.MULTILINE)
    assert found is not None, banner
    return found.group(1)


async def check_banner_command_mints_a_token(node: NodeProcess, cwd: Path | None) -> str:
    """Run the banner's token command through a shell, as a user pastes it, and use the
    token it prints on the node."""
    command = banner_token_command(node.banner)
    assert "USER" in command
    shell = await asyncio.create_subprocess_shell(
        command.replace("USER", "alice"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=node.env, cwd=cwd)
    async with asyncio.timeout(30):
        out, err = await shell.communicate()
    assert shell.returncode == 0, (command, err.decode())
    async with RendezvousHttp(node.http_url, out.decode().strip()) as api:
        assert (await api.put_settings(show_online=True))["show_online"] is True
    return command


async def test_the_banner_command_runs_as_printed_under_python_m(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "data")
    await node.start()
    try:
        command = await check_banner_command_mints_a_token(node, tmp_path)
        assert command.startswith(f"{sys.executable} -m server.cli token USER")
    finally:
        await node.stop(signal.SIGKILL)


async def test_the_banner_command_runs_as_printed_from_an_installed_script(
        tmp_path: Path) -> None:
    """Like `make serve`: `.venv/bin/rendezvous serve` from the project directory, with
    `rendezvous` not on PATH; the banner must not print a bare `rendezvous`."""
    script = tmp_path / ".venv" / "bin" / "rendezvous"
    script.parent.mkdir(parents=True)
    script.write_text(f"#!{sys.executable}\n"  # what pip writes for a console script
                      "import sys\nfrom server.cli import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    env = {**env_without_secret(), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    node = NodeProcess(Path("rendezvous-data"), env=env, command=[".venv/bin/rendezvous"],
                       cwd=tmp_path)
    await node.start()
    try:
        command = await check_banner_command_mints_a_token(node, tmp_path)
        assert command == ".venv/bin/rendezvous token USER --data-dir rendezvous-data"
    finally:
        await node.stop(signal.SIGKILL)
