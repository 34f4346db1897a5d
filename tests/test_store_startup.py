"""Opening the SQLite store: private files, and one clear error for an unusable database.

Each unusable case must raise `StoreUnusable` itself (not an exception group, not a
sqlite3 error) from `open_sqlite_store`, with one line that says what is wrong and
what to do: `provd serve` prints it as is and exits 2. Cases that need a non-root
user run in a subprocess without CAP_DAC_OVERRIDE when the tests run as root (setpriv);
cases that need a read-only file system mount a tmpfs (root).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import provd
from provd.app import serve
from provd.errors import StoreUnusable
from provd.store import sqlite as sqlite_store
from provd.store.migrations import known_migrations
from provd.store.sqlite import open_sqlite_store, prepare_data_dir
from tests.conftest import server_settings
from tests.store.disks import remount_read_only, tmpfs
from tests.store.support import ARCHIVE, TAR, new_job

REPO = Path(provd.__file__).resolve().parent.parent


async def _make_database(path: Path) -> None:
    """A provd database with one job in it, closed."""
    async with open_sqlite_store(path) as store:
        stored = await store.put_file(ARCHIVE, TAR)
        await store.create_job(new_job(stored.hash))


async def _unusable(path: Path) -> str:
    """Open `path`; it must fail with StoreUnusable, whose message is returned."""
    with pytest.raises(StoreUnusable) as raised:
        async with open_sqlite_store(path):
            pass
    message = str(raised.value)
    assert "\n" not in message
    return message


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


# -- finding 9: the files are private -------------------------------------------------


async def test_new_directory_and_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "new" / "data" / "provd.db"
    with _umask(0):
        async with open_sqlite_store(path) as store:
            stored = await store.put_file(ARCHIVE, TAR)
            await store.create_job(new_job(stored.hash))
            modes = {p.name: _mode(p) for p in path.parent.iterdir()}
    assert modes == {
        "provd.db": 0o600,
        "provd.db-wal": 0o600,
        "provd.db-shm": 0o600,
        "provd.db-writer.lock": 0o600,  # the processes' turn-taking (_write_lock)
    }
    assert _mode(path.parent) == 0o700
    assert _mode(path.parent.parent) == 0o777  # parents are made as `mkdir -p` would


async def test_existing_files_open_to_others_are_tightened(tmp_path: Path) -> None:
    """As an older provd left them: 0644 (and a group-writable one)."""
    path = tmp_path / "provd.db"
    await _make_database(path)
    holder = sqlite3.connect(path)  # keeps -wal and -shm in place, as after a crash
    try:
        holder.execute("SELECT count(*) FROM jobs").fetchone()
        side = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        for file in (path, *side):
            file.chmod(0o644)
        side[0].chmod(0o664)
        async with open_sqlite_store(path):
            pass
        assert {f.name: _mode(f) for f in (path, *side)} == {
            "provd.db": 0o600,
            "provd.db-wal": 0o600,
            "provd.db-shm": 0o600,
        }
    finally:
        holder.close()


async def test_an_existing_directory_is_left_as_the_user_made_it(tmp_path: Path) -> None:
    directory = tmp_path / "chosen"
    directory.mkdir()
    directory.chmod(0o755)
    async with open_sqlite_store(directory / "provd.db"):
        pass
    assert _mode(directory) == 0o755
    assert _mode(directory / "provd.db") == 0o600


async def test_a_file_that_is_not_provds_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, named by --db by mistake\n" * 20)
    path.chmod(0o644)
    await _unusable(path)
    assert _mode(path) == 0o644


def test_prepare_data_dir_makes_the_directory_private(tmp_path: Path) -> None:
    """For the CLI, which writes the generated secrets beside the database."""
    with _umask(0o022):
        prepare_data_dir(tmp_path / "data" / "provd.db")
    assert _mode(tmp_path / "data") == 0o700
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreUnusable, match="is a file, not a directory"):
        prepare_data_dir(tmp_path / "file" / "provd.db")


# -- finding 8: a data directory that cannot be created -------------------------------


async def test_a_file_in_the_way_of_the_data_directory(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    message = await _unusable(tmp_path / "data" / "provd.db")
    assert message.startswith(f"cannot create the data directory {tmp_path / 'data'}: ")
    assert f"{tmp_path / 'data'} is a file, not a directory; move it away" in message
    message = await _unusable(tmp_path / "data" / "deeper" / "provd.db")
    assert f"{tmp_path / 'data'} is a file, not a directory" in message


OPEN_SCRIPT = """
import sys
from pathlib import Path

import trio

from provd.errors import StoreUnusable
from provd.store.sqlite import open_sqlite_store


async def main() -> None:
    try:
        async with open_sqlite_store(Path(sys.argv[1])):
            print("opened")
    except StoreUnusable as error:
        print(f"StoreUnusable: {error}")


trio.run(main)
"""


def _open_unprivileged(path: Path) -> str:
    """Open `path` in a process that file permissions apply to, even as root, and
    return what it printed."""
    command = [sys.executable, "-c", OPEN_SCRIPT, str(path)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, and setpriv is missing to drop CAP_DAC_OVERRIDE")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False
    )
    if done.returncode != 0 and "setpriv" in done.stderr:
        pytest.skip(f"cannot drop root's privileges here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_data_directory_without_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    out = _open_unprivileged(locked / "data" / "provd.db")
    assert out == (
        f"StoreUnusable: cannot create the data directory {locked / 'data'}: permission"
        " denied; create it (mode 0700) for the user provd runs as, or choose another"
        " database path (--db)"
    )


def test_a_read_only_database_file(tmp_path: Path) -> None:
    import trio

    path = tmp_path / "provd.db"
    trio.run(_make_database, path)
    path.chmod(0o400)
    out = _open_unprivileged(path)
    assert out.startswith(f"StoreUnusable: the database {path} is read-only ("), out
    assert "fix the permissions or the mount" in out


def test_a_directory_where_the_side_files_cannot_be_created(tmp_path: Path) -> None:
    import trio

    directory = tmp_path / "data"
    path = directory / "provd.db"
    trio.run(_make_database, path)
    directory.chmod(0o555)
    try:
        out = _open_unprivileged(path)
    finally:
        directory.chmod(0o700)
    assert out.startswith(f"StoreUnusable: the database {path} is read-only ("), out
    assert "provd.db-wal and provd.db-shm beside it" in out


async def test_a_read_only_file_system(tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    with tmpfs(mount, "4m"):
        await _make_database(mount / "provd.db")
        remount_read_only(mount)
        message = await _unusable(mount / "provd.db")
        assert message.startswith(
            f"the database {mount / 'provd.db'} is read-only (read-only file system)"
        ), message
        message = await _unusable(mount / "data" / "provd.db")
        assert message == (
            f"cannot create the data directory {mount / 'data'}: the file system is"
            " read-only; choose a database path (--db) on a writable file system"
        )
        message = await _unusable(mount / "new.db")
        assert message.startswith(f"the database {mount / 'new.db'} is read-only"), message


async def test_the_database_path_is_a_directory(tmp_path: Path) -> None:
    message = await _unusable(tmp_path)
    assert message == f"{tmp_path} is a directory, not a database file: choose a file path (--db)"


# -- finding 8: files that are not (this provd's) database ----------------------------


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "provd.db"
    path.write_bytes(b"hello, I am a text file and certainly not SQLite\n" * 100)
    message = await _unusable(path)
    assert message == (
        f"{path} is not a SQLite database (or it is encrypted): point --db at provd's"
        " database, or move the file away to start with an empty one"
    )


async def test_a_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "provd.db"
    await _make_database(path)
    with path.open("r+b") as file:  # the schema's page, after the 100-byte header
        file.seek(100)
        file.write(b"\xff" * 3000)
    message = await _unusable(path)
    assert message.startswith(f"the database {path} is corrupt ("), message
    assert "restore it from a backup, or move it away with its -wal and -shm files" in message


async def test_another_programs_database(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    message = await _unusable(path)
    assert message == (
        f"{path} is a SQLite database, but not provd's (it has tables and no provd"
        " schema): point --db at provd's database, or at a new file"
    )
    with sqlite3.connect(path) as conn:  # untouched: no provd tables were added
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert tables == {"notes"}


async def test_a_database_from_a_newer_provd(tmp_path: Path) -> None:
    path = tmp_path / "provd.db"
    await _make_database(path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
            " VALUES ('provd', '0099_from_the_future', 'later')"
        )
    conn.close()
    message = await _unusable(path)
    assert message == (
        f"the database {path} was written by a newer provd: it has schema migration(s)"
        f" 0099_from_the_future, which provd {provd.__version__} does not know; run a"
        " provd at least as new as the one that wrote it, or choose another database"
        " path (--db)"
    )
    assert "0099_from_the_future" not in known_migrations()


# -- finding 8: a lock that is never released -----------------------------------------


@pytest.mark.parametrize("journal", ["wal", "delete"])
async def test_a_database_locked_by_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: str
) -> None:
    """A sqlite3 shell holding a write transaction (WAL), or an exclusive lock that
    blocks even reading (rollback journal): provd waits its busy timeout, then says so."""
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "provd.db"
    await _make_database(path)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute(f"PRAGMA journal_mode = {journal}")
        holder.execute("BEGIN IMMEDIATE" if journal == "wal" else "BEGIN EXCLUSIVE")
        message = await _unusable(path)
    finally:
        holder.close()
    assert message == (
        f"the database {path} is locked by another process that does not let go"
        " (a sqlite3 shell or a backup tool holding a transaction?): stop it, then"
        " start provd again"
    )


# -- the error escapes whole ----------------------------------------------------------


async def test_serve_raises_store_unusable_itself(tmp_path: Path) -> None:
    """Not wrapped in an exception group: the store fails before any nursery starts,
    so `provd serve` can catch exactly this class."""
    path = tmp_path / "provd.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreUnusable, match="is not a SQLite database"):
        await serve(server_settings(path))
