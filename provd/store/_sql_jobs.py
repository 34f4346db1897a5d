"""The SQL for files, jobs and logs: plain functions of a connection.

Each function runs inside a transaction that its caller opened (the writer's
batch, or a reader's snapshot); none commits. Rows come as `sqlite3.Row`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from provd.errors import FailedPrecondition, NotFound, PermissionDenied
from provd.model import (
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
    StoredFile,
    WorkspaceRef,
    tags_key,
)
from provd.store import JobHistory, Purged
from provd.store._history import SKEW_MS, assemble, grid, outcome_case
from provd.store._log_chunks import as_batch, chunks, line_count, read_chunks
from provd.store._ranks import Level, flip_jobs, positions, take_ordinal
from provd.store._rules import (
    FAILED_WITHOUT_REASON,
    cut_to_budget,
    handed_over,
    new_jobs_queue,
    refuse_other_type,
)

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


def job_from_row(row: sqlite3.Row) -> Job:
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
        input=row["input"],
        trace_metadata=json.loads(row["trace_metadata"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        canceled_at=row["canceled_at"],
        completed_at=row["completed_at"],
        daemon_id=row["daemon_id"],
        error=row["error"],
        error_code=row["error_code"],
        result=row["result"],
        readme=row["readme"],
        template_variables=row["template_variables"],
        logs_overflowed=bool(row["logs_overflowed"]),
        workspace=workspace,
        daily_cost=row["daily_cost"],
    )


class Ranks:
    """`provd.store._ranks.Dialect` for SQLite: lists travel as JSON; no row locks
    (one writer at a time)."""

    param = "?"
    lock = ""
    text = "?"
    integer = "?"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def any_of(self) -> str:
        return "IN (SELECT value FROM json_each(?))"

    def each(self) -> str:
        return "SELECT value FROM json_each(?)"

    def pack(self, values: Sequence[int]) -> Any:
        return json.dumps(list(values))

    def rows(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        return self._conn.execute(sql, params).fetchall()

    def run(self, sql: str, params: Sequence[Any]) -> int:
        return self._conn.execute(sql, params).rowcount


def _level(row: sqlite3.Row) -> Level:
    return (row["organization"], row["provisioner"], row["tags"], row["priority"])


def _one_job(cursor: sqlite3.Cursor) -> Job | None:
    row = cursor.fetchone()
    return None if row is None else job_from_row(row)


def _job_or_raise(cursor: sqlite3.Cursor) -> Job:
    job = _one_job(cursor)
    assert job is not None, "a checked job vanished inside its transaction"
    return job


# -- files ---------------------------------------------------------------------


def file_info(conn: sqlite3.Connection, file_hash: str) -> StoredFile | None:
    row = conn.execute(
        "SELECT hash, size, mimetype, created_at FROM files WHERE hash = ?", (file_hash,)
    ).fetchone()
    return None if row is None else StoredFile(*row)


def put_file(
    conn: sqlite3.Connection, file_hash: str, data: bytes, mimetype: str, now: int
) -> StoredFile:
    conn.execute(
        "INSERT INTO files (hash, size, mimetype, data, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (hash) DO NOTHING",
        (file_hash, len(data), mimetype, data, now),
    )
    stored = file_info(conn, file_hash)
    assert stored is not None
    return stored


def file_data(conn: sqlite3.Connection, file_hash: str) -> bytes | None:
    row = conn.execute("SELECT data FROM files WHERE hash = ?", (file_hash,)).fetchone()
    return None if row is None else bytes(row[0])


# -- jobs ----------------------------------------------------------------------


def select_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    return _one_job(conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)))


def create_job(conn: sqlite3.Connection, job: NewJob, logs: Sequence[NewLogLine], now: int) -> Job:
    if conn.execute("SELECT 1 FROM files WHERE hash = ?", (job.file_hash,)).fetchone() is None:
        raise NotFound(f"fileHash: no file {job.file_hash} has been uploaded")
    key = tags_key(job.tags)
    ws = job.workspace
    ordinal = take_ordinal(Ranks(conn), (job.organization, job.provisioner, key, job.priority))
    created = _job_or_raise(
        conn.execute(
            "INSERT INTO jobs (id, type, provisioner, organization, tags, file_hash, initiator_id,"
            " initiator_name, priority, input, trace_metadata, created_at, updated_at,"
            " workspace_id, workspace_owner_id, workspace_transition, workspace_owner_groups,"
            f" queue_ordinal) VALUES ({', '.join('?' * 18)}) RETURNING {JOB_COLUMNS}",
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
                ws.workspace_id if ws else None,
                ws.owner_id if ws else None,
                ws.transition if ws else None,
                json.dumps(list(ws.owner_groups)) if ws else None,
                ordinal,
            ),
        )
    )
    conn.execute(
        "INSERT OR IGNORE INTO queues (organization, provisioner, tags) VALUES (?, ?, ?)",
        (job.organization, job.provisioner, key),
    )
    insert_logs(conn, job.id, logs, now)
    return created


def list_jobs(conn: sqlite3.Connection, query: JobQuery) -> JobPage:
    conditions: list[str] = []
    params: list[Any] = []
    if query.status is not None:
        conditions.append(STATUS_CONDITIONS[query.status])
    if query.type is not None:
        conditions.append("type = ?")
        params.append(query.type.value)
    if query.organization:
        conditions.append("organization = ?")
        params.append(query.organization)
    if query.provisioner:
        conditions.append("provisioner = ?")
        params.append(query.provisioner)
    for key, value in sorted(query.tags.items()):
        conditions.append("EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE key = ? AND value = ?)")
        params += [key, value]
    if query.before_seq is not None:
        conditions.append("seq < ?")
        params.append(query.before_seq)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ?",
        [*params, query.limit + 1],
    )
    jobs = [job_from_row(row) for row in rows]
    if len(jobs) > query.limit:
        return JobPage(jobs[: query.limit], jobs[query.limit - 1].seq)
    return JobPage(jobs, None)


def cancel_job(conn: sqlite3.Connection, job_id: str, logs: Sequence[NewLogLine], now: int) -> Job:
    row = conn.execute(
        "UPDATE jobs SET canceled_at = :now, updated_at = :now,"
        " completed_at = CASE WHEN started_at IS NULL THEN :now END"
        " WHERE id = :id AND completed_at IS NULL AND canceled_at IS NULL"
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


def claim_job(
    conn: sqlite3.Connection, queues: Sequence[Queue], daemon_id: str, now: int
) -> Job | None:
    """One statement: start the best head among `queues`' pending jobs.

    Each queue's head is one seek in `jobs_pending`, so the cost does not grow with
    the number of pending jobs.
    """
    if not queues:
        return None
    heads = " UNION ALL ".join(
        "SELECT * FROM (SELECT seq, priority FROM jobs WHERE organization = ?"
        f" AND provisioner = ? AND tags = ? AND {PENDING} ORDER BY priority DESC, seq LIMIT 1)"
        for _ in queues
    )
    params: list[Any] = [now, now, daemon_id]
    for queue in queues:
        params += [queue.organization, queue.provisioner, tags_key(queue.tags)]
    row = conn.execute(
        "UPDATE jobs SET started_at = ?, updated_at = ?, daemon_id = ?"
        f" WHERE seq = (SELECT seq FROM ({heads}) ORDER BY priority DESC, seq LIMIT 1)"
        f" AND {PENDING} RETURNING {RANKED_COLUMNS}",
        params,
    ).fetchone()
    if row is None:
        return None
    flip_jobs(Ranks(conn), [(_level(row), row["queue_ordinal"])], arrived=False)
    return job_from_row(row)


def create_job_in_line(
    conn: sqlite3.Connection, job: NewJob, logs: Sequence[NewLogLine], now: int
) -> tuple[Job, QueuePosition]:
    """`Store.create_job_in_line` in the writer's transaction: the counters the insert
    just moved are read by the same connection, so the place is exact."""
    created = create_job(conn, job, logs, now)
    (position,) = positions(Ranks(conn), [created], PENDING)
    return created, position


def create_and_claim_job(
    conn: sqlite3.Connection, job: NewJob, logs: Sequence[NewLogLine], daemon_id: str, now: int
) -> tuple[Job, Job]:
    """`Store.create_and_claim_job` in the writer's transaction."""
    created = create_job(conn, job, logs, now)
    return handed_over(created, claim_job(conn, [new_jobs_queue(job)], daemon_id, now))


def pending_queues(conn: sqlite3.Connection) -> list[Queue]:
    rows = conn.execute("SELECT organization, provisioner, tags FROM queues")
    return [Queue(org, prov, json.loads(tags)) for org, prov, tags in rows]


def queue_positions(conn: sqlite3.Connection, jobs: Sequence[Job]) -> list[QueuePosition]:
    """Each job's place from its level counters (provd/store/_ranks.py): a fixed
    number of statements, whatever the number of jobs or the length of their queues."""
    return positions(Ranks(conn), jobs, PENDING)


def pending_summary(conn: sqlite3.Connection) -> list[PendingSummary]:
    summaries = []
    for queue in pending_queues(conn):
        count, oldest = conn.execute(
            "SELECT COUNT(*), MIN(created_at) FROM jobs WHERE organization = ?"
            f" AND provisioner = ? AND tags = ? AND {PENDING}",
            (queue.organization, queue.provisioner, tags_key(queue.tags)),
        ).fetchone()
        if count:
            summaries.append(PendingSummary(queue, count, oldest))
    return summaries


def job_history(
    conn: sqlite3.Connection, window_ms: int, bucket_ms: int, organization: str, now: int
) -> JobHistory:
    """`Store.job_history` in one read snapshot (provd/store/_history.py): a range of
    `jobs_completed`, the running jobs, the tail of the table by seq, and the level
    counters; never the pending jobs that were waiting before the window."""
    start, count = grid(now, window_ms, bucket_ms)
    where = "AND organization = :org" if organization else ""
    params = {"start": start, "bucket": bucket_ms, "org": organization, "skew": SKEW_MS}
    finished = conn.execute(
        f"SELECT (completed_at - :start) / :bucket, {outcome_case(STATUS_CONDITIONS)}, COUNT(*)"
        f" FROM jobs WHERE completed_at >= :start {where} GROUP BY 1, 2",
        params,
    ).fetchall()
    left = conn.execute(
        "SELECT (COALESCE(started_at, completed_at) - :start) / :bucket, COUNT(*) FROM jobs"
        f" WHERE completed_at >= :start AND COALESCE(started_at, completed_at) >= :start {where}"
        " GROUP BY 1 UNION ALL"
        " SELECT (started_at - :start) / :bucket, COUNT(*) FROM jobs INDEXED BY jobs_running"
        f" WHERE {RUNNING} AND started_at >= :start {where} GROUP BY 1",
        params,
    ).fetchall()
    arrived = conn.execute(
        "SELECT (created_at - :start) / :bucket, COUNT(*) FROM jobs WHERE seq > COALESCE(("
        "SELECT seq FROM jobs WHERE created_at < :start - :skew ORDER BY seq DESC LIMIT 1), 0)"
        f" AND created_at >= :start {where} GROUP BY 1",
        params,
    ).fetchall()
    (pending_now,) = conn.execute(
        "SELECT COALESCE(SUM(pending), 0) FROM queue_levels WHERE :org = '' OR organization = :org",
        params,
    ).fetchone()
    return assemble(
        now,
        start,
        bucket_ms,
        count,
        pending_now,
        [(bucket, JobStatus(status), jobs) for bucket, status, jobs in finished],
        arrived,
        left,
    )


# -- retention -----------------------------------------------------------------------

# A build that is the latest of its workspace: quota counts its cost, so retention keeps it.
LATEST_BUILD = (
    "workspace_id IS NOT NULL AND seq = (SELECT MAX(seq) FROM jobs AS k"
    " WHERE k.organization = j.organization AND k.workspace_owner_id = j.workspace_owner_id"
    " AND k.workspace_id = j.workspace_id)"
)


def purge_expired(
    conn: sqlite3.Connection, completed_before: int, files_before: int, limit: int
) -> Purged:
    """`Store.purge_expired` in the writer's transaction: seeks in `jobs_completed`,
    `log_chunks_job` and `jobs_file`, so its cost follows what it deletes, not the
    table sizes. Pages it frees go on the file's free list and later inserts reuse
    them (the schema leaves auto_vacuum off: the file does not shrink, it stops
    growing)."""
    ids = [
        row[0]
        for row in conn.execute(
            f"SELECT id FROM jobs AS j WHERE completed_at < ? AND NOT ({LATEST_BUILD})"
            " ORDER BY completed_at LIMIT ?",
            (completed_before, limit),
        )
    ]
    logs = 0
    if ids:
        batch = json.dumps(ids)
        logs = sum(
            line_count(first_id, last_id)
            for first_id, last_id in conn.execute(
                "DELETE FROM log_chunks WHERE job_id IN (SELECT value FROM json_each(?))"
                " RETURNING first_id, last_id",
                (batch,),
            ).fetchall()
        )
        conn.execute("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))", (batch,))
    if len(ids) >= limit:
        return Purged(jobs=len(ids), logs=logs)
    # The CASE looks at created_at (stored after the data, so reading it walks the
    # blob's overflow pages) only for files that no job references.
    files = conn.execute(
        "DELETE FROM files WHERE hash IN (SELECT hash FROM files AS f WHERE CASE"
        " WHEN EXISTS (SELECT 1 FROM jobs WHERE file_hash = f.hash) THEN 0"
        " ELSE f.created_at < ? END LIMIT ?)",
        (files_before, limit),
    ).rowcount
    return Purged(jobs=len(ids), logs=logs, files=files)


# -- the daemon protocol ------------------------------------------------------------


def held_job(conn: sqlite3.Connection, job_id: str, daemon_id: str) -> Job:
    """The job, if `daemon_id` holds it and it is still running; else the error to send."""
    job = select_job(conn, job_id)
    if job is None:
        raise NotFound(f"jobId: no job {job_id}")
    if job.daemon_id != daemon_id or job.started_at is None:
        raise PermissionDenied(f"jobId: job {job_id} is not held by this daemon")
    if job.completed_at is not None:
        raise FailedPrecondition(f"jobId: job {job_id} is already {job.status.value}")
    return job


def _check_held(conn: sqlite3.Connection, job_id: str, daemon_id: str) -> sqlite3.Row:
    """`held_job`'s check without building the `Job`: the job's log budget columns if
    `daemon_id` holds it and it is still running, else the error `held_job` raises."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT daemon_id, started_at, completed_at, log_bytes, logs_overflowed FROM jobs"
        " WHERE id = ?",
        (job_id,),
    ).fetchone()
    if row is None or row[0] != daemon_id or row[1] is None or row[2] is not None:
        held_job(conn, job_id, daemon_id)  # raises the error that says why
        raise AssertionError(f"job {job_id} failed the holder check but passed held_job")
    return row


def release_job(
    conn: sqlite3.Connection, job_id: str, daemon_id: str, logs: Sequence[NewLogLine], now: int
) -> Job | None:
    """Undo a claim whose job never reached the daemon: back to pending, keeping its
    place (seq) at the head of its queue; a job canceled meanwhile ends canceled."""
    row = conn.execute(
        "UPDATE jobs SET started_at = NULL, daemon_id = NULL, updated_at = :now,"
        " completed_at = CASE WHEN canceled_at IS NOT NULL THEN :now END"
        f" WHERE id = :id AND daemon_id = :worker AND {RUNNING} RETURNING {RANKED_COLUMNS}",
        {"now": now, "id": job_id, "worker": daemon_id},
    ).fetchone()
    if row is None:
        return None
    released = job_from_row(row)
    if released.completed_at is None:  # pending again, at its old place
        flip_jobs(Ranks(conn), [(_level(row), row["queue_ordinal"])], arrived=True)
    insert_logs(conn, job_id, logs, now)
    return released


def update_job(
    conn: sqlite3.Connection, job_id: str, daemon_id: str, update: JobUpdate, now: int
) -> Job:
    held = _check_held(conn, job_id, daemon_id)
    logs = LogBatch()
    overflowed = bool(held["logs_overflowed"])
    if not overflowed:
        logs, overflowed = cut_to_budget(
            as_batch(update.logs, now), held["log_bytes"], update.log_budget_bytes
        )
    size = _store_lines(conn, job_id, logs)
    # One statement for the heartbeat, the readme and the log budget.
    return _job_or_raise(
        conn.execute(
            "UPDATE jobs SET updated_at = ?, readme = COALESCE(?, readme),"
            " template_variables = COALESCE(?, template_variables),"
            " log_bytes = log_bytes + ?, logs_overflowed = ?"
            f" WHERE id = ? RETURNING {JOB_COLUMNS}",
            (now, update.readme, update.template_variables, size, overflowed, job_id),
        )
    )


def complete_job(
    conn: sqlite3.Connection,
    job_id: str,
    daemon_id: str,
    result: bytes,
    job_type: JobType | None,
    now: int,
) -> Job:
    _check_held(conn, job_id, daemon_id)
    completed = _job_or_raise(
        conn.execute(
            "UPDATE jobs SET completed_at = ?, updated_at = ?, result = ?"
            f" WHERE id = ? RETURNING {JOB_COLUMNS}",
            (now, now, result, job_id),
        )
    )
    refuse_other_type(completed, job_type)  # the writer rolls this write back
    return completed


def fail_job(
    conn: sqlite3.Connection,
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
            "UPDATE jobs SET completed_at = :now, updated_at = :now, error_code = :code,"
            " error = CASE WHEN :error = '' AND canceled_at IS NULL THEN :fallback ELSE :error END,"
            f" result = COALESCE(:result, result) WHERE id = :id RETURNING {JOB_COLUMNS}",
            {
                "now": now,
                "code": error_code,
                "error": error,
                "fallback": FAILED_WITHOUT_REASON,
                "result": result,
                "id": job_id,
            },
        )
    )


def fail_hung_jobs(
    conn: sqlite3.Connection,
    updated_before: int,
    error: str,
    error_code: str,
    logs: Sequence[NewLogLine],
    now: int,
) -> list[Job]:
    failed = [
        job_from_row(row)
        for row in conn.execute(
            "UPDATE jobs SET completed_at = ?, updated_at = ?, error = ?, error_code = ?"
            f" WHERE {RUNNING} AND updated_at < ? RETURNING {JOB_COLUMNS}",
            (now, now, error, error_code, updated_before),
        ).fetchall()
    ]
    for job in failed:
        insert_logs(conn, job.id, logs, now)
    return failed


def fail_pending_jobs(
    conn: sqlite3.Connection,
    queue: Queue,
    created_before: int,
    error: str,
    error_code: str,
    logs: Sequence[NewLogLine],
    now: int,
) -> list[Job]:
    rows = conn.execute(
        "UPDATE jobs SET completed_at = ?, updated_at = ?, error = ?, error_code = ?"
        f" WHERE organization = ? AND provisioner = ? AND tags = ? AND {PENDING}"
        f" AND created_at < ? RETURNING {RANKED_COLUMNS}",
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
    for job in failed:
        insert_logs(conn, job.id, logs, now)
    return failed


def running_jobs_by_daemon(conn: sqlite3.Connection) -> dict[str, str]:
    rows = conn.execute(f"SELECT daemon_id, id FROM jobs WHERE {RUNNING}")
    return {daemon_id: job_id for daemon_id, job_id in rows}


# -- logs ----------------------------------------------------------------------


def read_logs(conn: sqlite3.Connection, job_id: str, after: int, limit: int) -> list[LogLine]:
    stored = conn.execute(
        "SELECT first_id, lines FROM log_chunks WHERE job_id = ? AND last_id > ? ORDER BY last_id",
        (job_id, after),
    )
    try:
        return read_chunks(job_id, stored, after, limit)
    finally:
        stored.close()


def insert_logs(
    conn: sqlite3.Connection, job_id: str, logs: Sequence[NewLogLine], now: int
) -> None:
    """Append lines in order, charged to the job's log budget but never cut by it:
    the lines provd itself writes (queued, canceled, failed) are always kept."""
    size = _store_lines(conn, job_id, as_batch(logs, now))
    if size:
        conn.execute("UPDATE jobs SET log_bytes = log_bytes + ? WHERE id = ?", (size, job_id))


def _store_lines(conn: sqlite3.Connection, job_id: str, batch: LogBatch) -> int:
    """Insert `batch` into log_chunks and return what it costs against the job's log
    budget; the job's `log_bytes` is the caller's to update.

    Each line gets the id SQLite would have given a row of its own (one more than the
    largest stored): writes are serialized on the writer's connection, so nothing else
    inserts between the look-up of the last chunk and the insert.
    """
    if not batch:
        return 0
    last = conn.execute("SELECT last_id FROM log_chunks ORDER BY first_id DESC LIMIT 1").fetchone()
    next_id = 1 if last is None else last[0] + 1
    for count, encoded in chunks(batch):
        conn.execute(
            "INSERT INTO log_chunks (first_id, job_id, last_id, lines) VALUES (?, ?, ?, ?)",
            (next_id, job_id, next_id + count - 1, encoded),
        )
        next_id += count
    return batch.size
