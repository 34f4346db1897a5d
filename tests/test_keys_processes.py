"""Daemon keys end to end with real processes, as an operator uses them: `provd serve
--daemon-psk off` (or PROVD_DAEMON_PSK=off), `provd keys create`, `provd daemon
--key-file`, `provd jobs create --follow`, `provd keys delete`."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from provd.secrets import DAEMON_PSK_FILE, secret_path
from tests.conftest import ADMIN_TOKEN, DAEMON_PSK
from tests.processes import EXIT_SECONDS, provd_env, run_cli, start_daemon, start_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def env_without_psk(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in provd_env().items() if k != "PROVD_DAEMON_PSK"}
    env.update(extra)
    return env


async def run_daemon_to_its_end(
    url: str, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(EXIT_SECONDS * 2):
        return await trio.run_process(
            [sys.executable, "-m", "provd", "daemon", "--url", url, "--name", "laptop"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )


@pytest.mark.parametrize("how", ["flag", "env"])
async def test_keys_only_server_daemon_with_a_key_file(
    tmp_path: Path, nursery: trio.Nursery, how: str
) -> None:
    db = tmp_path / "provd.db"
    if how == "flag":
        server = await start_server(nursery, db, "--daemon-psk", "off", env=env_without_psk())
    else:
        server = await start_server(nursery, db, env=env_without_psk(PROVD_DAEMON_PSK="off"))
    assert not secret_path(db, DAEMON_PSK_FILE).exists()

    # The pre-shared key is refused: the daemon says so and exits 1.
    refused = await run_daemon_to_its_end(server.url, provd_env(PROVD_DAEMON_PSK=DAEMON_PSK))
    assert refused.returncode == 1, refused.stderr.decode()
    assert "unauthenticated" in refused.stderr.decode()
    assert "--daemon-psk off" in refused.stderr.decode()

    created = await run_cli(server.url, "keys", "create", "laptop", "--tag", "os=linux")
    secret = next(
        line.split()[1]
        for line in created.stdout.decode().splitlines()
        if line.startswith("secret")
    )
    key_file = tmp_path / "daemon.key"
    key_file.write_text(secret + "\n")
    daemon = await start_daemon(
        nursery, server.url, "--key-file", str(key_file), env=env_without_psk()
    )
    assert b"with daemon key " in daemon.output and secret.encode() not in daemon.output
    built = await run_cli(
        server.url,
        "jobs",
        "create",
        "--type",
        "import",
        "--archive",
        str(ROOT / "examples" / "hello"),
        "--tag",
        "os=linux",
        "--follow",
    )
    assert b"succeeded" in built.stderr + built.stdout

    listed = (await run_cli(server.url, "keys", "list")).stdout.decode().splitlines()
    assert listed[2].split()[0] == "laptop" and listed[2].split()[-1] == "1"  # connected

    # Deleting the key: the daemon's waiting stream ends, its next calls are refused,
    # and it stops saying why.
    await run_cli(server.url, "keys", "delete", "laptop")
    with trio.fail_after(EXIT_SECONDS):
        status = await daemon.process.wait()
    assert status == 1 and b"was deleted" in daemon.output, daemon.output.decode()
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0


async def test_the_admin_commands_need_no_daemon_credentials(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """`provd keys` is an admin command: the admin token is all it needs."""
    server = await start_server(nursery, tmp_path / "provd.db")
    env = {**env_without_psk(), "PROVD_URL": server.url, "PROVD_ADMIN_TOKEN": ADMIN_TOKEN}
    with trio.fail_after(EXIT_SECONDS * 2):
        result = await trio.run_process(
            [sys.executable, "-m", "provd", "keys", "list", "--json"],
            capture_stdout=True,
            check=True,
            env=env,
        )
    assert b'"keys": []' in result.stdout
