"""The job store: the one interface the service layer depends on.

`Store` is what every backend implements (SQLite today; PostgreSQL is meant to
follow without touching the service). Each write is atomic and, once it returns,
durable: a job, log line or state change the store acknowledged survives a crash.
Writes that race are serialized by the backend, never by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from provd.model import (
    Job,
    JobPage,
    JobQuery,
    LogLine,
    NewJob,
    NewLogLine,
    Queue,
    QueuePosition,
    StoredFile,
)

__all__ = ["Store"]


class Store(Protocol):
    """Durable storage of files, jobs and their logs.

    Errors: `NotFound` for an unknown job or file, `FailedPrecondition` for a job in
    the wrong state, `StoreClosed` once the store is shutting down.
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

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(self, query: JobQuery) -> JobPage: ...

    async def cancel_job(self, job_id: str, logs: Sequence[NewLogLine] = ()) -> Job:
        """Cancel atomically: a pending job completes as canceled at once and can
        never be claimed; a running one becomes canceling; a canceling one is
        returned as is. Raises `FailedPrecondition` for a completed job.
        The log lines are appended only if the job changed."""
        ...

    async def claim_job(self, queues: Sequence[Queue], worker_id: str) -> Job | None:
        """Atomically start the first pending job of any of `queues` (highest
        priority, then oldest) for `worker_id`; None if they are all empty."""
        ...

    async def pending_queues(self) -> list[Queue]:
        """Every queue that has held a pending job (a superset of the non-empty ones)."""
        ...

    async def queue_position(self, job: Job) -> QueuePosition:
        """The job's place among the pending jobs of its queue; 0 if not pending."""
        ...

    async def append_logs(self, job_id: str, logs: Sequence[NewLogLine]) -> list[LogLine]:
        """Append lines in order; raises `NotFound` for an unknown job."""
        ...

    async def read_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        """Lines with an id greater than `after`, oldest first, at most `limit`."""
        ...
