"""The job store: the one interface the service layer depends on.

`Store` is what every backend implements (SQLite today; PostgreSQL is meant to
follow without touching the service). Each write is atomic and, once it returns,
durable: a job, log line or state change the store acknowledged survives a crash.
Writes that race are serialized by the backend, never by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from provd.model import (
    Allowance,
    Daemon,
    DaemonKey,
    DaemonRecord,
    Job,
    JobPage,
    JobQuery,
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
)

__all__ = ["DaemonPresence", "HistoryBucket", "JobHistory", "Purged", "Store"]


@dataclass(frozen=True, slots=True)
class DaemonPresence:
    """A stored daemon and its stream lease: until `connected_until` (Unix ms; 0 if
    never), some process serving this database said it held a stream open for it.

    Every process renews the leases of the daemons streaming to it at each flush of
    its registry, a few flush intervals ahead, so a lease that is not renewed (the
    stream closed, the process died) expires by itself; see `provd.registry`.
    """

    record: DaemonRecord
    connected_until: int


@dataclass(frozen=True, slots=True)
class Purged:
    """What one `Store.purge_expired` call deleted: jobs, their log lines, and files."""

    jobs: int = 0
    logs: int = 0
    files: int = 0


@dataclass(frozen=True, slots=True)
class HistoryBucket:
    """One bucket of `Store.job_history`: from `start` (Unix ms) for the history's
    `bucket_ms`, the jobs that completed in it by their status now, and the jobs
    pending at its end."""

    start: int
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    pending: int = 0


@dataclass(frozen=True, slots=True)
class JobHistory:
    """What `Store.job_history` read at `read_at` (Unix ms): its buckets, oldest
    first, the last one holding `read_at`; and the jobs pending then."""

    buckets: tuple[HistoryBucket, ...]
    bucket_ms: int
    pending: int
    read_at: int


class Store(Protocol):
    """Durable storage of files, jobs and their logs.

    Errors: `NotFound` for an unknown job or file, `FailedPrecondition` for a job in
    the wrong state, `StoreClosed` once the store is shutting down, `StoreFull` for a
    write that found no room on the disk (none of it was stored; writes succeed again,
    without a restart, once there is room). Opening a backend raises `StoreUnusable`
    for a database it cannot use as it is.
    """

    async def put_file(self, data: bytes, mimetype: str) -> StoredFile:
        """Store `data` under its SHA-256; storing the same bytes again is a no-op."""
        ...

    async def get_file_info(self, file_hash: str) -> StoredFile | None: ...

    async def get_file_data(self, file_hash: str) -> bytes | None: ...

    async def create_job(self, job: NewJob, logs: Sequence[NewLogLine] = ()) -> Job:
        """Insert a pending job, and its first log lines, in one transaction.

        Raises `NotFound` if the job's file is not stored.
        """
        ...

    async def create_job_in_line(
        self, job: NewJob, logs: Sequence[NewLogLine] = ()
    ) -> tuple[Job, QueuePosition]:
        """`create_job`, and the new job's place in its queue (`queue_positions`), as
        CreateJob answers with both. SQLite reads the place in the insert's own
        transaction: no reader thread, no second snapshot."""
        ...

    async def create_and_claim_job(
        self, job: NewJob, logs: Sequence[NewLogLine], daemon_id: str
    ) -> tuple[Job, Job]:
        """`create_job`, then `claim_job` of the new job's queue for `daemon_id`, in one
        transaction: a job created for a daemon that is already waiting costs one
        durable write, not two. Returns the job as created (already running, if it is
        the one claimed) and the job claimed: the new one, or one ahead of it in its
        queue (higher priority, or older), which then keeps its place.

        Raises `NotFound` if the job's file is not stored; then nothing is claimed.
        """
        ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(self, query: JobQuery) -> JobPage: ...

    async def cancel_job(self, job_id: str, logs: Sequence[NewLogLine] = ()) -> Job:
        """Cancel atomically: a pending job completes as canceled at once and can
        never be claimed; a running one becomes canceling; a canceling one is
        returned as is. Raises `FailedPrecondition` for a completed job.
        The log lines are appended only if the job changed."""
        ...

    async def claim_job(self, queues: Sequence[Queue], daemon_id: str) -> Job | None:
        """Atomically start the first pending job of any of `queues` (highest
        priority, then oldest) for `daemon_id`; None if they are all empty."""
        ...

    async def pending_queues(self) -> list[Queue]:
        """Every queue that has held a pending job (a superset of the non-empty ones)."""
        ...

    async def queue_position(self, job: Job) -> QueuePosition:
        """The job's place among the pending jobs of its queue, and the queue's size;
        (0, 0) if it is not pending (now: the job's stored state decides). Its cost
        does not grow with the queue (provd/store/_ranks.py)."""
        ...

    async def queue_positions(self, jobs: Sequence[Job]) -> list[QueuePosition]:
        """`queue_position` of each of `jobs`, in order, in one read of the store:
        a page of a listing costs the same trips to the store as one job."""
        ...

    async def read_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        """Lines with an id greater than `after`, oldest first, at most `limit`."""
        ...

    async def pending_summary(self) -> list[PendingSummary]:
        """For each queue with pending jobs: how many, and when the oldest was created."""
        ...

    async def job_history(
        self, window_ms: int, bucket_ms: int, organization: str = ""
    ) -> JobHistory:
        """The jobs (of `organization`, if given) over the last `window_ms`, in
        buckets of `bucket_ms` aligned to multiples of it since the epoch, the last
        one holding now: per bucket, the jobs that completed in it by status
        (succeeded, failed, canceled: `model.Job.status`), and the jobs pending at
        its end (now, for the last).

        A job is pending from its creation until it is claimed (`started_at`) or
        completes without having started (canceled, or failed as unroutable). A job
        given back (`release_job`) keeps no claim time, so it counts as pending from
        its creation throughout; a released job that was canceled meanwhile as
        pending until it completed. Jobs deleted by retention no longer count.

        Its cost follows the jobs created, claimed or completed in the window and
        the running jobs (provd/store/_history.py), never the pending backlog."""
        ...

    async def purge_expired(self, completed_before: int, files_before: int, limit: int) -> Purged:
        """Retention: delete up to `limit` completed jobs (succeeded, failed, canceled)
        that completed before `completed_before` (Unix ms), oldest first, with their
        logs, keeping the latest build of each workspace (quota counts its cost). If
        that left no expired job, also up to `limit` files that no job references and
        that were stored before `files_before` (the grace period of an upload whose job
        is not created yet). Idempotent, and safe to run from several processes at once."""
        ...

    # -- the daemon protocol: each call checks that `daemon_id` holds the job --
    # (`NotFound`, `PermissionDenied` if another daemon or nobody holds it,
    # `FailedPrecondition` if it already completed).

    async def release_job(
        self, job_id: str, daemon_id: str, logs: Sequence[NewLogLine] = ()
    ) -> Job | None:
        """Undo a claim whose job never reached its daemon: the job is pending again
        at the head of its queue (or canceled, if it was canceled meanwhile).
        None if `daemon_id` no longer holds it."""
        ...

    async def update_job(self, job_id: str, daemon_id: str, update: JobUpdate) -> Job:
        """Heartbeat: refresh `updated_at`, append logs within the job's log budget,
        store readme and template variables."""
        ...

    async def complete_job(
        self, job_id: str, daemon_id: str, result: bytes, job_type: JobType | None = None
    ) -> Job:
        """End a job `daemon_id` holds as succeeded, with `result`. With `job_type`, a
        job of another type is refused (InvalidArgument) and stays running: the check
        costs no read of its own."""
        ...

    async def fail_job(
        self,
        job_id: str,
        daemon_id: str,
        error: str,
        error_code: str = "",
        result: bytes | None = None,
        logs: Sequence[NewLogLine] = (),
    ) -> Job: ...

    async def fail_hung_jobs(
        self, updated_before: int, error: str, error_code: str, logs: Sequence[NewLogLine] = ()
    ) -> list[Job]:
        """Fail every running job not updated since `updated_before` (Unix ms)."""
        ...

    async def fail_pending_jobs(
        self,
        queue: Queue,
        created_before: int,
        error: str,
        error_code: str,
        logs: Sequence[NewLogLine] = (),
    ) -> list[Job]:
        """Fail the pending jobs of `queue` created before `created_before`."""
        ...

    async def running_jobs_by_daemon(self) -> dict[str, str]:
        """Daemon id -> the id of the job it is running."""
        ...

    # -- daemons -----------------------------------------------------------------

    async def upsert_daemon(self, daemon: Daemon) -> None:
        """Record a daemon's identity and capabilities, seen now (a last-seen time
        already stored that is later than now, another machine's clock, is kept).
        Its organization, name, owner and key are its identity, kept from its first
        record; another id with the same identity is a `ValueError`."""
        ...

    async def touch_daemons(
        self, last_seen: Mapping[str, int], connected_until: Mapping[str, int] | None = None
    ) -> None:
        """Record when daemons (by id) were last seen, and until when a stream of theirs
        is held open (their stream lease), in Unix ms. Both only ever move forward: a
        time older than the stored one changes nothing, so processes that report the
        same daemon in any order never move its times back. Unknown ids are ignored."""
        ...

    async def list_daemons(self) -> list[DaemonRecord]:
        """Every stored daemon, by organization, name, owner, then key id."""
        ...

    async def daemon_presence(self) -> list[DaemonPresence]:
        """Every stored daemon with its stream lease, in `list_daemons`' order: what a
        process needs to know of the daemons that other processes talk to."""
        ...

    # -- daemon keys -------------------------------------------------------------

    async def create_key(self, key: DaemonKey) -> None:
        """Store a new daemon key. Raises `AlreadyExists` if a key has its name."""
        ...

    async def get_key(self, key_id: str) -> DaemonKey | None:
        """The key with id `key_id`; None if there is none (never made, or deleted).
        Read when a process first sees a key, and before a job is handed to one of its
        daemons: one look-up by primary key."""
        ...

    async def list_keys(self) -> list[DaemonKey]:
        """Every key, by organization, then name."""
        ...

    async def delete_key(self, name: str) -> DaemonKey | None:
        """Delete the key named `name` and return it; None if there was none. The
        records of its daemons stay (they keep its id)."""
        ...

    async def touch_keys(self, last_used: Mapping[str, int]) -> None:
        """Record when keys (by id) were last used, in Unix ms; like `touch_daemons`,
        only ever forward, and unknown ids are ignored."""
        ...

    # -- quota -------------------------------------------------------------------

    async def set_allowance(self, allowance: Allowance) -> None: ...

    async def delete_allowance(self, organization: str, kind: str, subject: str) -> bool: ...

    async def list_allowances(self, organization: str) -> list[Allowance]: ...

    async def quota_usage(
        self, organization: str, user_id: str, groups: Sequence[str]
    ) -> tuple[int, int]:
        """(credits consumed, budget) for a user; budget -1 when none is configured."""
        ...

    async def commit_quota(self, job_id: str, daemon_id: str, daily_cost: int) -> QuotaDecision:
        """Atomically decide and record a workspace build's daily cost."""
        ...
