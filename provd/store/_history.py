"""`Store.job_history` without scanning the backlog: the rules every backend shares.

The finished jobs of a bucket are the jobs whose `completed_at` falls in it, by their
derived status: one range of the `jobs_completed` index. The queue depth is not
stored over time; it is computed backwards from the pending count now (the level
counters, one row per queue and priority, provd/store/_ranks.py):

    pending at the end of bucket i = pending now
                                     - jobs that arrived after it (created)
                                     + jobs that left after it (claimed, or
                                       completed without having started)

Only jobs that arrived or left within the window take part, and each backend finds
them without visiting the pending jobs that were already waiting before it:

- left: a claimed job has `started_at`; one that completed has `completed_at` at or
  after the time it left, so every job that left in the window is either completed
  in the window (the same `jobs_completed` range) or running now (`jobs_running`,
  one row per busy daemon);
- arrived: `seq` follows creation, so the jobs created in the window are the tail of
  the table by `seq`, after the newest job created before it (a backward seek that
  stops at the first such job). `SKEW_MS` of slack covers replicas whose clocks
  disagree a little about the order of `seq` and `created_at`.

Each query groups by bucket number, `(time - start) / bucket_ms`, so a backend sends
back one row per bucket, not one per job; `assemble` does the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

from provd.model import JobStatus
from provd.store import HistoryBucket, JobHistory

SKEW_MS = 60_000
"""How far behind the window the search for its first created job starts."""

OUTCOMES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


def grid(now: int, window_ms: int, bucket_ms: int) -> tuple[int, int]:
    """(start of the first bucket, number of buckets): buckets aligned to multiples
    of `bucket_ms`, the last one holding `now`, covering `window_ms` rounded up."""
    if bucket_ms < 1 or window_ms < bucket_ms:
        raise ValueError(f"need 1 <= bucket_ms <= window_ms, got {bucket_ms} and {window_ms}")
    count = -(-window_ms // bucket_ms)
    return now - now % bucket_ms - (count - 1) * bucket_ms, count


def assemble(
    now: int,
    start: int,
    bucket_ms: int,
    count: int,
    pending_now: int,
    finished: Iterable[tuple[int, JobStatus, int]],
    arrived: Iterable[tuple[int, int]],
    left: Iterable[tuple[int, int]],
) -> JobHistory:
    """The history from per-bucket counts: `finished` (bucket, status, jobs),
    `arrived` and `left` (bucket, jobs). A bucket number past the last (a replica's
    clock ahead of this one) counts in the last; statuses other than the outcomes
    are ignored (none completes otherwise)."""
    last = count - 1
    outcomes = [dict.fromkeys(OUTCOMES, 0) for _ in range(count)]
    for bucket, status, jobs in finished:
        if status in OUTCOMES:
            outcomes[min(bucket, last)][status] += jobs
    change = [0] * count  # pending jobs added in each bucket
    for bucket, jobs in arrived:
        change[min(bucket, last)] += jobs
    for bucket, jobs in left:
        change[min(bucket, last)] -= jobs
    depths = [0] * count
    depth = pending_now
    for index in range(last, -1, -1):
        depths[index] = depth
        depth -= change[index]
    buckets = tuple(
        HistoryBucket(
            start=start + index * bucket_ms,
            succeeded=outcomes[index][JobStatus.SUCCEEDED],
            failed=outcomes[index][JobStatus.FAILED],
            canceled=outcomes[index][JobStatus.CANCELED],
            pending=depths[index],
        )
        for index in range(count)
    )
    return JobHistory(buckets=buckets, bucket_ms=bucket_ms, pending=pending_now, read_at=now)


def outcome_case(conditions: dict[JobStatus, str]) -> str:
    """A SQL CASE naming a completed job's status, from a backend's
    `STATUS_CONDITIONS` (the same rules as `model.Job.status` and the status filter
    of `list_jobs`)."""
    arms = " ".join(f"WHEN {conditions[status]} THEN '{status.value}'" for status in OUTCOMES)
    return f"CASE {arms} END"
