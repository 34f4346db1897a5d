"""The SQLite store: one file, WAL, one writer thread, a small pool of readers.

Durability is `synchronous=FULL` unless the caller opts into NORMAL: a job we
acknowledged must survive power loss, not only a crash of provd. Writes go through
`Writer` (group commit on one connection, `BEGIN IMMEDIATE`); reads run on their
own connections in worker threads, so no SQLite call ever blocks the trio loop.
The SQL itself lives in `_sql_jobs`, `_sql_daemons` and `_sql_keys`; this class only
decides where each piece runs.

Opening checks everything it can before serving: the data directory and the files are
created private (`_files`), and a database that cannot be used as it is raises one
`StoreUnusable` whose message says what to do (`_faults`), before any task starts.
A write that finds the disk full raises `StoreFull`; writes work again once there
is room.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Literal

import trio
from sqlite_utils import Database

from provd import __version__
from provd.errors import StoreUnusable
from provd.model import (
    Allowance,
    Daemon,
    DaemonKey,
    DaemonRecord,
    Job,
    JobPage,
    JobQuery,
    JobStatus,
    JobType,
    JobUpdate,
    LogLine,
    NewJob,
    NewLogLine,
    PendingSummary,
    Queue,
    QueuePosition,
    QuotaDecision,
    StoredFile,
    now_ms,
)
from provd.store import DaemonPresence, JobHistory, Purged, _faults
from provd.store import _sql_daemons as daemons_sql
from provd.store import _sql_jobs as jobs_sql
from provd.store import _sql_keys as keys_sql
from provd.store._files import create_database_file, tighten_database_files
from provd.store._files import prepare_data_dir as prepare_data_dir
from provd.store._readers import ReaderPool
from provd.store._write_lock import WriteLock, write_lock_path
from provd.store._writer import Writer
from provd.store.migrations import is_another_apps, migrations, unknown_migrations

Synchronous = Literal["full", "normal"]

BUSY_TIMEOUT_MS = 5000
READERS = 4


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,  # transactions are explicit
        check_same_thread=False,  # each connection is used by one thread at a time
        timeout=BUSY_TIMEOUT_MS / 1000,
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _prepare(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """Open the write connection, switch to WAL and bring the schema up to date.

    Raises `StoreUnusable` for anything that makes the database unusable as it is.
    """
    prepare_data_dir(path)
    create_database_file(path)
    try:
        conn = _connect(path, synchronous)
    except sqlite3.Error as error:
        raise _faults.unusable(error, path) from error
    try:
        _migrate(conn, path)
        tighten_database_files(path)
        _check_writable(conn)
    except BaseException as error:
        conn.close()
        if isinstance(error, sqlite3.Error):
            raise _faults.unusable(error, path) from error
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """WAL on, then this provd's migrations, unless a newer provd (or another program)
    wrote the database: its schema is not one this provd may touch."""
    db = Database(conn)
    if unknown := unknown_migrations(db):
        raise _faults.newer_schema(path, unknown, __version__)
    if is_another_apps(db):
        raise _faults.not_provds(path)
    db.enable_wal()
    migrations.apply(db)


def _check_writable(conn: sqlite3.Connection) -> None:
    """Take the write lock and change a page, then roll back: a lock that another
    process never releases (after `BUSY_TIMEOUT_MS`) or a file SQLite could open only
    read-only fails now, not at the first write. (`BEGIN IMMEDIATE` alone succeeds on a
    read-only file.)"""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version = {version}")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _open_readers(path: Path, synchronous: Synchronous) -> list[sqlite3.Connection]:
    connections: list[sqlite3.Connection] = []
    try:
        for _ in range(READERS):
            connections.append(_connect(path, synchronous))
    except sqlite3.Error as error:
        for conn in connections:
            conn.close()
        raise _faults.unusable(error, path) from error
    return connections


class SQLiteStore:
    """The `Store` on one SQLite file. Open it with `open_sqlite_store`."""

    def __init__(
        self,
        path: Path,
        writer: Writer,
        readers: ReaderPool,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.path = path
        self._writer = writer
        self._readers = readers
        self._clock = clock

    def observe_commits(self, observer: Callable[[float, int], None] | None) -> None:
        """Call `observer(seconds, writes)` after each group commit, on the writer
        thread (provd.metrics counts them); None stops."""
        self._writer.on_commit = observer

    # -- files ---------------------------------------------------------------

    async def put_file(self, data: bytes, mimetype: str) -> StoredFile:
        file_hash = await trio.to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
        return await self._writer.write(
            partial(
                jobs_sql.put_file,
                file_hash=file_hash,
                data=data,
                mimetype=mimetype,
                now=self._clock(),
            )
        )

    async def get_file_info(self, file_hash: str) -> StoredFile | None:
        return await self._readers.read(partial(jobs_sql.file_info, file_hash=file_hash))

    async def get_file_data(self, file_hash: str) -> bytes | None:
        return await self._readers.read(partial(jobs_sql.file_data, file_hash=file_hash))

    # -- jobs ----------------------------------------------------------------

    async def create_job(self, job: NewJob, logs: Sequence[NewLogLine] = ()) -> Job:
        return await self._writer.write(
            partial(jobs_sql.create_job, job=job, logs=logs, now=self._clock())
        )

    async def create_job_in_line(
        self, job: NewJob, logs: Sequence[NewLogLine] = ()
    ) -> tuple[Job, QueuePosition]:
        return await self._writer.write(
            partial(jobs_sql.create_job_in_line, job=job, logs=logs, now=self._clock())
        )

    async def create_and_claim_job(
        self, job: NewJob, logs: Sequence[NewLogLine], daemon_id: str
    ) -> tuple[Job, Job]:
        return await self._writer.write(
            partial(
                jobs_sql.create_and_claim_job,
                job=job,
                logs=logs,
                daemon_id=daemon_id,
                now=self._clock(),
            )
        )

    async def get_job(self, job_id: str) -> Job | None:
        return await self._readers.read(partial(jobs_sql.select_job, job_id=job_id))

    async def list_jobs(self, query: JobQuery) -> JobPage:
        if query.limit < 1:
            raise ValueError(f"JobQuery.limit must be at least 1, got {query.limit}")
        return await self._readers.read(partial(jobs_sql.list_jobs, query=query))

    async def cancel_job(self, job_id: str, logs: Sequence[NewLogLine] = ()) -> Job:
        return await self._writer.write(
            partial(jobs_sql.cancel_job, job_id=job_id, logs=logs, now=self._clock())
        )

    async def claim_job(self, queues: Sequence[Queue], daemon_id: str) -> Job | None:
        if not queues:
            return None
        return await self._writer.write(
            partial(jobs_sql.claim_job, queues=queues, daemon_id=daemon_id, now=self._clock())
        )

    async def pending_queues(self) -> list[Queue]:
        return await self._readers.read(jobs_sql.pending_queues)

    async def queue_position(self, job: Job) -> QueuePosition:
        (position,) = await self.queue_positions([job])
        return position

    async def queue_positions(self, jobs: Sequence[Job]) -> list[QueuePosition]:
        if all(job.status is not JobStatus.PENDING for job in jobs):
            return [QueuePosition(0, 0)] * len(jobs)
        return await self._readers.read(partial(jobs_sql.queue_positions, jobs=list(jobs)))

    async def pending_summary(self) -> list[PendingSummary]:
        return await self._readers.read(jobs_sql.pending_summary)

    async def job_history(
        self, window_ms: int, bucket_ms: int, organization: str = ""
    ) -> JobHistory:
        return await self._readers.read(
            partial(
                jobs_sql.job_history,
                window_ms=window_ms,
                bucket_ms=bucket_ms,
                organization=organization,
                now=self._clock(),
            )
        )

    async def purge_expired(self, completed_before: int, files_before: int, limit: int) -> Purged:
        return await self._writer.write(
            partial(
                jobs_sql.purge_expired,
                completed_before=completed_before,
                files_before=files_before,
                limit=limit,
            )
        )

    # -- the daemon protocol -------------------------------------------------

    async def release_job(
        self, job_id: str, daemon_id: str, logs: Sequence[NewLogLine] = ()
    ) -> Job | None:
        return await self._writer.write(
            partial(
                jobs_sql.release_job,
                job_id=job_id,
                daemon_id=daemon_id,
                logs=logs,
                now=self._clock(),
            )
        )

    async def update_job(self, job_id: str, daemon_id: str, update: JobUpdate) -> Job:
        return await self._writer.write(
            partial(
                jobs_sql.update_job,
                job_id=job_id,
                daemon_id=daemon_id,
                update=update,
                now=self._clock(),
            )
        )

    async def complete_job(
        self, job_id: str, daemon_id: str, result: bytes, job_type: JobType | None = None
    ) -> Job:
        return await self._writer.write(
            partial(
                jobs_sql.complete_job,
                job_id=job_id,
                daemon_id=daemon_id,
                result=result,
                job_type=job_type,
                now=self._clock(),
            )
        )

    async def fail_job(
        self,
        job_id: str,
        daemon_id: str,
        error: str,
        error_code: str = "",
        result: bytes | None = None,
        logs: Sequence[NewLogLine] = (),
    ) -> Job:
        return await self._writer.write(
            partial(
                jobs_sql.fail_job,
                job_id=job_id,
                daemon_id=daemon_id,
                error=error,
                error_code=error_code,
                result=result,
                logs=logs,
                now=self._clock(),
            )
        )

    async def fail_hung_jobs(
        self, updated_before: int, error: str, error_code: str, logs: Sequence[NewLogLine] = ()
    ) -> list[Job]:
        return await self._writer.write(
            partial(
                jobs_sql.fail_hung_jobs,
                updated_before=updated_before,
                error=error,
                error_code=error_code,
                logs=logs,
                now=self._clock(),
            )
        )

    async def fail_pending_jobs(
        self,
        queue: Queue,
        created_before: int,
        error: str,
        error_code: str,
        logs: Sequence[NewLogLine] = (),
    ) -> list[Job]:
        return await self._writer.write(
            partial(
                jobs_sql.fail_pending_jobs,
                queue=queue,
                created_before=created_before,
                error=error,
                error_code=error_code,
                logs=logs,
                now=self._clock(),
            )
        )

    async def running_jobs_by_daemon(self) -> dict[str, str]:
        return await self._readers.read(jobs_sql.running_jobs_by_daemon)

    # -- logs ----------------------------------------------------------------

    async def read_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        return await self._readers.read(
            partial(jobs_sql.read_logs, job_id=job_id, after=after, limit=limit)
        )

    # -- daemons -------------------------------------------------------------

    async def upsert_daemon(self, daemon: Daemon) -> None:
        await self._writer.write(
            partial(daemons_sql.upsert_daemon, daemon=daemon, now=self._clock())
        )

    async def touch_daemons(
        self, last_seen: Mapping[str, int], connected_until: Mapping[str, int] | None = None
    ) -> None:
        if last_seen or connected_until:
            await self._writer.write(
                partial(
                    daemons_sql.touch_daemons,
                    last_seen=dict(last_seen),
                    connected_until=dict(connected_until or {}),
                )
            )

    async def list_daemons(self) -> list[DaemonRecord]:
        return await self._readers.read(daemons_sql.list_daemons)

    async def daemon_presence(self) -> list[DaemonPresence]:
        return await self._readers.read(daemons_sql.daemon_presence)

    # -- daemon keys ---------------------------------------------------------

    async def create_key(self, key: DaemonKey) -> None:
        await self._writer.write(partial(keys_sql.create_key, key=key))

    async def get_key(self, key_id: str) -> DaemonKey | None:
        return await self._readers.read(partial(keys_sql.get_key, key_id=key_id))

    async def list_keys(self) -> list[DaemonKey]:
        return await self._readers.read(keys_sql.list_keys)

    async def delete_key(self, name: str) -> DaemonKey | None:
        return await self._writer.write(partial(keys_sql.delete_key, name=name))

    async def touch_keys(self, last_used: Mapping[str, int]) -> None:
        if last_used:
            await self._writer.write(partial(keys_sql.touch_keys, last_used=dict(last_used)))

    # -- quota ---------------------------------------------------------------

    async def set_allowance(self, allowance: Allowance) -> None:
        await self._writer.write(partial(daemons_sql.set_allowance, allowance=allowance))

    async def delete_allowance(self, organization: str, kind: str, subject: str) -> bool:
        return await self._writer.write(
            partial(
                daemons_sql.delete_allowance, organization=organization, kind=kind, subject=subject
            )
        )

    async def list_allowances(self, organization: str) -> list[Allowance]:
        return await self._readers.read(
            partial(daemons_sql.list_allowances, organization=organization)
        )

    async def quota_usage(
        self, organization: str, user_id: str, groups: Sequence[str]
    ) -> tuple[int, int]:
        def usage(conn: sqlite3.Connection) -> tuple[int, int]:
            return (
                daemons_sql.consumed(conn, organization, user_id),
                daemons_sql.budget(conn, organization, user_id, tuple(groups)),
            )

        return await self._readers.read(usage)

    async def commit_quota(self, job_id: str, daemon_id: str, daily_cost: int) -> QuotaDecision:
        return await self._writer.write(
            partial(
                daemons_sql.commit_quota, job_id=job_id, daemon_id=daemon_id, daily_cost=daily_cost
            )
        )

    # -- backup (not part of `Store`: PostgreSQL has pg_dump) ------------------

    async def backup_to(self, target: Path) -> int:
        """Write a consistent copy of the database into the new, empty file `target`
        while the store keeps serving (`backup_database`); return its number of jobs."""
        return await trio.to_thread.run_sync(backup_database, self.path, target)


def backup_database(path: Path, target: Path) -> int:
    """Copy the database at `path` into the new, empty file `target` with SQLite's online
    backup API and return how many jobs the copy holds. One step on a read-only
    connection of its own: the copy is one snapshot, and writers go on meanwhile (WAL).
    The copy is left in rollback-journal mode, a single self-contained file. Blocking:
    run it in a worker thread."""
    source = _connect(path, "normal")
    try:
        source.execute("PRAGMA query_only = ON")
        copy = sqlite3.connect(target, isolation_level=None)
        try:
            source.backup(copy)  # pages=-1: everything in one step, one snapshot
            copy.execute("PRAGMA journal_mode = DELETE")
            (jobs,) = copy.execute("SELECT count(*) FROM jobs").fetchone()
        finally:
            copy.close()
    finally:
        source.close()
    return int(jobs)


@asynccontextmanager
async def open_sqlite_store(
    path: Path,
    *,
    synchronous: Synchronous = "full",
    clock: Callable[[], int] = now_ms,
) -> AsyncIterator[SQLiteStore]:
    """Open (creating and migrating as needed) the store at `path`.

    The writer thread runs in a task of this context's own nursery; leaving the
    context lets it finish every queued write, then closes the connections.

    Raises `StoreUnusable` (never wrapped in an exception group: nothing has started
    yet) if the database cannot be used as it is.
    """
    conn = await trio.to_thread.run_sync(_prepare, path, synchronous)
    try:
        readers = ReaderPool(await trio.to_thread.run_sync(_open_readers, path, synchronous))
    except BaseException:
        conn.close()
        raise
    try:
        process_lock = WriteLock(path)
    except OSError as error:
        readers.close()
        conn.close()
        raise StoreUnusable(
            f"cannot create the write lock {write_lock_path(path)}: {error.strerror}"
        ) from None
    writer = Writer(conn, partial(_faults.translate, path=path), process_lock=process_lock)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_run_writer_thread, writer, name="provd-sqlite-writer")
            try:
                yield SQLiteStore(path, writer, readers, clock)
            finally:
                writer.stop()
    finally:
        readers.close()
        conn.close()
        process_lock.close()


async def _run_writer_thread(writer: Writer) -> None:
    # Not abandonable: the thread always finishes its queued writes before the
    # nursery that owns it can close.
    await trio.to_thread.run_sync(writer.run, thread_name="provd-sqlite-writer")
