"""Processes sharing one SQLite file take turns writing through an flock beside it, and
a write that another program keeps waiting too long fails as `unavailable`."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import threading
from functools import partial
from pathlib import Path

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.errors import StoreBusy
from provd.store import _faults
from provd.store._write_lock import WriteLock, write_lock_path
from provd.store._writer import Writer
from tests.conftest import Server
from tests.daemon_clients import Jobs


def _writer(path: Path) -> tuple[sqlite3.Connection, Writer, WriteLock]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = wal")
    lock = WriteLock(path)
    return conn, Writer(conn, partial(_faults.translate, path=path), process_lock=lock), lock


def _held_elsewhere(path: Path) -> bool:
    """Whether some other open file description holds the write lock now."""
    fd = os.open(write_lock_path(path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        assert error.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


async def test_a_second_writer_waits_for_the_first_on_the_lock_not_on_sqlite(
    tmp_path: Path,
) -> None:
    """Two writers (as two processes would have) on one file: while A's transaction
    runs, A holds the flock and B's write has not begun; when A commits, B runs."""
    path = tmp_path / "shared.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (v TEXT)")
    setup.close()
    conn_a, writer_a, lock_a = _writer(path)
    conn_b, writer_b, lock_b = _writer(path)
    inside_a, release_a = threading.Event(), threading.Event()
    b_ran = threading.Event()

    def write_a(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('a')")
        inside_a.set()
        release_a.wait(10)

    def write_b(conn: sqlite3.Connection) -> None:
        b_ran.set()
        conn.execute("INSERT INTO t VALUES ('b')")

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for writer in (writer_a, writer_b):
                    nursery.start_soon(partial(trio.to_thread.run_sync, writer.run))
                nursery.start_soon(writer_a.write, write_a)
                await trio.to_thread.run_sync(inside_a.wait)
                nursery.start_soon(writer_b.write, write_b)
                assert _held_elsewhere(path)
                await trio.sleep(0.2)  # time for B to start, if it could (it must not)
                assert not b_ran.is_set()
                release_a.set()
                await trio.to_thread.run_sync(b_ran.wait)
                writer_a.stop()
                writer_b.stop()
        assert [row[0] for row in conn_a.execute("SELECT v FROM t ORDER BY rowid")] == ["a", "b"]
        assert not _held_elsewhere(path)
    finally:
        for conn in (conn_a, conn_b):
            conn.close()
        for lock in (lock_a, lock_b):
            lock.close()


def test_a_busy_database_is_store_busy_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    translated = _faults.translate(error, path)
    assert isinstance(translated, StoreBusy)
    assert str(path) in str(translated) and "retry" in str(translated)
    other = sqlite3.OperationalError("no such table: t")
    other.sqlite_errorcode = sqlite3.SQLITE_ERROR  # type: ignore[attr-defined]
    assert _faults.translate(other, path) is other


@pytest.mark.slow
async def test_another_program_holding_the_lock_too_long_is_unavailable(server: Server) -> None:
    """A program outside provd keeps a write transaction open past SQLite's busy
    timeout (5 s): CreateJob fails `unavailable`, saying so; once it lets go, the same
    call succeeds."""
    jobs = Jobs(server)
    await jobs.file_hash()
    squatter = sqlite3.connect(server.db_path, isolation_level=None)
    try:
        squatter.execute("BEGIN IMMEDIATE")
        with pytest.raises(ConnectError) as refused:
            await jobs.create()
        assert refused.value.code == Code.UNAVAILABLE
        assert "another program kept" in refused.value.message
    finally:
        squatter.execute("ROLLBACK")
        squatter.close()
    assert (await jobs.create()).id
