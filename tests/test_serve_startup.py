"""`provd serve` that cannot start says why in one line and exits 2, as a user sees it:
a real subprocess, its stderr read whole."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.processes import START_SECONDS, provd_env, serve_failure

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_port_in_use(tmp_path: Path, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = await serve_failure(
            "--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "p.db"), "--workers", workers
        )
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in line
    assert "--listen" in line


async def test_data_directory_that_cannot_be_created(tmp_path: Path) -> None:
    in_the_way = tmp_path / "data"
    in_the_way.write_text("a file, not a directory")
    db = in_the_way / "provd.db"
    line = await serve_failure("--listen", "127.0.0.1:0", "--db", str(db))
    assert f"cannot create the data directory {in_the_way}" in line
    assert "is a file, not a directory" in line


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_file_that_is_not_a_database(tmp_path: Path, workers: str) -> None:
    """With workers, the supervisor opens the store before it starts any."""
    db = tmp_path / "provd.db"
    db.write_bytes(b"just some text, certainly not SQLite\n" * 200)
    line = await serve_failure("--listen", "127.0.0.1:0", "--db", str(db), "--workers", workers)
    assert f"{db} is not a SQLite database" in line


async def test_a_database_from_a_newer_provd(tmp_path: Path) -> None:
    db = tmp_path / "provd.db"
    with trio.fail_after(START_SECONDS):
        # Create a current database by starting provd once with a command that exits.
        await trio.run_process(
            [sys.executable, "-c", _CREATE_DB, str(db)], check=True, stdout=subprocess.DEVNULL
        )
    with sqlite3.connect(db) as connection:
        connection.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
            " VALUES ('provd', '9999_from_the_future', '2030-01-01')"
        )
    connection.close()
    line = await serve_failure("--listen", "127.0.0.1:0", "--db", str(db))
    assert "was written by a newer provd" in line and "9999_from_the_future" in line


_CREATE_DB = """
import sys, trio
from pathlib import Path
from provd.store.sqlite import open_sqlite_store

async def main():
    async with open_sqlite_store(Path(sys.argv[1])):
        pass

trio.run(main)
"""


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--hang-timeout", "0"),
        ("--pending-timeout", "-1"),
        ("--pending-timeout", "soon"),
        ("--heartbeat-interval", "nan"),
        ("--poll-interval", "-5"),
        ("--log-poll-interval", "0"),
        ("--workers", "0"),
        ("--workers", "many"),
    ],
)
async def test_a_bad_timer_or_worker_count_is_refused_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    with trio.fail_after(START_SECONDS):
        result = await trio.run_process(
            [sys.executable, "-m", "provd", "serve", "--db", str(tmp_path / "p.db"), option, value],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=provd_env(),
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert f"Invalid value for '{option}'" in stderr, stderr
    assert not (tmp_path / "p.db").exists()
