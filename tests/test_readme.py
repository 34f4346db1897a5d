"""README.md's "First five minutes", pasted as written: the daemon in the background,
then each command of the last block, which must all succeed."""

from __future__ import annotations

import re
import shlex
import signal
import sys
from pathlib import Path

import pytest
import trio

from tests.processes import provd_env, start_daemon, start_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def walkthrough_blocks() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## First five minutes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def argv(command: str) -> list[str]:
    """The command's words; `.venv/bin/provd` is this test's own provd when the clone's
    venv is elsewhere (the words after it are unchanged)."""
    words = shlex.split(command)
    if words[0] == ".venv/bin/provd" and not (ROOT / ".venv/bin/provd").exists():
        return [sys.executable, "-m", "provd", *words[1:]]
    return words


async def test_first_five_minutes(tmp_path: Path, nursery: trio.Nursery) -> None:
    daemon_block, commands = walkthrough_blocks()
    assert daemon_block == [".venv/bin/provd daemon"]
    # The user's defaults, in a private data directory: the daemon and the CLI find
    # the server's generated secrets beside its database, as on a laptop.
    data_home = tmp_path / "xdg"
    env = {
        k: v for k, v in provd_env().items() if k not in ("PROVD_ADMIN_TOKEN", "PROVD_DAEMON_PSK")
    }
    env["XDG_DATA_HOME"] = str(data_home)
    server = await start_server(nursery, data_home / "provd" / "provd.db", env=env)
    env["PROVD_URL"] = server.url
    daemon = await start_daemon(
        nursery, server.url, command=argv(daemon_block[0]), env=env, cwd=ROOT
    )
    try:
        for command in commands:
            with trio.fail_after(60):
                result = await trio.run_process(
                    argv(command),
                    cwd=ROOT,
                    env=env,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            if "--follow" in command:
                assert b"succeeded" in result.stderr
    finally:
        daemon.signal(signal.SIGINT)
        assert await daemon.wait() == 0
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0
    assert await trio.Path(data_home / "provd" / "admin-token").exists()
