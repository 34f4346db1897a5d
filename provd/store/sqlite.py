"""The SQLite store: one file, WAL, one writer thread, a small pool of readers.

Durability is `synchronous=FULL` unless the caller opts into NORMAL: a job we
acknowledged must survive power loss, not only a crash of provd. Writes go through
`Writer` (group commit on one connection, `BEGIN IMMEDIATE`); reads run on their
own connections in worker threads, so no SQLite call ever blocks the trio loop.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import trio
from sqlite_utils import Database

from provd.errors import FailedPrecondition, NotFound, StoreClosed
from provd.model import (
    Job,
    JobPage,
    JobQuery,
    JobStatus,
    JobType,
    LogLevel,
    LogLine,
    LogSource,
    NewJob,
    NewLogLine,
    Queue,
    QueuePosition,
    StoredFile,
    now_ms,
    tags_key,
)
from provd.store._writer import Writer
from provd.store.migrations import migrations

T = TypeVar("T")
Synchronous = Literal["full", "normal"]

BUSY_TIMEOUT_MS = 5000
READERS = 4

_JOB_COLUMNS = (
    "seq, id, type, provisioner, organization, tags, file_hash, initiator_id, initiator_name,"
    " priority, input, trace_metadata, created_at, updated_at, started_at, canceled_at,"
    " completed_at, worker_id, error, error_code, result"
)
_PENDING = "started_at IS NULL AND completed_at IS NULL"
_STATUS_CONDITIONS: dict[JobStatus, str] = {
    JobStatus.PENDING: _PENDING,
    JobStatus.RUNNING: "started_at IS NOT NULL AND completed_at IS NULL AND canceled_at IS NULL",
    JobStatus.CANCELING: "completed_at IS NULL AND canceled_at IS NOT NULL",
    JobStatus.SUCCEEDED: "completed_at IS NOT NULL AND error = '' AND canceled_at IS NULL",
    JobStatus.FAILED: "completed_at IS NOT NULL AND error != ''",
    JobStatus.CANCELED: "completed_at IS NOT NULL AND error = '' AND canceled_at IS NOT NULL",
}


def _job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Job:
    (
        seq,
        job_id,
        job_type,
        provisioner,
        organization,
        tags,
        file_hash,
        initiator_id,
        initiator_name,
        priority,
        job_input,
        trace_metadata,
        created_at,
        updated_at,
        started_at,
        canceled_at,
        completed_at,
        worker_id,
        error,
        error_code,
        result,
    ) = row
    return Job(
        id=job_id,
        seq=seq,
        type=JobType(job_type),
        provisioner=provisioner,
        organization=organization,
        tags=json.loads(tags),
        file_hash=file_hash,
        initiator_id=initiator_id,
        initiator_name=initiator_name,
        priority=priority,
        input=job_input,
        trace_metadata=json.loads(trace_metadata),
        created_at=created_at,
        updated_at=updated_at,
        started_at=started_at,
        canceled_at=canceled_at,
        completed_at=completed_at,
        worker_id=worker_id,
        error=error,
        error_code=error_code,
        result=result,
    )


def _log_from_row(row: tuple[Any, ...]) -> LogLine:
    log_id, job_id, created_at, source, level, stage, output = row
    return LogLine(
        id=log_id,
        job_id=job_id,
        created_at=created_at,
        source=LogSource(source),
        level=LogLevel(level),
        stage=stage,
        output=output,
    )


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,  # transactions are explicit
        check_same_thread=False,  # each connection is used by one thread at a time
        timeout=BUSY_TIMEOUT_MS / 1000,
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _prepare(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """Open the write connection, switch to WAL and bring the schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = _connect(path, synchronous)
    db = Database(conn)
    db.enable_wal()
    migrations.apply(db)
    return conn


class _ReaderPool:
    """Read-only connections, each used by one worker thread at a time."""

    def __init__(self, path: Path, synchronous: Synchronous, size: int) -> None:
        self._idle = [_connect(path, synchronous) for _ in range(size)]
        for conn in self._idle:
            conn.execute("PRAGMA query_only = ON")
        self._lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(size)
        self._closed = False

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(self._run, fn, limiter=self._limiter)

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._closed:
                raise StoreClosed("the store is shutting down")
            conn = self._idle.pop()
        try:
            conn.execute("BEGIN")  # one snapshot for every statement of `fn`
            try:
                return fn(conn)
            finally:
                conn.execute("ROLLBACK")
        finally:
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    def close(self) -> None:
        """Close idle connections now; one still in use closes when its read ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class SQLiteStore:
    """The `Store` on one SQLite file. Open it with `open_sqlite_store`."""

    def __init__(
        self,
        path: Path,
        writer: Writer,
        readers: _ReaderPool,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.path = path
        self._writer = writer
        self._readers = readers
        self._clock = clock

    # -- files ---------------------------------------------------------------

    async def put_file(self, data: bytes, mimetype: str) -> StoredFile:
        file_hash = await trio.to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
        now = self._clock()

        def put(conn: sqlite3.Connection) -> StoredFile:
            conn.execute(
                "INSERT INTO files (hash, size, mimetype, data, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (hash) DO NOTHING",
                (file_hash, len(data), mimetype, data, now),
            )
            return _file_info(conn, file_hash)  # type: ignore[return-value]

        return await self._writer.write(put)

    async def get_file_info(self, file_hash: str) -> StoredFile | None:
        return await self._readers.read(lambda conn: _file_info(conn, file_hash))

    async def get_file_data(self, file_hash: str) -> bytes | None:
        def get(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT data FROM files WHERE hash = ?", (file_hash,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._readers.read(get)

    # -- jobs ----------------------------------------------------------------

    async def create_job(self, job: NewJob, logs: Sequence[NewLogLine] = ()) -> Job:
        now = self._clock()
        key = tags_key(job.tags)

        def create(conn: sqlite3.Connection) -> Job:
            if (
                conn.execute("SELECT 1 FROM files WHERE hash = ?", (job.file_hash,)).fetchone()
                is None
            ):
                raise NotFound(f"fileHash: no file {job.file_hash} has been uploaded")
            row = conn.execute(
                "INSERT INTO jobs (id, type, provisioner, organization, tags, file_hash,"
                " initiator_id, initiator_name, priority, input, trace_metadata, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" RETURNING {_JOB_COLUMNS}",
                (
                    job.id,
                    job.type.value,
                    job.provisioner,
                    job.organization,
                    key,
                    job.file_hash,
                    job.initiator_id,
                    job.initiator_name,
                    job.priority,
                    job.input,
                    json.dumps(dict(job.trace_metadata)),
                    now,
                    now,
                ),
            ).fetchone()
            conn.execute(
                "INSERT OR IGNORE INTO queues (organization, provisioner, tags) VALUES (?, ?, ?)",
                (job.organization, job.provisioner, key),
            )
            _insert_logs(conn, job.id, logs, now)
            return _job_from_row(row)

        return await self._writer.write(create)

    async def get_job(self, job_id: str) -> Job | None:
        return await self._readers.read(lambda conn: _select_job(conn, job_id))

    async def list_jobs(self, query: JobQuery) -> JobPage:
        if query.limit < 1:
            raise ValueError(f"JobQuery.limit must be at least 1, got {query.limit}")
        conditions: list[str] = []
        params: list[Any] = []
        if query.status is not None:
            conditions.append(_STATUS_CONDITIONS[query.status])
        if query.organization:
            conditions.append("organization = ?")
            params.append(query.organization)
        if query.provisioner:
            conditions.append("provisioner = ?")
            params.append(query.provisioner)
        for key, value in sorted(query.tags.items()):
            conditions.append(
                "EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE key = ? AND value = ?)"
            )
            params += [key, value]
        if query.before_seq is not None:
            conditions.append("seq < ?")
            params.append(query.before_seq)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ?"
        params.append(query.limit + 1)

        def select(conn: sqlite3.Connection) -> JobPage:
            jobs = [_job_from_row(row) for row in conn.execute(sql, params)]
            if len(jobs) > query.limit:
                return JobPage(jobs[: query.limit], jobs[query.limit - 1].seq)
            return JobPage(jobs, None)

        return await self._readers.read(select)

    async def cancel_job(self, job_id: str, logs: Sequence[NewLogLine] = ()) -> Job:
        now = self._clock()

        def cancel(conn: sqlite3.Connection) -> Job:
            row = conn.execute(
                "UPDATE jobs SET canceled_at = :now, updated_at = :now,"
                " completed_at = CASE WHEN started_at IS NULL THEN :now END"
                " WHERE id = :id AND completed_at IS NULL AND canceled_at IS NULL"
                f" RETURNING {_JOB_COLUMNS}",
                {"now": now, "id": job_id},
            ).fetchone()
            if row is not None:
                _insert_logs(conn, job_id, logs, now)
                return _job_from_row(row)
            job = _select_job(conn, job_id)
            if job is None:
                raise NotFound(f"id: no job {job_id}")
            if job.status.is_terminal:
                raise FailedPrecondition(f"job {job_id} is already {job.status.value}")
            return job  # already canceling

        return await self._writer.write(cancel)

    async def claim_job(self, queues: Sequence[Queue], worker_id: str) -> Job | None:
        if not queues:
            return None
        heads = " UNION ALL ".join(
            "SELECT * FROM (SELECT seq, priority FROM jobs WHERE organization = ?"
            f" AND provisioner = ? AND tags = ? AND {_PENDING} ORDER BY priority DESC, seq LIMIT 1)"
            for _ in queues
        )
        params: list[Any] = [self._clock()] * 2 + [worker_id]
        for queue in queues:
            params += [queue.organization, queue.provisioner, tags_key(queue.tags)]
        sql = (
            "UPDATE jobs SET started_at = ?, updated_at = ?, worker_id = ?"
            f" WHERE seq = (SELECT seq FROM ({heads}) ORDER BY priority DESC, seq LIMIT 1)"
            f" AND {_PENDING} RETURNING {_JOB_COLUMNS}"
        )

        def claim(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else _job_from_row(row)

        return await self._writer.write(claim)

    async def pending_queues(self) -> list[Queue]:
        def select(conn: sqlite3.Connection) -> list[Queue]:
            rows = conn.execute("SELECT organization, provisioner, tags FROM queues")
            return [Queue(org, prov, json.loads(tags)) for org, prov, tags in rows]

        return await self._readers.read(select)

    async def queue_position(self, job: Job) -> QueuePosition:
        if job.status is not JobStatus.PENDING:
            return QueuePosition(0, 0)
        queue_sql = (
            f"FROM jobs WHERE organization = ? AND provisioner = ? AND tags = ? AND {_PENDING}"
        )
        queue_params = (job.organization, job.provisioner, tags_key(job.tags))

        def count(conn: sqlite3.Connection) -> QueuePosition:
            (ahead,) = conn.execute(
                f"SELECT COUNT(*) {queue_sql} AND (priority > ? OR (priority = ? AND seq < ?))",
                (*queue_params, job.priority, job.priority, job.seq),
            ).fetchone()
            (size,) = conn.execute(f"SELECT COUNT(*) {queue_sql}", queue_params).fetchone()
            return QueuePosition(ahead + 1, size)

        return await self._readers.read(count)

    # -- logs ----------------------------------------------------------------

    async def append_logs(self, job_id: str, logs: Sequence[NewLogLine]) -> list[LogLine]:
        now = self._clock()

        def append(conn: sqlite3.Connection) -> list[LogLine]:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise NotFound(f"jobId: no job {job_id}")
            return _insert_logs(conn, job_id, logs, now)

        return await self._writer.write(append)

    async def read_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        def select(conn: sqlite3.Connection) -> list[LogLine]:
            rows = conn.execute(
                "SELECT id, job_id, created_at, source, level, stage, output FROM job_logs"
                " WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
                (job_id, after, limit),
            )
            return [_log_from_row(row) for row in rows]

        return await self._readers.read(select)

    # -- introspection -------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        """Write batches committed and writes they held (group-commit efficiency)."""
        return {"batches": self._writer.batches, "writes": self._writer.writes}


def _file_info(conn: sqlite3.Connection, file_hash: str) -> StoredFile | None:
    row = conn.execute(
        "SELECT hash, size, mimetype, created_at FROM files WHERE hash = ?", (file_hash,)
    ).fetchone()
    return None if row is None else StoredFile(*row)


def _select_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job_from_row(row)


def _insert_logs(
    conn: sqlite3.Connection, job_id: str, logs: Sequence[NewLogLine], now: int
) -> list[LogLine]:
    inserted = []
    for line in logs:
        created_at = line.created_at if line.created_at is not None else now
        (log_id,) = conn.execute(
            "INSERT INTO job_logs (job_id, created_at, source, level, stage, output)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (job_id, created_at, int(line.source), int(line.level), line.stage, line.output),
        ).fetchone()
        inserted.append(
            LogLine(log_id, job_id, created_at, line.source, line.level, line.stage, line.output)
        )
    if inserted:
        conn.execute(
            "UPDATE jobs SET log_count = log_count + ?, log_bytes = log_bytes + ? WHERE id = ?",
            (len(inserted), sum(len(line.output) for line in inserted), job_id),
        )
    return inserted


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
    """
    conn = await trio.to_thread.run_sync(_prepare, path, synchronous)
    readers = await trio.to_thread.run_sync(_ReaderPool, path, synchronous, READERS)
    writer = Writer(conn)
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


async def _run_writer_thread(writer: Writer) -> None:
    # Not abandonable: the thread always finishes its queued writes before the
    # nursery that owns it can close.
    await trio.to_thread.run_sync(writer.run, thread_name="provd-sqlite-writer")
