"""Disk full: writes fail with a clear code, nothing acknowledged is lost, and provd
takes writes again by itself once space is freed.

The disk is a small tmpfs when this process may mount one, else a file-size limit
(tests/store/disks.py). Once it is full, every write that needs a new page of the
write-ahead log fails; the tests check that each one fails alone with `StoreFull`
(`resource_exhausted` over Connect), that no write hangs and the writer thread lives
on, that reads keep working, that the first write after space is freed succeeds, and
that everything acknowledged before, during and after is in the file when it is
opened again.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import outcome
import pytest
import trio
import trio.testing
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.app import Running, serve
from provd.errors import StoreFull, StoreUnusable
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.model import Job, JobQuery
from provd.registry import DaemonRegistry
from provd.store import _faults
from provd.store._writer import Writer
from provd.store.sqlite import open_sqlite_store
from tests.conftest import Server, server_settings
from tests.daemon_clients import Jobs, TestDaemon, wait_until
from tests.store.disks import Disk, small_disk
from tests.store.support import ARCHIVE, TAR, log, new_job

# Guards against hangs, not performance assertions.
HANG_SECONDS = 20
REFUSED_ONE_BY_ONE = 10
REFUSED_TOGETHER = 20


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    with small_disk(tmp_path) as small:
        yield small


def _full_error(message: str, disk: Disk) -> None:
    """The refusal says what is wrong and where to free space."""
    assert "the database's disk" in message, message
    assert f"free space on {disk.directory}" in message, message


# -- the writer, on its own -----------------------------------------------------------


def _sqlite_full() -> sqlite3.OperationalError:
    """The error SQLite raises when a write finds no room."""
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    error.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    return error


def _insert(value: str, conn: sqlite3.Connection) -> str:
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    return value


def _full_after_rollback(conn: sqlite3.Connection) -> None:
    """What SQLite does on SQLITE_FULL mid-transaction: roll it all back, then raise."""
    conn.execute("ROLLBACK")
    raise _sqlite_full()


async def _run_batches(writer: Writer, *batches: list[Any]) -> list[list[outcome.Outcome[Any]]]:
    """Run each batch's writes together on one writer thread, and their outcomes.

    The first batch is queued before the thread starts, so it is one transaction; each
    later one is queued once the one before is done, on the same thread."""
    outcomes: list[list[outcome.Outcome[Any]]] = []

    async def together(fns: list[Any], started: trio.Event | None = None) -> None:
        results: list[outcome.Outcome[Any]] = []

        async def one(fn: Any) -> None:
            results.append(await outcome.acapture(writer.write, fn))

        async with trio.open_nursery() as nursery:
            for fn in fns:
                nursery.start_soon(one, fn)
            if started is not None:
                await trio.testing.wait_all_tasks_blocked()
                started.set()
        outcomes.append(results)

    with trio.fail_after(HANG_SECONDS):
        async with trio.open_nursery() as nursery:
            queued = trio.Event()
            nursery.start_soon(together, batches[0], queued)
            await queued.wait()
            nursery.start_soon(partial(trio.to_thread.run_sync, writer.run))
            while not outcomes:
                await trio.sleep(0.01)
            for fns in batches[1:]:
                await together(fns)
            writer.stop()
    return outcomes


@asynccontextmanager
async def _table(tmp_path: Path) -> AsyncIterator[tuple[sqlite3.Connection, Writer]]:
    path = tmp_path / "w.db"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (v TEXT)")
    try:
        yield conn, Writer(conn, partial(_faults.translate, path=path))
    finally:
        conn.close()


async def test_a_batch_sqlite_rolled_back_fails_whole_with_store_full(tmp_path: Path) -> None:
    """SQLite may roll the whole transaction back on SQLITE_FULL: then every write of
    the batch is undone, and each must say the disk is full, not 'no such savepoint'."""
    async with _table(tmp_path) as (conn, writer):
        fns = [partial(_insert, "a"), _full_after_rollback, partial(_insert, "c")]
        # Then, on the same thread and connection, writes succeed again.
        failed, later = await _run_batches(writer, fns, [partial(_insert, "d")])
        for result in failed:
            assert isinstance(result, outcome.Error)
            assert isinstance(result.error, StoreFull), repr(result.error)
            assert f"free space on {tmp_path}" in str(result.error)
        assert [r.unwrap() for r in later] == ["d"]
        assert [row[0] for row in conn.execute("SELECT v FROM t")] == ["d"]
        assert not conn.in_transaction


async def test_a_failed_write_alone_is_store_full(tmp_path: Path) -> None:
    async with _table(tmp_path) as (conn, writer):

        def full(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES ('x')")
            raise _sqlite_full()

        ((result,),) = await _run_batches(writer, [full])
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, StoreFull)
        assert isinstance(result.error.__cause__, sqlite3.OperationalError)
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0


# -- the store on a small disk --------------------------------------------------------


async def _refusals(disk: Disk, writes: list[Any]) -> int:
    """Run `writes` together; each must fail with StoreFull, none may hang."""
    errors: list[BaseException] = []

    async def one(write: Any) -> None:
        try:
            await write()
        except StoreFull as error:
            errors.append(error)

    with trio.fail_after(HANG_SECONDS):
        async with trio.open_nursery() as nursery:
            for write in writes:
                nursery.start_soon(one, write)
    assert len(errors) == len(writes)
    _full_error(str(errors[0]), disk)
    return len(errors)


async def test_store_refuses_writes_on_a_full_disk_and_recovers(disk: Disk) -> None:
    path = disk.directory / "provd.db"
    acknowledged: list[Job] = []
    async with open_sqlite_store(path) as store:
        stored = await store.put_file(ARCHIVE, TAR)

        async def create(n: int) -> Job:
            job = new_job(stored.hash, input=os.urandom(2000))
            return await store.create_job(job, logs=[log(f"line {n}")])

        for n in range(5):
            acknowledged.append(await create(n))

        disk.fill()
        refused = 0
        started = trio.current_time()
        for n in range(REFUSED_ONE_BY_ONE):
            with trio.fail_after(HANG_SECONDS), pytest.raises(StoreFull) as refusal:
                await create(100 + n)
            _full_error(str(refusal.value), disk)
            refused += 1
        refusal_ms = (trio.current_time() - started) * 1000 / REFUSED_ONE_BY_ONE
        # Together (batches, savepoints), and other kinds of write.
        writes = [partial(create, 200 + n) for n in range(REFUSED_TOGETHER)]
        writes.append(partial(store.put_file, os.urandom(50_000), TAR))
        writes.append(partial(store.cancel_job, acknowledged[0].id))
        refused += await _refusals(disk, writes)
        # Reads are served throughout.
        page = await store.list_jobs(JobQuery(limit=100))
        assert [j.id for j in page.jobs] == [j.id for j in reversed(acknowledged)]
        assert [line.output for line in await store.read_logs(acknowledged[0].id)] == ["line 0"]

        disk.free()
        started = trio.current_time()
        with trio.fail_after(HANG_SECONDS):
            acknowledged.append(await create(5))
        recovered_ms = (trio.current_time() - started) * 1000
        acknowledged.append(await store.cancel_job(acknowledged[1].id))
        print(
            f"\n[disk full, store, {disk.kind}] {refused} writes refused (one alone in"
            f" {refusal_ms:.1f} ms), first write after freeing space took"
            f" {recovered_ms:.1f} ms"
        )

    # Everything acknowledged is in the file; nothing refused is.
    async with open_sqlite_store(path) as store:
        page = await store.list_jobs(JobQuery(limit=100))
        assert sorted(j.id for j in page.jobs) == sorted({j.id for j in acknowledged})
        assert (await store.get_job(acknowledged[1].id)) == acknowledged[-1]
        for job in acknowledged[:5]:
            assert [line.output for line in await store.read_logs(job.id)][:1] == [
                f"line {acknowledged.index(job)}"
            ]


async def test_a_restart_on_a_full_disk(disk: Disk) -> None:
    """Opening needs room for the WAL index (`-shm`, 32 KiB) once the last connection
    closed: on a full disk provd then refuses to start, saying so in one line. Where the
    index fits (a file-size limit above 32 KiB), it starts and serves reads. Either way,
    once there is room, it opens with every job."""
    path = disk.directory / "provd.db"
    async with open_sqlite_store(path) as store:
        stored = await store.put_file(ARCHIVE, TAR)
        job = await store.create_job(new_job(stored.hash))
    disk.fill()
    try:
        async with open_sqlite_store(path) as store:
            assert await store.get_job(job.id) == job
    except StoreUnusable as error:
        assert str(error).startswith(f"the disk of the database {path} is full"), error
        assert f"free space on {disk.directory}, then start provd again" in str(error)
    finally:
        disk.free()
    async with open_sqlite_store(path) as store:
        assert await store.get_job(job.id) == job
        await store.cancel_job(job.id)


async def test_a_new_database_on_a_full_disk_is_unusable(disk: Disk) -> None:
    path = disk.directory / "provd.db"
    disk.fill()
    try:
        with pytest.raises(StoreUnusable) as raised:
            async with open_sqlite_store(path):
                pass
    finally:
        disk.free()
    assert str(raised.value).startswith(f"the disk of the database {path} is full"), raised.value
    assert f"free space on {disk.directory}, then start provd again" in str(raised.value)


# -- a real server on a small disk ----------------------------------------------------


def _registry_flushes_every(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make every DaemonRegistry the server builds flush last-seen times this often."""
    original = DaemonRegistry.__init__

    @functools.wraps(original)
    def init(self: DaemonRegistry, *args: Any, **kwargs: Any) -> None:
        kwargs["flush_interval"] = seconds
        original(self, *args, **kwargs)

    monkeypatch.setattr(DaemonRegistry, "__init__", init)


@asynccontextmanager
async def _serving(db_path: Path) -> AsyncIterator[Server]:
    """provd serving `db_path` on 127.0.0.1, stopped (and the file closed) on exit."""
    settings = server_settings(db_path)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(partial(serve, settings, shutdown_trigger=stop.wait))
        try:
            yield Server(running.url, db_path, settings, running.scheduler)
        finally:
            stop.set()


def _log_line(output: str) -> pd.Log:
    return pd.Log(source=pd.PROVISIONER_DAEMON, level=2, stage="Plan", output=output)


async def _refused_over_connect(disk: Disk, request: Any) -> None:
    with trio.fail_after(HANG_SECONDS), pytest.raises(ConnectError) as refusal:
        await request()
    assert refusal.value.code is Code.RESOURCE_EXHAUSTED, refusal.value
    _full_error(refusal.value.message, disk)


async def test_server_answers_resource_exhausted_and_recovers(
    disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The registry's own writes on a full disk are test_background_writes_survive_*'s.
    _registry_flushes_every(monkeypatch, 3600)
    db_path = disk.directory / "provd.db"
    async with _serving(db_path) as server, trio.open_nursery() as nursery:
        jobs, daemon = Jobs(server), TestDaemon(server, "d1")
        running = await jobs.create()
        pending = await jobs.create()
        acquired = await (await daemon.acquire(nursery)).wait()
        assert acquired.job_id == running.id
        await daemon.update(running.id, logs=[_log_line("before")])

        disk.fill()
        refused = 0
        for n in range(REFUSED_ONE_BY_ONE):
            await _refused_over_connect(disk, jobs.create)
            await _refused_over_connect(
                disk, partial(daemon.update, running.id, logs=[_log_line(f"refused {n}")])
            )
            refused += 2
        # Reads are served throughout.
        assert (await jobs.get(pending.id)).id == pending.id
        assert [line.output for line in await jobs.logs(running.id)][-1] == "before"

        disk.free()
        started = trio.current_time()
        with trio.fail_after(HANG_SECONDS):
            await daemon.update(running.id, logs=[_log_line("after")])
        recovered_ms = (trio.current_time() - started) * 1000
        created = await jobs.create()
        await daemon.complete(running.id)
        print(
            f"\n[disk full, server, {disk.kind}] {refused} calls refused with"
            f" resource_exhausted, first UpdateJob after freeing space took"
            f" {recovered_ms:.1f} ms"
        )

    async with open_sqlite_store(db_path) as store:
        page = await store.list_jobs(JobQuery(limit=100))
        assert sorted(j.id for j in page.jobs) == sorted([running.id, pending.id, created.id])
        outputs = [line.output for line in await store.read_logs(running.id)]
        assert "before" in outputs and "after" in outputs
        assert not [o for o in outputs if o.startswith("refused")]
        completed = await store.get_job(running.id)
        assert completed is not None and completed.completed_at is not None


async def test_background_writes_survive_a_full_disk(
    disk: Disk, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The registry writes last-seen times on its own: a full disk must not end the
    server, which must take writes again once space is freed."""
    _registry_flushes_every(monkeypatch, 0.05)
    db_path = disk.directory / "provd.db"
    async with _serving(db_path) as server, trio.open_nursery() as nursery:
        jobs, daemon = Jobs(server), TestDaemon(server, "d1")
        await jobs.create()
        await (await daemon.acquire(nursery)).wait()
        waiting = await daemon.acquire(nursery)  # connected: flushed every time
        disk.fill()
        # The registry's own write met the full disk, and the server went on.
        await wait_until(
            lambda: any("the daemon registry could not write" in r.message for r in caplog.records)
        )
        disk.free()
        with trio.fail_after(HANG_SECONDS):
            created = await jobs.create()
        assert (await waiting.wait()).job_id == created.id
