"""The PostgreSQL SQL for files, jobs, logs, daemons and quota: plain functions of a
connection.

Each function runs inside a transaction that `PostgresStore` opened (READ COMMITTED);
none commits. Rows come as dicts. Every check that decides a write (the holder check,
a cancel, a claim) locks the job's row first (`FOR UPDATE`, or an `UPDATE … WHERE`
that re-checks its condition after the lock), so concurrent callers, in this process
or another replica, serialize per job. Timestamps are the caller's `now`, never the
database's clock. Orderings of text use the "C" collation, as SQLite and Python sort.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import Connection, Cursor
from psycopg import errors as pg_errors
from psycopg.rows import DictRow, tuple_row

from provd.errors import FailedPrecondition, NotFound, PermissionDenied
from provd.model import (
    Allowance,
    Daemon,
    DaemonRecord,
    Job,
    JobPage,
    JobQuery,
    JobStatus,
    JobType,
    JobUpdate,
    LogBatch,
    LogLine,
    NewJob,
    NewLogLine,
    PendingSummary,
    Queue,
    QueuePosition,
    QuotaDecision,
    StoredFile,
    WorkspaceRef,
    tags_key,
)
from provd.store import DaemonPresence, JobHistory, Purged
from provd.store._history import SKEW_MS, assemble, grid, outcome_case
from provd.store._log_chunks import as_batch, chunks, line_count, read_chunks
from provd.store._ranks import Level, flip_jobs, positions, take_ordinal
from provd.store._rules import (
    DESTROY,
    FAILED_WITHOUT_REASON,
    cut_to_budget,
    handed_over,
    new_jobs_queue,
    refuse_other_type,
)

Conn = Connection[DictRow]

JOB_COLUMNS = (
    "seq, id, type, provisioner, organization, tags, file_hash, initiator_id, initiator_name,"
    " priority, input, trace_metadata, created_at, updated_at, started_at, canceled_at,"
    " completed_at, daemon_id, error, error_code, result, readme, template_variables,"
    " logs_overflowed, workspace_id, workspace_owner_id, workspace_transition,"
    " workspace_owner_groups, daily_cost"
)
# A job's columns and its ordinal in its queue level (provd/store/_ranks.py).
RANKED_COLUMNS = f"{JOB_COLUMNS}, queue_ordinal"
PENDING = "started_at IS NULL AND completed_at IS NULL"
RUNNING = "started_at IS NOT NULL AND completed_at IS NULL"
STATUS_CONDITIONS: dict[JobStatus, str] = {
    JobStatus.PENDING: PENDING,
    JobStatus.RUNNING: f"{RUNNING} AND canceled_at IS NULL",
    JobStatus.CANCELING: "completed_at IS NULL AND canceled_at IS NOT NULL",
    JobStatus.SUCCEEDED: "completed_at IS NOT NULL AND error = '' AND canceled_at IS NULL",
    JobStatus.FAILED: "completed_at IS NOT NULL AND error != ''",
    JobStatus.CANCELED: "completed_at IS NOT NULL AND error = '' AND canceled_at IS NOT NULL",
}


def job_from_row(row: DictRow) -> Job:
    workspace = None
    if row["workspace_id"] is not None:
        workspace = WorkspaceRef(
            workspace_id=row["workspace_id"],
            owner_id=row["workspace_owner_id"],
            transition=row["workspace_transition"],
            owner_groups=tuple(json.loads(row["workspace_owner_groups"])),
        )
    return Job(
        id=row["id"],
        seq=row["seq"],
        type=JobType(row["type"]),
        provisioner=row["provisioner"],
        organization=row["organization"],
        tags=json.loads(row["tags"]),
        file_hash=row["file_hash"],
        initiator_id=row["initiator_id"],
        initiator_name=row["initiator_name"],
        priority=row["priority"],
        input=_bytes(row["input"]),
        trace_metadata=json.loads(row["trace_metadata"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        canceled_at=row["canceled_at"],
        completed_at=row["completed_at"],
        daemon_id=row["daemon_id"],
        error=row["error"],
        error_code=row["error_code"],
        result=_bytes(row["result"]),
        readme=_bytes(row["readme"]),
        template_variables=_bytes(row["template_variables"]),
        logs_overflowed=bool(row["logs_overflowed"]),
        workspace=workspace,
        daily_cost=row["daily_cost"],
    )


def _bytes(value: Any) -> Any:
    return None if value is None else bytes(value)


class Ranks:
    """`provd.store._ranks.Dialect` for PostgreSQL: lists travel as bigint arrays, and
    a level's row is locked (`FOR UPDATE`) before its counters change, after the job
    rows the write changes, so replicas serialize per level and never deadlock."""

    param = "%s"
    lock = " FOR UPDATE"
    text = "%s::text"
    integer = "%s::bigint"

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def any_of(self) -> str:
        return "= ANY(%s::bigint[])"

    def each(self) -> str:
        return "SELECT unnest(%s::bigint[]) AS value"

    def pack(self, values: Sequence[int]) -> Any:
        return list(values)

    def rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        with self._conn.cursor(row_factory=tuple_row) as cursor:
            return list(cursor.execute(sql, params).fetchall())

    def run(self, sql: str, params: Sequence[Any]) -> int:
        return self._conn.execute(sql, params).rowcount


def _level(row: DictRow) -> Level:
    return (row["organization"], row["provisioner"], row["tags"], row["priority"])


def _one_job(cursor: Cursor[DictRow]) -> Job | None:
    row = cursor.fetchone()
    return None if row is None else job_from_row(row)


def _job_or_raise(cursor: Cursor[DictRow]) -> Job:
    job = _one_job(cursor)
    assert job is not None, "a checked job vanished inside its transaction"
    return job


# -- files ---------------------------------------------------------------------


def file_info(conn: Conn, file_hash: str) -> StoredFile | None:
    row = conn.execute(
        "SELECT hash, size, mimetype, created_at FROM files WHERE hash = %s", (file_hash,)
    ).fetchone()
    if row is None:
        return None
    return StoredFile(row["hash"], row["size"], row["mimetype"], row["created_at"])


def put_file(conn: Conn, file_hash: str, data: bytes, mimetype: str, now: int) -> StoredFile:
    conn.execute(
        "INSERT INTO files (hash, size, mimetype, data, created_at) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (hash) DO NOTHING",
        (file_hash, len(data), mimetype, data, now),
    )
    stored = file_info(conn, file_hash)
    assert stored is not None
    return stored


def file_data(conn: Conn, file_hash: str) -> bytes | None:
    row = conn.execute("SELECT data FROM files WHERE hash = %s", (file_hash,)).fetchone()
    return None if row is None else bytes(row["data"])


# -- jobs ----------------------------------------------------------------------


def select_job(conn: Conn, job_id: str, *, lock: bool = False) -> Job | None:
    suffix = " FOR UPDATE" if lock else ""
    return _one_job(
        conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s{suffix}", (job_id,))
    )


def create_job(conn: Conn, job: NewJob, logs: Sequence[NewLogLine], now: int) -> Job:
    # Locked (FOR KEY SHARE) until the job is inserted: retention, deleting the file
    # at the same time, either waits for this job or has deleted the file first.
    if (
        conn.execute(
            "SELECT 1 FROM files WHERE hash = %s FOR KEY SHARE", (job.file_hash,)
        ).fetchone()
        is None
    ):
        raise NotFound(f"fileHash: no file {job.file_hash} has been uploaded")
    if conn.execute("SELECT 1 FROM jobs WHERE id = %s", (job.id,)).fetchone() is not None:
        raise ValueError(f"a job with id {job.id} already exists")
    key = tags_key(job.tags)
    ws = job.workspace
    # The level's row stays locked until commit, and the job takes its seq after
    # that: within a level, ordinals follow seq across replicas.
    ordinal = take_ordinal(Ranks(conn), (job.organization, job.provisioner, key, job.priority))
    created = _job_or_raise(
        conn.execute(
            "INSERT INTO jobs (id, type, provisioner, organization, tags, file_hash, initiator_id,"
            " initiator_name, priority, input, trace_metadata, created_at, updated_at,"
            " workspace_id, workspace_owner_id, workspace_transition, workspace_owner_groups,"
            f" queue_ordinal) VALUES ({', '.join(['%s'] * 18)}) RETURNING {JOB_COLUMNS}",
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
                bytes(job.input),
                json.dumps(dict(job.trace_metadata)),
                now,
                now,
                ws.workspace_id if ws else None,
                ws.owner_id if ws else None,
                ws.transition if ws else None,
                json.dumps(list(ws.owner_groups)) if ws else None,
                ordinal,
            ),
        )
    )
    conn.execute(
        "INSERT INTO queues (organization, provisioner, tags) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (job.organization, job.provisioner, key),
    )
    insert_logs(conn, job.id, logs, now)
    return created


def list_jobs(conn: Conn, query: JobQuery) -> JobPage:
    conditions: list[str] = []
    params: list[Any] = []
    if query.status is not None:
        conditions.append(STATUS_CONDITIONS[query.status])
    if query.type is not None:
        conditions.append("type = %s")
        params.append(query.type.value)
    if query.organization:
        conditions.append("organization = %s")
        params.append(query.organization)
    if query.provisioner:
        conditions.append("provisioner = %s")
        params.append(query.provisioner)
    for key, value in sorted(query.tags.items()):
        conditions.append("(tags::jsonb ->> %s::text) = %s::text")
        params += [key, value]
    if query.before_seq is not None:
        conditions.append("seq < %s")
        params.append(query.before_seq)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT %s",
        [*params, query.limit + 1],
    )
    jobs = [job_from_row(row) for row in rows]
    if len(jobs) > query.limit:
        return JobPage(jobs[: query.limit], jobs[query.limit - 1].seq)
    return JobPage(jobs, None)


def cancel_job(conn: Conn, job_id: str, logs: Sequence[NewLogLine], now: int) -> Job:
    row = conn.execute(
        "UPDATE jobs SET canceled_at = %(now)s, updated_at = %(now)s,"
        " completed_at = CASE WHEN started_at IS NULL THEN %(now)s END"
        " WHERE id = %(id)s AND completed_at IS NULL AND canceled_at IS NULL"
        f" RETURNING {RANKED_COLUMNS}",
        {"now": now, "id": job_id},
    ).fetchone()
    if row is not None:
        canceled = job_from_row(row)
        if canceled.started_at is None:  # it was pending: it leaves its queue
            flip_jobs(Ranks(conn), [(_level(row), row["queue_ordinal"])], arrived=False)
        insert_logs(conn, job_id, logs, now)
        return canceled
    job = select_job(conn, job_id)
    if job is None:
        raise NotFound(f"id: no job {job_id}")
    if job.status.is_terminal:
        raise FailedPrecondition(f"job {job_id} is already {job.status.value}")
    return job  # already canceling


def _queue_params(queues: Sequence[Queue]) -> tuple[str, list[Any]]:
    """`(organization, provisioner, tags) IN (…)` for `queues`, and its parameters."""
    params: list[Any] = []
    for queue in queues:
        params += [queue.organization, queue.provisioner, tags_key(queue.tags)]
    rows = ", ".join(["(%s::text, %s::text, %s::text)"] * len(queues))
    return f"(organization, provisioner, tags) IN ({rows})", params


def claim_job(conn: Conn, queues: Sequence[Queue], daemon_id: str, now: int) -> Job | None:
    """One statement: start the best pending job among `queues`.

    `FOR UPDATE SKIP LOCKED` lets concurrent claims (other tasks, other replicas) each
    take a different job instead of queueing behind one row lock; the UPDATE re-checks
    that the job is still pending once it holds the lock.
    """
    if not queues:
        return None
    in_queues, params = _queue_params(queues)
    row = conn.execute(
        "UPDATE jobs SET started_at = %s, updated_at = %s, daemon_id = %s"
        f" WHERE seq = (SELECT seq FROM jobs WHERE {in_queues} AND {PENDING}"
        " ORDER BY priority DESC, seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
        f" AND {PENDING} RETURNING {RANKED_COLUMNS}",
        [now, now, daemon_id, *params],
    ).fetchone()
    if row is None:
        return None
    flip_jobs(Ranks(conn), [(_level(row), row["queue_ordinal"])], arrived=False)
    return job_from_row(row)


def create_and_claim_job(
    conn: Conn, job: NewJob, logs: Sequence[NewLogLine], daemon_id: str, now: int
) -> tuple[Job, Job]:
    """`Store.create_and_claim_job` in one transaction."""
    created = create_job(conn, job, logs, now)
    return handed_over(created, claim_job(conn, [new_jobs_queue(job)], daemon_id, now))


def pending_queues(conn: Conn) -> list[Queue]:
    rows = conn.execute(
        "SELECT organization, provisioner, tags FROM queues"
        ' ORDER BY organization COLLATE "C", provisioner COLLATE "C", tags COLLATE "C"'
    )
    return [Queue(r["organization"], r["provisioner"], json.loads(r["tags"])) for r in rows]


def queue_positions(conn: Conn, jobs: Sequence[Job]) -> list[QueuePosition]:
    """Each job's place from its level counters (provd/store/_ranks.py), its few
    statements in one snapshot (REPEATABLE READ), so a write committed between them
    cannot make counters and marks disagree."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    return positions(Ranks(conn), jobs, PENDING)


def pending_summary(conn: Conn) -> list[PendingSummary]:
    summaries = []
    for queue in pending_queues(conn):
        row = conn.execute(
            "SELECT COUNT(*) AS count, MIN(created_at) AS oldest FROM jobs WHERE organization = %s"
            f" AND provisioner = %s AND tags = %s AND {PENDING}",
            (queue.organization, queue.provisioner, tags_key(queue.tags)),
        ).fetchone()
        if row is not None and row["count"]:
            summaries.append(PendingSummary(queue, row["count"], row["oldest"]))
    return summaries


def job_history(
    conn: Conn, window_ms: int, bucket_ms: int, organization: str, now: int
) -> JobHistory:
    """`Store.job_history` in one snapshot (REPEATABLE READ), provd/store/_history.py:
    a range of `jobs_completed`, the running jobs (`jobs_running`), the tail of the
    table by seq (a backward walk of its primary key), and the level counters; never
    the pending jobs that were waiting before the window."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    start, count = grid(now, window_ms, bucket_ms)
    where = "AND organization = %(org)s" if organization else ""
    params = {"start": start, "bucket": bucket_ms, "org": organization, "skew": SKEW_MS}
    finished = conn.execute(
        "SELECT (completed_at - %(start)s) / %(bucket)s AS bucket,"
        f" {outcome_case(STATUS_CONDITIONS)} AS status, COUNT(*) AS jobs"
        f" FROM jobs WHERE completed_at >= %(start)s {where} GROUP BY 1, 2",
        params,
    ).fetchall()
    left = conn.execute(
        "SELECT (COALESCE(started_at, completed_at) - %(start)s) / %(bucket)s AS bucket,"
        " COUNT(*) AS jobs FROM jobs WHERE completed_at >= %(start)s"
        f" AND COALESCE(started_at, completed_at) >= %(start)s {where} GROUP BY 1 UNION ALL"
        " SELECT (started_at - %(start)s) / %(bucket)s, COUNT(*) FROM jobs"
        f" WHERE {RUNNING} AND started_at >= %(start)s {where} GROUP BY 1",
        params,
    ).fetchall()
    arrived = conn.execute(
        "SELECT (created_at - %(start)s) / %(bucket)s AS bucket, COUNT(*) AS jobs FROM jobs"
        " WHERE seq > COALESCE((SELECT seq FROM jobs WHERE created_at < %(start)s - %(skew)s"
        f" ORDER BY seq DESC LIMIT 1), 0) AND created_at >= %(start)s {where} GROUP BY 1",
        params,
    ).fetchall()
    pending = conn.execute(
        "SELECT COALESCE(SUM(pending), 0) AS pending FROM queue_levels"
        " WHERE %(org)s = '' OR organization = %(org)s",
        params,
    ).fetchone()
    return assemble(
        now,
        start,
        bucket_ms,
        count,
        int(pending["pending"]) if pending else 0,
        [(row["bucket"], JobStatus(row["status"]), row["jobs"]) for row in finished],
        [(row["bucket"], row["jobs"]) for row in arrived],
        [(row["bucket"], row["jobs"]) for row in left],
    )


# -- retention -----------------------------------------------------------------------

# A build that is the latest of its workspace: quota counts its cost, so retention keeps it.
LATEST_BUILD = (
    "workspace_id IS NOT NULL AND seq = (SELECT MAX(seq) FROM jobs AS k"
    " WHERE k.organization = j.organization AND k.workspace_owner_id = j.workspace_owner_id"
    " AND k.workspace_id = j.workspace_id)"
)


def purge_expired(conn: Conn, completed_before: int, files_before: int, limit: int) -> Purged:
    """`Store.purge_expired`. Replicas purging at once lock disjoint batches (`SKIP
    LOCKED`). A file is locked before it is deleted and `create_job` locks the file it
    names, so a job created meanwhile either keeps its file or finds it gone
    (`NotFound`), never a foreign-key error; should one still slip through, that file
    stays, alone (a savepoint). Space is reused once autovacuum has run."""
    ids = [
        row["id"]
        for row in conn.execute(
            f"SELECT id FROM jobs AS j WHERE completed_at < %s AND NOT ({LATEST_BUILD})"
            " ORDER BY completed_at LIMIT %s FOR UPDATE OF j SKIP LOCKED",
            (completed_before, limit),
        )
    ]
    logs = 0
    if ids:
        logs = sum(
            line_count(row["first_id"], row["last_id"])
            for row in conn.execute(
                "DELETE FROM log_chunks WHERE job_id = ANY(%s) RETURNING first_id, last_id",
                (ids,),
            ).fetchall()
        )
        conn.execute("DELETE FROM jobs WHERE id = ANY(%s)", (ids,))
    if len(ids) >= limit:
        return Purged(jobs=len(ids), logs=logs)
    hashes = [
        row["hash"]
        for row in conn.execute(
            "SELECT hash FROM files AS f WHERE created_at < %s"
            " AND NOT EXISTS (SELECT 1 FROM jobs WHERE file_hash = f.hash)"
            " LIMIT %s FOR UPDATE SKIP LOCKED",
            (files_before, limit),
        )
    ]
    files = 0
    for file_hash in hashes:
        # A job created meanwhile that references the file keeps it: its savepoint
        # rolls back and the purge goes on with the next file.
        with contextlib.suppress(pg_errors.ForeignKeyViolation), conn.transaction():
            files += conn.execute(
                "DELETE FROM files WHERE hash = %s"
                " AND NOT EXISTS (SELECT 1 FROM jobs WHERE file_hash = %s)",
                (file_hash, file_hash),
            ).rowcount
    return Purged(jobs=len(ids), logs=logs, files=files)


# -- the daemon protocol ------------------------------------------------------------


def held_job(conn: Conn, job_id: str, daemon_id: str) -> Job:
    """The job, locked, if `daemon_id` holds it and it is still running; else the
    error to send."""
    job = select_job(conn, job_id, lock=True)
    if job is None:
        raise NotFound(f"jobId: no job {job_id}")
    if job.daemon_id != daemon_id or job.started_at is None:
        raise PermissionDenied(f"jobId: job {job_id} is not held by this daemon")
    if job.completed_at is not None:
        raise FailedPrecondition(f"jobId: job {job_id} is already {job.status.value}")
    return job


def _check_held(conn: Conn, job_id: str, daemon_id: str) -> DictRow:
    """`held_job`'s check without building the `Job`: locks the row and returns its
    log budget columns, or raises the error `held_job` raises."""
    row = conn.execute(
        "SELECT daemon_id, started_at, completed_at, log_bytes, logs_overflowed FROM jobs"
        " WHERE id = %s FOR UPDATE",
        (job_id,),
    ).fetchone()
    if (
        row is None
        or row["daemon_id"] != daemon_id
        or row["started_at"] is None
        or row["completed_at"] is not None
    ):
        held_job(conn, job_id, daemon_id)  # raises the error that says why
        raise AssertionError(f"job {job_id} failed the holder check but passed held_job")
    return row


def release_job(
    conn: Conn, job_id: str, daemon_id: str, logs: Sequence[NewLogLine], now: int
) -> Job | None:
    row = conn.execute(
        "UPDATE jobs SET started_at = NULL, daemon_id = NULL, updated_at = %(now)s,"
        " completed_at = CASE WHEN canceled_at IS NOT NULL THEN %(now)s END"
        f" WHERE id = %(id)s AND daemon_id = %(worker)s AND {RUNNING}"
        f" RETURNING {RANKED_COLUMNS}",
        {"now": now, "id": job_id, "worker": daemon_id},
    ).fetchone()
    if row is None:
        return None
    released = job_from_row(row)
    if released.completed_at is None:  # pending again, at its old place
        flip_jobs(Ranks(conn), [(_level(row), row["queue_ordinal"])], arrived=True)
    insert_logs(conn, job_id, logs, now)
    return released


def update_job(conn: Conn, job_id: str, daemon_id: str, update: JobUpdate, now: int) -> Job:
    held = _check_held(conn, job_id, daemon_id)
    logs = LogBatch()
    overflowed = bool(held["logs_overflowed"])
    if not overflowed:
        logs, overflowed = cut_to_budget(
            as_batch(update.logs, now), held["log_bytes"], update.log_budget_bytes
        )
    size = _store_lines(conn, job_id, logs)
    return _job_or_raise(
        conn.execute(
            "UPDATE jobs SET updated_at = %s, readme = COALESCE(%s::bytea, readme),"
            " template_variables = COALESCE(%s::bytea, template_variables),"
            " log_bytes = log_bytes + %s, logs_overflowed = %s"
            f" WHERE id = %s RETURNING {JOB_COLUMNS}",
            (
                now,
                None if update.readme is None else bytes(update.readme),
                None if update.template_variables is None else bytes(update.template_variables),
                size,
                overflowed,
                job_id,
            ),
        )
    )


def complete_job(
    conn: Conn, job_id: str, daemon_id: str, result: bytes, job_type: JobType | None, now: int
) -> Job:
    _check_held(conn, job_id, daemon_id)
    completed = _job_or_raise(
        conn.execute(
            "UPDATE jobs SET completed_at = %s, updated_at = %s, result = %s"
            f" WHERE id = %s RETURNING {JOB_COLUMNS}",
            (now, now, bytes(result), job_id),
        )
    )
    refuse_other_type(completed, job_type)  # the transaction rolls back
    return completed


def fail_job(
    conn: Conn,
    job_id: str,
    daemon_id: str,
    error: str,
    error_code: str,
    result: bytes | None,
    logs: Sequence[NewLogLine],
    now: int,
) -> Job:
    _check_held(conn, job_id, daemon_id)
    insert_logs(conn, job_id, logs, now)
    # An empty error means "canceled" only for a job that was asked to cancel; on
    # any other job it must still read as failed.
    return _job_or_raise(
        conn.execute(
            "UPDATE jobs SET completed_at = %(now)s, updated_at = %(now)s,"
            " error_code = %(code)s::text, error = CASE WHEN %(error)s::text = ''"
            " AND canceled_at IS NULL THEN %(fallback)s::text ELSE %(error)s::text END,"
            " result = COALESCE(%(result)s::bytea, result)"
            f" WHERE id = %(id)s RETURNING {JOB_COLUMNS}",
            {
                "now": now,
                "code": error_code,
                "error": error,
                "fallback": FAILED_WITHOUT_REASON,
                "result": None if result is None else bytes(result),
                "id": job_id,
            },
        )
    )


def fail_hung_jobs(
    conn: Conn,
    updated_before: int,
    error: str,
    error_code: str,
    logs: Sequence[NewLogLine],
    now: int,
) -> list[Job]:
    failed = [
        job_from_row(row)
        for row in conn.execute(
            "UPDATE jobs SET completed_at = %s, updated_at = %s, error = %s, error_code = %s"
            f" WHERE {RUNNING} AND updated_at < %s RETURNING {JOB_COLUMNS}",
            (now, now, error, error_code, updated_before),
        ).fetchall()
    ]
    failed.sort(key=lambda job: job.seq)
    for job in failed:
        insert_logs(conn, job.id, logs, now)
    return failed


def fail_pending_jobs(
    conn: Conn,
    queue: Queue,
    created_before: int,
    error: str,
    error_code: str,
    logs: Sequence[NewLogLine],
    now: int,
) -> list[Job]:
    rows = conn.execute(
        "UPDATE jobs SET completed_at = %s, updated_at = %s, error = %s, error_code = %s"
        f" WHERE organization = %s AND provisioner = %s AND tags = %s AND {PENDING}"
        f" AND created_at < %s RETURNING {RANKED_COLUMNS}",
        (
            now,
            now,
            error,
            error_code,
            queue.organization,
            queue.provisioner,
            tags_key(queue.tags),
            created_before,
        ),
    ).fetchall()
    flip_jobs(Ranks(conn), [(_level(row), row["queue_ordinal"]) for row in rows], arrived=False)
    failed = [job_from_row(row) for row in rows]
    failed.sort(key=lambda job: job.seq)
    for job in failed:
        insert_logs(conn, job.id, logs, now)
    return failed


def running_jobs_by_daemon(conn: Conn) -> dict[str, str]:
    rows = conn.execute(f"SELECT daemon_id, id FROM jobs WHERE {RUNNING} ORDER BY seq")
    return {row["daemon_id"]: row["id"] for row in rows}


# -- logs ----------------------------------------------------------------------


def read_logs(conn: Conn, job_id: str, after: int, limit: int) -> list[LogLine]:
    """The page of lines after `after`. The chunks' bounds are read first (at most
    `limit` of them: each holds a line or more), so only the chunks the page needs are
    fetched, not every chunk of a long log."""
    limit_clause = "" if limit < 0 else " LIMIT %s"
    params: list[Any] = [job_id, after]
    if limit >= 0:
        params.append(limit)
    bounds = conn.execute(
        "SELECT first_id, last_id FROM log_chunks WHERE job_id = %s AND last_id > %s"
        f" ORDER BY last_id{limit_clause}",
        params,
    ).fetchall()
    wanted, last = 0, None
    for row in bounds:
        last = row["last_id"]
        wanted += line_count(max(row["first_id"], after + 1), last)
        if 0 <= limit <= wanted:
            break
    if last is None:
        return []
    stored = conn.execute(
        "SELECT first_id, lines FROM log_chunks WHERE job_id = %s AND last_id > %s"
        " AND last_id <= %s ORDER BY last_id",
        (job_id, after, last),
    )
    return read_chunks(job_id, ((row["first_id"], row["lines"]) for row in stored), after, limit)


def insert_logs(conn: Conn, job_id: str, logs: Sequence[NewLogLine], now: int) -> None:
    """Append lines in order, charged to the job's log budget but never cut by it."""
    size = _store_lines(conn, job_id, as_batch(logs, now))
    if size:
        conn.execute("UPDATE jobs SET log_bytes = log_bytes + %s WHERE id = %s", (size, job_id))


def _store_lines(conn: Conn, job_id: str, batch: LogBatch) -> int:
    """Insert `batch` into log_chunks, in order, and return what it costs against the
    job's log budget. A chunk's lines take ids from `first_id`, the next value of the
    sequence `log_chunk_ids`, which steps by 1,024 (more than a chunk holds). The
    caller holds the job's row lock, so a job's chunks get increasing ids in commit
    order and a follower reading `after` an id misses none."""
    for count, encoded in chunks(batch):
        conn.execute(
            "INSERT INTO log_chunks (first_id, job_id, last_id, lines)"
            " SELECT n, %s, n + %s - 1, %s FROM nextval('log_chunk_ids') AS n",
            (job_id, count, encoded),
        )
    return batch.size


# -- daemons ---------------------------------------------------------------------


def upsert_daemon(conn: Conn, daemon: Daemon, now: int) -> None:
    known = conn.execute(
        "SELECT id FROM daemons WHERE organization = %s AND name = %s AND owner = %s"
        " AND key_id = %s",
        (daemon.organization, daemon.name, daemon.owner, daemon.key_id),
    ).fetchone()
    if known is not None and known["id"] != daemon.id:
        raise ValueError(
            f"daemon {daemon.name!r} of {daemon.organization!r} (owner"
            f" {daemon.owner!r}, key {daemon.key_id!r}) is already stored with id {known['id']}"
        )
    conn.execute(
        "INSERT INTO daemons (id, organization, name, owner, provisioners, tags, version,"
        " api_version, created_at, last_seen_at, key_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET provisioners = excluded.provisioners,"
        " tags = excluded.tags, version = excluded.version,"
        " api_version = excluded.api_version,"
        " last_seen_at = GREATEST(daemons.last_seen_at, excluded.last_seen_at)",
        (
            daemon.id,
            daemon.organization,
            daemon.name,
            daemon.owner,
            json.dumps(list(daemon.provisioners)),
            json.dumps(dict(sorted(daemon.tags.items()))),
            daemon.version,
            daemon.api_version,
            now,
            now,
            daemon.key_id,
        ),
    )


def touch_daemons(
    conn: Conn, last_seen: Mapping[str, int], connected_until: Mapping[str, int]
) -> None:
    """Move last-seen times and stream leases forward, never back, in one statement."""
    ids = sorted({*last_seen, *connected_until})  # one lock order for every writer
    conn.execute(
        "UPDATE daemons SET last_seen_at = GREATEST(last_seen_at, t.seen),"
        " connected_until = GREATEST(connected_until, t.until)"
        " FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS t(id, seen, until)"
        " WHERE daemons.id = t.id",
        (ids, [last_seen.get(i, 0) for i in ids], [connected_until.get(i, 0) for i in ids]),
    )


def list_daemons(conn: Conn) -> list[DaemonRecord]:
    return [presence.record for presence in daemon_presence(conn)]


def daemon_presence(conn: Conn) -> list[DaemonPresence]:
    rows = conn.execute(
        "SELECT id, organization, name, owner, provisioners, tags, version, api_version,"
        " created_at, last_seen_at, connected_until, key_id FROM daemons"
        ' ORDER BY organization COLLATE "C", name COLLATE "C", owner COLLATE "C",'
        ' key_id COLLATE "C"'
    )
    return [DaemonPresence(_daemon_record(row), row["connected_until"]) for row in rows]


def _daemon_record(row: DictRow) -> DaemonRecord:
    return DaemonRecord(
        daemon=Daemon(
            id=row["id"],
            organization=row["organization"],
            name=row["name"],
            owner=row["owner"],
            provisioners=tuple(json.loads(row["provisioners"])),
            tags=json.loads(row["tags"]),
            version=row["version"],
            api_version=row["api_version"],
            key_id=row["key_id"],
        ),
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
    )


# -- quota ---------------------------------------------------------------------


def set_allowance(conn: Conn, allowance: Allowance) -> None:
    if allowance.kind not in ("user", "group"):
        raise ValueError(f"allowance kind must be 'user' or 'group', got {allowance.kind!r}")
    if allowance.allowance < 0:
        raise ValueError(f"allowance must not be negative, got {allowance.allowance}")
    conn.execute(
        "INSERT INTO quota_allowances (organization, subject_kind, subject, allowance)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (organization, subject_kind, subject)"
        " DO UPDATE SET allowance = excluded.allowance",
        (allowance.organization, allowance.kind, allowance.subject, allowance.allowance),
    )


def delete_allowance(conn: Conn, organization: str, kind: str, subject: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM quota_allowances WHERE organization = %s AND subject_kind = %s"
        " AND subject = %s",
        (organization, kind, subject),
    )
    return cursor.rowcount > 0


def list_allowances(conn: Conn, organization: str) -> list[Allowance]:
    rows = conn.execute(
        "SELECT organization, subject_kind, subject, allowance FROM quota_allowances"
        ' WHERE organization = %s ORDER BY subject_kind COLLATE "C", subject COLLATE "C"',
        (organization,),
    )
    return [
        Allowance(r["organization"], r["subject_kind"], r["subject"], r["allowance"]) for r in rows
    ]


def budget(conn: Conn, organization: str, user_id: str, groups: Sequence[str]) -> int:
    """The user's own allowance plus their groups'; -1 when the organization sets none."""
    row = conn.execute(
        "SELECT COUNT(*) AS configured, COALESCE(SUM(allowance) FILTER (WHERE"
        " (subject_kind = 'user' AND subject = %s::text)"
        " OR (subject_kind = 'group' AND subject = ANY(%s::text[]))), 0) AS total"
        " FROM quota_allowances WHERE organization = %s",
        (user_id, list(groups), organization),
    ).fetchone()
    assert row is not None
    return -1 if not row["configured"] else int(row["total"])


def consumed(conn: Conn, organization: str, owner_id: str, excluding_job: str = "") -> int:
    """Daily cost of the latest build of each of the owner's live workspaces."""
    row = conn.execute(
        "SELECT COALESCE(SUM(daily_cost), 0) AS total FROM jobs AS j"
        " WHERE organization = %(org)s AND workspace_owner_id = %(owner)s"
        " AND workspace_id IS NOT NULL AND id != %(excluding)s"
        " AND workspace_transition != %(destroy)s"
        " AND seq = (SELECT MAX(seq) FROM jobs AS k WHERE k.organization = j.organization"
        " AND k.workspace_owner_id = j.workspace_owner_id AND k.workspace_id = j.workspace_id)",
        {"org": organization, "owner": owner_id, "excluding": excluding_job, "destroy": DESTROY},
    ).fetchone()
    assert row is not None
    return int(row["total"])


def quota_usage(
    conn: Conn, organization: str, user_id: str, groups: Sequence[str]
) -> tuple[int, int]:
    return consumed(conn, organization, user_id), budget(conn, organization, user_id, groups)


def commit_quota(conn: Conn, job_id: str, daemon_id: str, daily_cost: int) -> QuotaDecision:
    """Allow the build's cost unless it would take its owner over budget while not
    lowering the workspace's cost; record it when allowed.

    Two builds of one owner committing at once must not both fit the same remaining
    budget: a transaction-scoped advisory lock on the owner serializes them."""
    job = held_job(conn, job_id, daemon_id)
    if job.type is not JobType.WORKSPACE_BUILD:
        raise FailedPrecondition(
            f"jobId: job {job_id} is a {job.type.value}; only workspace builds commit quota"
        )
    if job.workspace is None:
        raise FailedPrecondition(
            f"jobId: job {job_id} has no workspaceId in its metadata, so its cost cannot be"
            " accounted to a workspace"
        )
    ws = job.workspace
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (json.dumps(["quota", job.organization, ws.owner_id]),),
    )
    limit = budget(conn, job.organization, ws.owner_id, ws.owner_groups)
    used = consumed(conn, job.organization, ws.owner_id, excluding_job=job_id)
    previous = conn.execute(
        "SELECT daily_cost FROM jobs WHERE organization = %s AND workspace_owner_id = %s"
        " AND workspace_id = %s AND seq < %s ORDER BY seq DESC LIMIT 1",
        (job.organization, ws.owner_id, ws.workspace_id, job.seq),
    ).fetchone()
    net_increase = previous is None or daily_cost >= previous["daily_cost"]
    if limit >= 0 and used + daily_cost > limit and net_increase:
        return QuotaDecision(ok=False, credits_consumed=used, budget=limit)
    conn.execute("UPDATE jobs SET daily_cost = %s WHERE id = %s", (daily_cost, job_id))
    return QuotaDecision(ok=True, credits_consumed=used + daily_cost, budget=limit)
