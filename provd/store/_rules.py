"""The rules every `Store` backend computes the same way, in one place.

The SQL (`_sql_jobs`, `_sql_daemons`) and the in-memory store (`memory`) both read
them, so a rule changed here changes for every backend.
"""

from __future__ import annotations

from provd.errors import InvalidArgument
from provd.model import (
    Job,
    JobType,
    LogBatch,
    LogLevel,
    LogLine,
    LogRow,
    NewJob,
    NewLogLine,
    Queue,
)

# provisioner.WorkspaceTransition.DESTROY: a destroyed workspace costs nothing.
DESTROY = 2
# The error of a job its daemon failed with an empty error while not asked to cancel.
FAILED_WITHOUT_REASON = "the daemon failed the job without giving a reason"
# The one line that replaces a job's log output past its budget.
LOGS_TRUNCATED = (
    "Logs truncated: this job wrote more than {limit} bytes of log text; later lines were dropped."
)


def refuse_other_type(completed: Job, job_type: JobType | None) -> None:
    """A job completed as another type than its own is refused: raised inside the
    completing transaction, so the job stays running."""
    if job_type is not None and completed.type is not job_type:
        raise InvalidArgument(
            f"type: job {completed.id} is a {completed.type.value}, not a {job_type.value}"
        )


def log_size(line: NewLogLine | LogLine) -> int:
    """What a line costs against a job's log budget: its stage and output in UTF-8 bytes."""
    output, stage = line.output, line.stage
    return (len(output) if output.isascii() else len(output.encode())) + (
        len(stage) if stage.isascii() else len(stage.encode())
    )


def cut_to_budget(batch: LogBatch, used_bytes: int, limit_bytes: int) -> tuple[LogBatch, bool]:
    """The lines of one update that fit a job's log budget, and whether it overflowed.

    `used_bytes` is what the job's lines cost so far. The line that would take the job
    past `limit_bytes` is replaced by one marker line (level WARN) and the lines after
    it are dropped; the caller stores no more budgeted lines once it overflowed.
    """
    if used_bytes + batch.size <= limit_bytes:
        return batch, False
    kept: list[LogRow] = []
    for row in batch.rows:
        created_at, source, _, stage, output = row
        cost = len(stage.encode()) + len(output.encode())
        if used_bytes + cost > limit_bytes:
            marker = LOGS_TRUNCATED.format(limit=limit_bytes)
            kept.append((created_at, source, int(LogLevel.WARN), stage, marker))
            return LogBatch(kept, sum(len(r[3].encode()) + len(r[4].encode()) for r in kept)), True
        used_bytes += cost
        kept.append(row)
    raise AssertionError("the lines exceeded the budget in total but not one by one")


def new_jobs_queue(job: NewJob) -> Queue:
    """The queue a new job joins."""
    return Queue(job.organization, job.provisioner, job.tags)


def handed_over(created: Job, claimed: Job | None) -> tuple[Job, Job]:
    """`Store.create_and_claim_job`'s answer, from the job just created and the claim
    of its queue that followed in the same transaction (which cannot find it empty)."""
    if claimed is None:
        raise AssertionError(f"job {created.id} was created pending but its queue had no head")
    return (claimed if claimed.id == created.id else created), claimed
