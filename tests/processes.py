"""Run `provd` as a real subprocess, the way users and init systems do."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import trio

from tests.conftest import ADMIN_TOKEN, DAEMON_PSK

_LISTENING = re.compile(rb"listening on (https?://\S+)")
# Guards against hangs, not performance assertions.
START_SECONDS = 30
EXIT_SECONDS = 15


@dataclass
class ServerProcess:
    process: trio.Process
    url: str
    output: bytearray

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self) -> int:
        with trio.fail_after(EXIT_SECONDS):
            return await self.process.wait()


def provd_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PROVD_ADMIN_TOKEN=ADMIN_TOKEN, PROVD_DAEMON_PSK=DAEMON_PSK, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


async def start_server(
    nursery: trio.Nursery,
    db_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    listen: str = "127.0.0.1:0",
) -> ServerProcess:
    """Start `python -m provd serve` on `listen` (port 0: any free port) and wait for
    the address it prints."""
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "provd",
            "serve",
            "--listen",
            listen,
            "--db",
            str(db_path),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env or provd_env(),
    )
    assert process.stdout is not None
    output = bytearray()
    with trio.fail_after(START_SECONDS):
        while (match := _LISTENING.search(output)) is None:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise RuntimeError(f"provd exited before listening:\n{output.decode()}")
            output += chunk
    server = ServerProcess(process, match.group(1).decode(), output)
    nursery.start_soon(_drain, process, output)
    return server


async def _drain(process: trio.Process, output: bytearray) -> None:
    """Keep reading the server's output so it never blocks on a full pipe."""
    assert process.stdout is not None
    try:
        while chunk := await process.stdout.receive_some():
            output += chunk
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)


@dataclass
class DaemonProcess:
    process: trio.Process
    output: bytearray

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self) -> int:
        with trio.fail_after(EXIT_SECONDS):
            return await self.process.wait()


async def start_daemon(
    nursery: trio.Nursery,
    url: str,
    *args: str,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> DaemonProcess:
    """Start `python -m provd daemon` (or `command`) and wait until it says it runs."""
    process = await trio.lowlevel.open_process(
        command or [sys.executable, "-m", "provd", "daemon", "--url", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env or provd_env(),
        cwd=cwd,
    )
    assert process.stdout is not None
    output = bytearray()
    with trio.fail_after(START_SECONDS):
        while b"jobs from" not in output:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise RuntimeError(f"provd daemon exited early:\n{output.decode()}")
            output += chunk
    nursery.start_soon(_drain, process, output)
    return DaemonProcess(process, output)


async def run_cli(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run one `python -m provd` command to its end, as a shell user would."""
    with trio.fail_after(START_SECONDS * 2):
        result = await trio.run_process(
            [sys.executable, "-m", "provd", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=provd_env(PROVD_URL=url),
        )
    if check and result.returncode != 0:
        raise AssertionError(
            f"provd {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout.decode()}\n{result.stderr.decode()}"
        )
    return result


async def serve_failure(*args: str) -> str:
    """Run `provd serve ARGS` to its end; assert exit 2 and a one-line error, no
    traceback; return that line."""
    with trio.fail_after(START_SECONDS):
        result = await trio.run_process(
            [sys.executable, "-m", "provd", "serve", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=provd_env(),
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, stderr)
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("provd: "), stderr
    return lines[0]
