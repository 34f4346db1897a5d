"""The `Store` in memory: the contract's reference implementation, for tests.

It keeps everything in Python objects and does no I/O and no threads, so tests of the
scheduler and the reapers can run on trio's autojump `MockClock`: drive its
timestamps from the virtual clock with `now=lambda: int(trio.current_time() * 1000)`.
It is also a second, plain-Python reading of the contract that the SQLite SQL must
agree with: both pass the same suite (tests/store/).

Every method behaves like SQLite's: it yields once to the scheduler but is not a cancel
point (a write that was asked for always happens and its caller learns its outcome, as
`Writer.write` promises), and each call is atomic, since nothing else runs between its
checks and its changes. What it stores is copied in and copied out: no caller can
change stored state through an object it passed in or got back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from provd.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    StoreClosed,
)
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
    LogBatch,
    LogLevel,
    LogLine,
    LogSource,
    NewJob,
    NewLogLine,
    PendingSummary,
    Queue,
    QueuePosition,
    QuotaDecision,
    StoredFile,
    now_ms,
    tags_key,
)
from provd.store import DaemonPresence, HistoryBucket, JobHistory, Purged, Store
from provd.store._history import grid
from provd.store._log_chunks import as_batch
from provd.store._rules import (
    DESTROY,
    FAILED_WITHOUT_REASON,
    cut_to_budget,
    handed_over,
    new_jobs_queue,
    refuse_other_type,
)

__all__ = ["MemoryDatabase", "MemoryStore", "open_memory_store"]

QueueKey = tuple[str, str, str]  # organization, provisioner, tags_key(tags)
ALLOWANCE_KINDS = ("user", "group")


@dataclass(eq=False)
class MemoryDatabase:
    """The data behind one or more `MemoryStore`s, like a database file behind
    SQLite stores: a test can close a store and open another on the same data."""

    files: dict[str, tuple[StoredFile, bytes]] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)  # by id, in seq order
    logs: dict[str, list[LogLine]] = field(default_factory=dict)  # by job id, in id order
    log_bytes: dict[str, int] = field(default_factory=dict)  # by job id: its log budget used
    queues: set[QueueKey] = field(default_factory=set)  # every queue that had a job
    daemons: dict[str, DaemonRecord] = field(default_factory=dict)
    connected_until: dict[str, int] = field(default_factory=dict)  # by daemon id
    keys: dict[str, DaemonKey] = field(default_factory=dict)  # by id
    allowances: dict[tuple[str, str, str], int] = field(default_factory=dict)
    last_seq: int = 0
    last_log_id: int = 0


class MemoryStore:
    """The `Store` on a `MemoryDatabase`. Open it with `open_memory_store`, or build
    one directly and `close` it yourself.

    `now` gives every timestamp it writes, in Unix milliseconds.
    """

    def __init__(
        self, database: MemoryDatabase | None = None, *, now: Callable[[], int] = now_ms
    ) -> None:
        self.database = MemoryDatabase() if database is None else database
        self._now = now
        self._closed = False

    def close(self) -> None:
        """Refuse every later call with `StoreClosed`; the data stays in `database`."""
        self._closed = True

    async def _enter(self) -> MemoryDatabase:
        """What each method does first: refuse if closed, then yield once, uncancellably
        (like a SQLite write, which runs to its end once asked for)."""
        if self._closed:
            raise StoreClosed("the store is shutting down")
        await trio.lowlevel.cancel_shielded_checkpoint()
        return self.database

    # -- files ---------------------------------------------------------------

    async def put_file(self, data: bytes, mimetype: str) -> StoredFile:
        now = self._now()
        db = await self._enter()
        file_hash = hashlib.sha256(data).hexdigest()
        if file_hash not in db.files:
            db.files[file_hash] = (StoredFile(file_hash, len(data), mimetype, now), bytes(data))
        return db.files[file_hash][0]

    async def get_file_info(self, file_hash: str) -> StoredFile | None:
        db = await self._enter()
        stored = db.files.get(file_hash)
        return None if stored is None else stored[0]

    async def get_file_data(self, file_hash: str) -> bytes | None:
        db = await self._enter()
        stored = db.files.get(file_hash)
        return None if stored is None else stored[1]

    # -- jobs ----------------------------------------------------------------

    async def create_job(self, job: NewJob, logs: Sequence[NewLogLine] = ()) -> Job:
        now = self._now()
        db = await self._enter()
        return _copy(self._create(db, job, logs, now))

    async def create_job_in_line(
        self, job: NewJob, logs: Sequence[NewLogLine] = ()
    ) -> tuple[Job, QueuePosition]:
        created = await self.create_job(job, logs)
        (position,) = await self.queue_positions([created])
        return created, position

    async def create_and_claim_job(
        self, job: NewJob, logs: Sequence[NewLogLine], daemon_id: str
    ) -> tuple[Job, Job]:
        now = self._now()
        db = await self._enter()
        created = self._create(db, job, logs, now)
        created, claimed = handed_over(created, self._claim([new_jobs_queue(job)], daemon_id, now))
        return _copy(created), _copy(claimed)

    def _create(self, db: MemoryDatabase, job: NewJob, logs: Sequence[NewLogLine], now: int) -> Job:
        if job.file_hash not in db.files:
            raise NotFound(f"fileHash: no file {job.file_hash} has been uploaded")
        if job.id in db.jobs:
            raise ValueError(f"a job with id {job.id} already exists")
        db.last_seq += 1
        ws = job.workspace
        created = Job(
            id=job.id,
            seq=db.last_seq,
            type=JobType(job.type),
            provisioner=job.provisioner,
            organization=job.organization,
            tags=dict(sorted(job.tags.items())),
            file_hash=job.file_hash,
            initiator_id=job.initiator_id,
            initiator_name=job.initiator_name,
            priority=job.priority,
            input=bytes(job.input),
            trace_metadata=dict(job.trace_metadata),
            created_at=now,
            updated_at=now,
            workspace=ws and dataclasses.replace(ws, owner_groups=tuple(ws.owner_groups)),
        )
        db.jobs[job.id] = created
        db.logs[job.id] = []
        db.log_bytes[job.id] = 0
        db.queues.add(_key_of(created))
        self._insert_logs(job.id, logs, now)
        return created

    async def get_job(self, job_id: str) -> Job | None:
        db = await self._enter()
        job = db.jobs.get(job_id)
        return None if job is None else _copy(job)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        if query.limit < 1:
            raise ValueError(f"JobQuery.limit must be at least 1, got {query.limit}")
        db = await self._enter()
        jobs: list[Job] = []
        for job in reversed(db.jobs.values()):
            if _matches(job, query):
                jobs.append(_copy(job))
                if len(jobs) > query.limit:
                    return JobPage(jobs[: query.limit], jobs[query.limit - 1].seq)
        return JobPage(jobs, None)

    async def cancel_job(self, job_id: str, logs: Sequence[NewLogLine] = ()) -> Job:
        now = self._now()
        db = await self._enter()
        job = db.jobs.get(job_id)
        if job is None:
            raise NotFound(f"id: no job {job_id}")
        if job.completed_at is not None:
            raise FailedPrecondition(f"job {job_id} is already {job.status.value}")
        if job.canceled_at is not None:
            return _copy(job)  # already canceling
        job = self._replace(
            job,
            canceled_at=now,
            updated_at=now,
            completed_at=now if job.started_at is None else None,
        )
        self._insert_logs(job_id, logs, now)
        return _copy(job)

    async def claim_job(self, queues: Sequence[Queue], daemon_id: str) -> Job | None:
        if not queues:  # like SQLite: nothing to ask the data, even once closed
            await trio.lowlevel.cancel_shielded_checkpoint()
            return None
        now = self._now()
        await self._enter()
        claimed = self._claim(queues, daemon_id, now)
        return None if claimed is None else _copy(claimed)

    def _claim(self, queues: Sequence[Queue], daemon_id: str, now: int) -> Job | None:
        keys = {(q.organization, q.provisioner, tags_key(q.tags)) for q in queues}
        heads = [job for job in self._pending() if _key_of(job) in keys]
        if not heads:
            return None
        best = min(heads, key=lambda job: (-job.priority, job.seq))
        return self._replace(best, started_at=now, updated_at=now, daemon_id=daemon_id)

    async def pending_queues(self) -> list[Queue]:
        db = await self._enter()
        return [Queue(org, prov, json.loads(tags)) for org, prov, tags in sorted(db.queues)]

    async def queue_position(self, job: Job) -> QueuePosition:
        (position,) = await self.queue_positions([job])
        return position

    async def queue_positions(self, jobs: Sequence[Job]) -> list[QueuePosition]:
        """By counting: the reference the SQL backends' counters are tested against."""
        if all(job.status is not JobStatus.PENDING for job in jobs):
            # like SQLite: answered without the data
            await trio.lowlevel.cancel_shielded_checkpoint()
            return [QueuePosition(0, 0)] * len(jobs)
        db = await self._enter()
        pending = list(self._pending())
        answers = []
        for job in jobs:
            stored = db.jobs.get(job.id)
            if job.status is not JobStatus.PENDING or stored is None:
                answers.append(QueuePosition(0, 0))
                continue
            if stored.status is not JobStatus.PENDING:
                answers.append(QueuePosition(0, 0))
                continue
            key = _key_of(stored)
            queue = [other for other in pending if _key_of(other) == key]
            place = (-stored.priority, stored.seq)
            ahead = sum(1 for other in queue if (-other.priority, other.seq) < place)
            answers.append(QueuePosition(ahead + 1, len(queue)))
        return answers

    async def pending_summary(self) -> list[PendingSummary]:
        db = await self._enter()
        summaries = []
        for key in sorted(db.queues):
            waiting = [job.created_at for job in self._pending() if _key_of(job) == key]
            if waiting:
                queue = Queue(key[0], key[1], json.loads(key[2]))
                summaries.append(PendingSummary(queue, len(waiting), min(waiting)))
        return summaries

    async def job_history(
        self, window_ms: int, bucket_ms: int, organization: str = ""
    ) -> JobHistory:
        """By looking at every job: the reference for the SQL backends, which compute
        the depth backwards from the counters instead (provd/store/_history.py)."""
        now = self._now()
        start, count = grid(now, window_ms, bucket_ms)
        db = await self._enter()
        jobs = [job for job in db.jobs.values() if organization in ("", job.organization)]
        pending_now = sum(1 for job in jobs if job.status is JobStatus.PENDING)
        buckets = []
        for index in range(count):
            begin, end = start + index * bucket_ms, start + (index + 1) * bucket_ms
            finished = [job.status for job in jobs if begin <= (job.completed_at or -1) < end]
            buckets.append(
                HistoryBucket(
                    start=begin,
                    succeeded=finished.count(JobStatus.SUCCEEDED),
                    failed=finished.count(JobStatus.FAILED),
                    canceled=finished.count(JobStatus.CANCELED),
                    pending=pending_now
                    if index == count - 1
                    else sum(1 for job in jobs if _pending_at(job, end)),
                )
            )
        return JobHistory(tuple(buckets), bucket_ms, pending_now, now)

    async def purge_expired(self, completed_before: int, files_before: int, limit: int) -> Purged:
        db = await self._enter()
        latest: dict[tuple[str, str, str], str] = {}  # workspace -> its latest build's id
        for job in db.jobs.values():  # seq order: the last one wins
            if job.workspace is not None:
                ws = job.workspace
                latest[(job.organization, ws.owner_id, ws.workspace_id)] = job.id
        kept = set(latest.values())
        expired = sorted(
            (
                job
                for job in db.jobs.values()
                if job.completed_at is not None
                and job.completed_at < completed_before
                and job.id not in kept
            ),
            key=lambda job: job.completed_at or 0,
        )[:limit]
        logs = 0
        for job in expired:
            logs += len(db.logs.pop(job.id))
            del db.log_bytes[job.id]
            del db.jobs[job.id]
        if len(expired) >= limit:
            return Purged(jobs=len(expired), logs=logs)
        referenced = {job.file_hash for job in db.jobs.values()}
        orphans = [
            file_hash
            for file_hash, (stored, _) in db.files.items()
            if file_hash not in referenced and stored.created_at < files_before
        ][:limit]
        for file_hash in orphans:
            del db.files[file_hash]
        return Purged(jobs=len(expired), logs=logs, files=len(orphans))

    async def read_logs(self, job_id: str, after: int = 0, limit: int = 1000) -> list[LogLine]:
        db = await self._enter()
        lines = [line for line in db.logs.get(job_id, ()) if line.id > after]
        return lines if limit < 0 else lines[:limit]  # SQLite reads LIMIT -1 as no limit

    # -- the daemon protocol -------------------------------------------------

    async def release_job(
        self, job_id: str, daemon_id: str, logs: Sequence[NewLogLine] = ()
    ) -> Job | None:
        now = self._now()
        db = await self._enter()
        job = db.jobs.get(job_id)
        if job is None or job.daemon_id != daemon_id or job.holder_id is None:
            return None
        released = self._replace(
            job,
            started_at=None,
            daemon_id=None,
            updated_at=now,
            completed_at=None if job.canceled_at is None else now,
        )
        self._insert_logs(job_id, logs, now)
        return _copy(released)

    async def update_job(self, job_id: str, daemon_id: str, update: JobUpdate) -> Job:
        now = self._now()
        db = await self._enter()
        job = self._held(job_id, daemon_id)
        logs = LogBatch()
        overflowed = job.logs_overflowed
        if not overflowed:
            used = db.log_bytes[job_id]
            logs, overflowed = cut_to_budget(
                as_batch(update.logs, now), used, update.log_budget_bytes
            )
        self._insert_logs(job_id, logs, now)
        updated = self._replace(
            job,
            updated_at=now,
            readme=job.readme if update.readme is None else update.readme,
            template_variables=(
                job.template_variables
                if update.template_variables is None
                else update.template_variables
            ),
            logs_overflowed=overflowed,
        )
        return _copy(updated)

    async def complete_job(
        self, job_id: str, daemon_id: str, result: bytes, job_type: JobType | None = None
    ) -> Job:
        now = self._now()
        await self._enter()
        job = self._held(job_id, daemon_id)
        refuse_other_type(job, job_type)
        return _copy(self._replace(job, completed_at=now, updated_at=now, result=bytes(result)))

    async def fail_job(
        self,
        job_id: str,
        daemon_id: str,
        error: str,
        error_code: str = "",
        result: bytes | None = None,
        logs: Sequence[NewLogLine] = (),
    ) -> Job:
        now = self._now()
        await self._enter()
        job = self._held(job_id, daemon_id)
        self._insert_logs(job_id, logs, now)
        # An empty error means "canceled" only for a job that was asked to cancel.
        if not error and job.canceled_at is None:
            error = FAILED_WITHOUT_REASON
        failed = self._replace(
            job,
            completed_at=now,
            updated_at=now,
            error=error,
            error_code=error_code,
            result=job.result if result is None else bytes(result),
        )
        return _copy(failed)

    async def fail_hung_jobs(
        self, updated_before: int, error: str, error_code: str, logs: Sequence[NewLogLine] = ()
    ) -> list[Job]:
        now = self._now()
        db = await self._enter()
        hung = [
            job
            for job in db.jobs.values()
            if job.holder_id is not None and job.updated_at < updated_before
        ]
        return self._fail_all(hung, error, error_code, logs, now)

    async def fail_pending_jobs(
        self,
        queue: Queue,
        created_before: int,
        error: str,
        error_code: str,
        logs: Sequence[NewLogLine] = (),
    ) -> list[Job]:
        now = self._now()
        await self._enter()
        key = (queue.organization, queue.provisioner, tags_key(queue.tags))
        stale = [
            job
            for job in self._pending()
            if _key_of(job) == key and job.created_at < created_before
        ]
        return self._fail_all(stale, error, error_code, logs, now)

    async def running_jobs_by_daemon(self) -> dict[str, str]:
        db = await self._enter()
        return {
            job.daemon_id: job.id
            for job in db.jobs.values()
            if job.holder_id is not None and job.daemon_id is not None
        }

    # -- daemons -------------------------------------------------------------

    async def upsert_daemon(self, daemon: Daemon) -> None:
        now = self._now()
        db = await self._enter()
        stored = _copy_daemon(daemon)
        known = db.daemons.get(daemon.id)
        if known is not None:
            identity = known.daemon
            stored = dataclasses.replace(
                stored,
                organization=identity.organization,
                name=identity.name,
                owner=identity.owner,
                key_id=identity.key_id,
            )
            last_seen = max(now, known.last_seen_at)
            db.daemons[daemon.id] = DaemonRecord(stored, known.created_at, last_seen)
            return
        for record in db.daemons.values():
            other = record.daemon
            if _identity(other) == _identity(daemon):
                raise ValueError(
                    f"daemon {daemon.name!r} of {daemon.organization!r} (owner"
                    f" {daemon.owner!r}, key {daemon.key_id!r}) is already stored with id"
                    f" {other.id}"
                )
        db.daemons[daemon.id] = DaemonRecord(stored, now, now)

    async def touch_daemons(
        self, last_seen: Mapping[str, int], connected_until: Mapping[str, int] | None = None
    ) -> None:
        leases = connected_until or {}
        if not last_seen and not leases:  # like SQLite: nothing to write, even once closed
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        db = await self._enter()
        for daemon_id, seen in last_seen.items():
            record = db.daemons.get(daemon_id)
            if record is not None and seen > record.last_seen_at:
                db.daemons[daemon_id] = dataclasses.replace(record, last_seen_at=seen)
        for daemon_id, until in leases.items():
            if daemon_id in db.daemons and until > db.connected_until.get(daemon_id, 0):
                db.connected_until[daemon_id] = until

    async def list_daemons(self) -> list[DaemonRecord]:
        db = await self._enter()
        return _sorted_daemons(db)

    async def daemon_presence(self) -> list[DaemonPresence]:
        db = await self._enter()
        return [
            DaemonPresence(record, db.connected_until.get(record.daemon.id, 0))
            for record in _sorted_daemons(db)
        ]

    # -- daemon keys ---------------------------------------------------------

    async def create_key(self, key: DaemonKey) -> None:
        db = await self._enter()
        if key.id in db.keys or any(k.name == key.name for k in db.keys.values()):
            raise AlreadyExists(f"name: a daemon key named {key.name!r} exists already")
        db.keys[key.id] = _copy_key(key)

    async def get_key(self, key_id: str) -> DaemonKey | None:
        db = await self._enter()
        key = db.keys.get(key_id)
        return None if key is None else _copy_key(key)

    async def list_keys(self) -> list[DaemonKey]:
        db = await self._enter()
        ordered = sorted(db.keys.values(), key=lambda k: (k.organization, k.name))
        return [_copy_key(key) for key in ordered]

    async def delete_key(self, name: str) -> DaemonKey | None:
        db = await self._enter()
        for key in db.keys.values():
            if key.name == name:
                return db.keys.pop(key.id)
        return None

    async def touch_keys(self, last_used: Mapping[str, int]) -> None:
        if not last_used:  # like SQLite: nothing to write, even once closed
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        db = await self._enter()
        for key_id, used in last_used.items():
            key = db.keys.get(key_id)
            if key is not None and used > key.last_used_at:
                db.keys[key_id] = dataclasses.replace(key, last_used_at=used)

    # -- quota ---------------------------------------------------------------

    async def set_allowance(self, allowance: Allowance) -> None:
        db = await self._enter()
        if allowance.kind not in ALLOWANCE_KINDS:
            raise ValueError(f"allowance kind must be 'user' or 'group', got {allowance.kind!r}")
        if allowance.allowance < 0:
            raise ValueError(f"allowance must not be negative, got {allowance.allowance}")
        key = (allowance.organization, allowance.kind, allowance.subject)
        db.allowances[key] = allowance.allowance

    async def delete_allowance(self, organization: str, kind: str, subject: str) -> bool:
        db = await self._enter()
        return db.allowances.pop((organization, kind, subject), None) is not None

    async def list_allowances(self, organization: str) -> list[Allowance]:
        db = await self._enter()
        return [
            Allowance(org, kind, subject, allowance)
            for (org, kind, subject), allowance in sorted(db.allowances.items())
            if org == organization
        ]

    async def quota_usage(
        self, organization: str, user_id: str, groups: Sequence[str]
    ) -> tuple[int, int]:
        await self._enter()
        return self._consumed(organization, user_id), self._budget(organization, user_id, groups)

    async def commit_quota(self, job_id: str, daemon_id: str, daily_cost: int) -> QuotaDecision:
        await self._enter()
        job = self._held(job_id, daemon_id)
        if job.type is not JobType.WORKSPACE_BUILD:
            raise FailedPrecondition(
                f"jobId: job {job_id} is a {job.type.value}; only workspace builds commit quota"
            )
        ws = job.workspace
        if ws is None:
            raise FailedPrecondition(
                f"jobId: job {job_id} has no workspaceId in its metadata, so its cost cannot be"
                " accounted to a workspace"
            )
        limit = self._budget(job.organization, ws.owner_id, ws.owner_groups)
        used = self._consumed(job.organization, ws.owner_id, excluding_job=job_id)
        earlier = [
            other
            for other in self._builds(job.organization, ws.owner_id, ws.workspace_id)
            if other.seq < job.seq
        ]
        net_increase = not earlier or daily_cost >= earlier[-1].daily_cost
        if limit >= 0 and used + daily_cost > limit and net_increase:
            return QuotaDecision(ok=False, credits_consumed=used, budget=limit)
        self._replace(job, daily_cost=daily_cost)
        return QuotaDecision(ok=True, credits_consumed=used + daily_cost, budget=limit)

    # -- helpers: each runs between `_enter` and the method's return ------------

    def _replace(self, job: Job, **changes: object) -> Job:
        """Store `job` with `changes`; the stored job keeps its own copies."""
        changed = dataclasses.replace(job, **changes)  # type: ignore[arg-type]
        self.database.jobs[job.id] = changed
        return changed

    def _pending(self) -> Iterator[Job]:
        return (job for job in self.database.jobs.values() if job.status is JobStatus.PENDING)

    def _held(self, job_id: str, daemon_id: str) -> Job:
        """The job if `daemon_id` holds it and it is still running, else the error to send."""
        job = self.database.jobs.get(job_id)
        if job is None:
            raise NotFound(f"jobId: no job {job_id}")
        if job.daemon_id != daemon_id or job.started_at is None:
            raise PermissionDenied(f"jobId: job {job_id} is not held by this daemon")
        if job.completed_at is not None:
            raise FailedPrecondition(f"jobId: job {job_id} is already {job.status.value}")
        return job

    def _fail_all(
        self,
        jobs: Sequence[Job],
        error: str,
        error_code: str,
        logs: Sequence[NewLogLine],
        now: int,
    ) -> list[Job]:
        failed = []
        for job in jobs:
            done = self._replace(
                job, completed_at=now, updated_at=now, error=error, error_code=error_code
            )
            self._insert_logs(job.id, logs, now)
            failed.append(_copy(done))
        return failed

    def _insert_logs(self, job_id: str, logs: Sequence[NewLogLine] | LogBatch, now: int) -> None:
        """Append lines in order and charge them to the job's log budget."""
        db = self.database
        batch = as_batch(logs, now)
        stored = db.logs[job_id]
        for created_at, source, level, stage, output in batch.rows:
            db.last_log_id += 1
            stored.append(
                LogLine(
                    db.last_log_id,
                    job_id,
                    created_at,
                    LogSource(source),
                    LogLevel(level),
                    stage,
                    output,
                )
            )
        db.log_bytes[job_id] += batch.size

    def _builds(self, organization: str, owner_id: str, workspace_id: str) -> list[Job]:
        """Every build of one workspace of one owner, oldest first."""
        return [
            job
            for job in self.database.jobs.values()
            if job.organization == organization
            and job.workspace is not None
            and job.workspace.owner_id == owner_id
            and job.workspace.workspace_id == workspace_id
        ]

    def _consumed(self, organization: str, owner_id: str, excluding_job: str = "") -> int:
        """Daily cost of the latest build of each of the owner's live workspaces."""
        latest: dict[str, Job] = {}
        for job in self.database.jobs.values():  # seq order: the last one wins
            ws = job.workspace
            if job.organization == organization and ws is not None and ws.owner_id == owner_id:
                latest[ws.workspace_id] = job
        return sum(
            job.daily_cost
            for job in latest.values()
            if job.id != excluding_job
            and job.workspace is not None
            and job.workspace.transition != DESTROY
        )

    def _budget(self, organization: str, user_id: str, groups: Sequence[str]) -> int:
        """The user's own allowance plus their groups'; -1 when the organization sets none."""
        mine = [
            (kind, subject, n)
            for (org, kind, subject), n in self.database.allowances.items()
            if org == organization
        ]
        if not mine:
            return -1
        wanted = {("user", user_id), *(("group", group) for group in groups)}
        return sum(n for kind, subject, n in mine if (kind, subject) in wanted)


def _pending_at(job: Job, moment: int) -> bool:
    """Whether `job` was pending just before `moment` (Unix ms): created before it, and
    neither claimed nor completed before it (a released job has no claim time)."""
    left = job.started_at if job.started_at is not None else job.completed_at
    return job.created_at < moment and (left is None or left >= moment)


def _key_of(job: Job) -> QueueKey:
    return (job.organization, job.provisioner, tags_key(job.tags))


def _matches(job: Job, query: JobQuery) -> bool:
    """Whether `job` passes `query`'s filters (an empty organization or provisioner
    filters nothing, as in SQLite)."""
    return (
        (query.status is None or job.status is query.status)
        and (query.type is None or job.type is query.type)
        and (not query.organization or job.organization == query.organization)
        and (not query.provisioner or job.provisioner == query.provisioner)
        and all(job.tags.get(key) == value for key, value in query.tags.items())
        and (query.before_seq is None or job.seq < query.before_seq)
    )


def _copy(job: Job) -> Job:
    """A job the caller may keep: its mappings are its own."""
    return dataclasses.replace(job, tags=dict(job.tags), trace_metadata=dict(job.trace_metadata))


def _identity(daemon: Daemon) -> tuple[str, str, str, str]:
    """What is unique among stored daemons (besides the id): a name within its
    organization, owner and key."""
    return (daemon.organization, daemon.name, daemon.owner, daemon.key_id)


def _sorted_daemons(db: MemoryDatabase) -> list[DaemonRecord]:
    """Copies of the daemons' records in `list_daemons`' order."""
    records = sorted(db.daemons.values(), key=lambda r: _identity(r.daemon))
    return [dataclasses.replace(r, daemon=_copy_daemon(r.daemon)) for r in records]


def _copy_key(key: DaemonKey) -> DaemonKey:
    return dataclasses.replace(
        key, provisioners=tuple(key.provisioners), tags=dict(sorted(key.tags.items()))
    )


def _copy_daemon(daemon: Daemon) -> Daemon:
    return dataclasses.replace(
        daemon,
        provisioners=tuple(daemon.provisioners),
        tags=dict(sorted(daemon.tags.items())),
    )


@asynccontextmanager
async def open_memory_store(
    database: MemoryDatabase | None = None, *, now: Callable[[], int] = now_ms
) -> AsyncIterator[MemoryStore]:
    """A `MemoryStore` on `database` (a new, empty one by default), closed on exit
    like `open_sqlite_store`'s store."""
    store = MemoryStore(database, now=now)
    try:
        yield store
    finally:
        store.close()


if TYPE_CHECKING:  # mypy checks that MemoryStore implements the whole protocol
    _conforms: type[Store] = MemoryStore
