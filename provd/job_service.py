"""The job API's logic, independent of any transport: upload, create, inspect,
cancel and follow jobs over a `Store`.

Inputs arrive already parsed (the RPC layer checks field shapes); this layer
enforces the rules that need the store: sizes, existence, states.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from provd.archive import TAR, normalize_archive
from provd.errors import NotFound, ResourceExhausted
from provd.events import JobEvents
from provd.explain import capable_daemons, describe_tags, explain_unroutable
from provd.file_cache import FileCache
from provd.model import (
    Daemon,
    Job,
    JobPage,
    JobQuery,
    JobStatus,
    Limits,
    LogLevel,
    LogLine,
    NewJob,
    NewLogLine,
    Queue,
    QueuePosition,
    StoredFile,
    now_ms,
    server_line,
)
from provd.store import JobHistory, Store

if TYPE_CHECKING:
    from provd.metrics import Metrics

LOG_PAGE = 500
# GetJobHistory: an hour of minutes unless asked otherwise; at most a day, and at
# most a day of minutes in buckets.
HISTORY_WINDOW_SECONDS = 3600
HISTORY_BUCKET_SECONDS = 60
HISTORY_MAX_WINDOW_SECONDS = 86_400
HISTORY_MAX_BUCKETS = 1440
# WatchJobs: at most one message per interval, however fast jobs change. Each message
# makes a dashboard re-read its page (ListJobs, GetJobHistory, …); half a second still
# reads as "at once" to a person, and bounds that to two reads a second per open tab
# while daemons stream logs every few hundred milliseconds.
WATCH_MIN_INTERVAL_SECONDS = 0.5
# A message while nothing changes, well within the minute that proxies (nginx's
# proxy_read_timeout, load balancers' idle timeouts) give a quiet response.
WATCH_KEEP_ALIVE_SECONDS = 20.0

# Stores a new job with its first log lines (`Store.create_job`'s signature).
CreateJob = Callable[[NewJob, Sequence[NewLogLine]], Awaitable[tuple[Job, QueuePosition]]]


@dataclass(frozen=True, slots=True)
class JobView:
    """A job with what is derived at read time: its place in the queue and why it waits."""

    job: Job
    queue: QueuePosition
    pending_reason: str


@dataclass(frozen=True, slots=True)
class JobsChanged:
    """One message of `JobService.watch_jobs`: which jobs changed since the last one
    (`job_ids`), or re-read everything (`many`), or nothing (`keep_alive`)."""

    read_at: int
    job_ids: tuple[str, ...] = ()
    many: bool = False
    keep_alive: bool = False


@dataclass(frozen=True, slots=True)
class QueueView:
    """A queue's pending jobs at a glance (`Store.pending_summary`), with the live
    daemons that can take them (and the job each is running, if any) or, when none
    can, why (`explain_unroutable`)."""

    queue: Queue
    pending: int
    oldest_created_at: int
    daemons: list[tuple[Daemon, str]]
    unroutable_reason: str


def _no_daemons() -> Sequence[Daemon]:
    return ()


def _no_explanation(queue: Queue) -> str | None:
    return None


def _nobody_to_wake(queue: Queue) -> None:
    return None


class JobService:
    """Create, read, cancel and follow jobs."""

    def __init__(
        self,
        store: Store,
        events: JobEvents,
        limits: Limits = Limits(),
        log_poll_interval_seconds: float = 1.0,
        *,
        job_available: Callable[[Queue], None] = _nobody_to_wake,
        explain_unroutable: Callable[[Queue], str | None] = _no_explanation,
        metrics: Metrics | None = None,
        files: FileCache | None = None,
        create_job: CreateJob | None = None,
        live_daemons: Callable[[], Sequence[Daemon]] = _no_daemons,
        watch_min_interval_seconds: float = WATCH_MIN_INTERVAL_SECONDS,
        watch_keep_alive_seconds: float = WATCH_KEEP_ALIVE_SECONDS,
    ) -> None:
        """`job_available` wakes a daemon waiting for jobs of a queue (the scheduler);
        `explain_unroutable` says what no connected daemon offers for a queue, or None;
        `metrics` counts jobs created and canceled while pending. `files` is shared
        with the dispatcher, so an archive just uploaded reaches its daemon from
        memory; `create_job` stores a new job (`Scheduler.create_job`, which hands it
        straight to an idle daemon; the store's own by default). `live_daemons` are
        the daemons that routing and the pending reason go by
        (`DaemonRegistry.live_daemons`), for `list_queues`. `watch_jobs` sends at most
        one message per `watch_min_interval_seconds`, and one every
        `watch_keep_alive_seconds` while nothing changes."""
        self._metrics = metrics
        self._store = store
        self._files = files or FileCache(store)
        self._create_job: CreateJob = create_job or store.create_job_in_line
        self._events = events
        self.limits = limits
        self._log_poll_interval = log_poll_interval_seconds
        self._job_available = job_available
        self._explain_unroutable = explain_unroutable
        self._live_daemons = live_daemons
        self._watch_min_interval = watch_min_interval_seconds
        self._watch_keep_alive = watch_keep_alive_seconds

    async def upload_file(self, data: bytes, mimetype: str) -> StoredFile:
        cap = self.limits.upload_max_bytes
        if len(data) > cap:
            raise ResourceExhausted(f"data: the archive is {len(data)} bytes; the limit is {cap}")
        # The cap holds while unpacking, not only after: see provd/archive.py.
        tar = await trio.to_thread.run_sync(normalize_archive, data, mimetype, cap)
        if len(tar) > cap:
            raise ResourceExhausted(
                f"data: the archive unpacks to {len(tar)} bytes; the limit is {cap}"
            )
        stored = await self._store.put_file(tar, TAR)
        self._files.stored(stored, tar)
        return stored

    async def create_job(self, new: NewJob) -> JobView:
        file = await self._files.info(new.file_hash)
        if file is None:
            raise NotFound(f"fileHash: no file {new.file_hash} has been uploaded")
        payload = file.size + len(new.input)
        cap = self.limits.payload_max_bytes
        if payload > cap:
            raise ResourceExhausted(
                f"fileHash: the archive ({file.size} bytes) and inputs ({len(new.input)} bytes)"
                f" exceed the {cap} bytes a daemon accepts in one job"
            )
        queue = Queue(new.organization, new.provisioner, new.tags)
        lines = [
            server_line(
                "Queued",
                f"Job queued for a {new.provisioner!r} daemon in organization"
                f" {new.organization!r} with tags {describe_tags(new.tags)}",
            )
        ]
        if (missing := self._explain_unroutable(queue)) is not None:
            lines.append(
                server_line("Queued", f"No daemon can take it yet: {missing}.", LogLevel.WARN)
            )
        job, position = await self._create_job(new, lines)
        # The watchers of every job here; the other processes hear of a pending job
        # through `job_available`, and of one handed straight to a daemon through its
        # claim (the dispatcher's hand-over notifies).
        self._events.created(job.id)
        if job.status is JobStatus.PENDING:  # not handed straight to a waiting daemon
            self._job_available(queue)
        if self._metrics is not None:
            self._metrics.job_created(job)
        return self._view(job, position)

    async def get_job(self, job_id: str) -> JobView:
        return await self.view(await self._require(job_id))

    async def view(self, job: Job) -> JobView:
        (view,) = await self.views([job])
        return view

    async def views(self, jobs: Sequence[Job]) -> list[JobView]:
        """`view` of each job, with one read of the store for all their queue positions
        (none if no job is pending): a page of ListJobs costs what one GetJob does."""
        if all(job.status is not JobStatus.PENDING for job in jobs):
            return [JobView(job, QueuePosition(0, 0), "") for job in jobs]
        positions = await self._store.queue_positions(jobs)
        return [self._view(job, position) for job, position in zip(jobs, positions, strict=True)]

    def _view(self, job: Job, position: QueuePosition) -> JobView:
        if job.status is not JobStatus.PENDING or not position.position:
            # Not pending, or no longer: claimed or canceled since `job` was read.
            return JobView(job, position, "")
        missing = self._explain_unroutable(Queue(job.organization, job.provisioner, job.tags))
        place = (
            f"position {position.position} of {position.size} among pending {job.provisioner!r}"
            f" jobs in organization {job.organization!r} with tags {describe_tags(job.tags)}"
        )
        if missing is not None:
            reason = f"No connected daemon can take this job: {missing}. Queue {place}."
        else:
            reason = f"Waiting for a free daemon: {place}."
        return JobView(job, position, reason)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        return await self._store.list_jobs(query)

    async def list_queues(self, organization: str = "") -> list[QueueView]:
        """Every queue with pending jobs (of `organization`, if given), the
        longest-waiting first: how many, since when, and who can take them. One read
        of the store's queues, and one of the running jobs if a daemon can."""
        summaries = [
            summary
            for summary in await self._store.pending_summary()
            if not organization or summary.queue.organization == organization
        ]
        daemons = self._live_daemons()
        capable = [capable_daemons(summary.queue, daemons) for summary in summaries]
        running = await self._store.running_jobs_by_daemon() if any(capable) else {}
        views = [
            QueueView(
                queue=summary.queue,
                pending=summary.count,
                oldest_created_at=summary.oldest_created_at,
                daemons=[
                    (daemon, running.get(daemon.id, ""))
                    for daemon in sorted(able, key=lambda d: (d.name, d.id))
                ],
                unroutable_reason=explain_unroutable(summary.queue, daemons) or "",
            )
            for summary, able in zip(summaries, capable, strict=True)
        ]
        return sorted(
            views,
            key=lambda v: (
                v.oldest_created_at,
                v.queue.organization,
                v.queue.provisioner,
                sorted(v.queue.tags.items()),
            ),
        )

    async def job_history(
        self, window_seconds: int, bucket_seconds: int, organization: str = ""
    ) -> JobHistory:
        """Jobs finished per bucket by outcome, and the queue depth at each bucket's
        end, over the last `window_seconds` (`Store.job_history`: read from the store,
        so every worker's and replica's jobs count). The caller keeps to the
        `HISTORY_*` bounds."""
        return await self._store.job_history(
            window_seconds * 1000, bucket_seconds * 1000, organization
        )

    async def cancel_job(self, job_id: str) -> JobView:
        note = server_line("Cancel", "Cancel requested through the job API", LogLevel.WARN)
        job = await self._store.cancel_job(job_id, [note])
        self._events.notify(job_id)
        if self._metrics is not None:
            self._metrics.job_completed(job)  # a pending job: canceled at once
        return await self.view(job)

    async def stream_logs(
        self, job_id: str, after: int = 0, follow: bool = False
    ) -> AsyncGenerator[list[LogLine]]:
        """Batches of log lines after `after`; with `follow`, until the job completes."""
        await self._require(job_id)
        while True:
            changed = self._events.watch(job_id)
            batch = await self._store.read_logs(job_id, after, LOG_PAGE)
            if batch:
                after = batch[-1].id
                yield batch
                continue
            if not follow:
                return
            job = await self._require(job_id)
            if job.status.is_terminal:
                # Lines are written before the completion, so one last read drains them.
                while batch := await self._store.read_logs(job_id, after, LOG_PAGE):
                    after = batch[-1].id
                    yield batch
                return
            with trio.move_on_after(self._log_poll_interval):
                await changed.wait()

    async def watch_jobs(self) -> AsyncGenerator[JobsChanged]:
        """Tell the caller when jobs change, until it stops iterating: one message at
        once (`many`: it re-reads everything), then one whenever jobs changed, with
        their ids, coalesced to at most one per `watch_min_interval_seconds` (the
        first change after a quiet spell goes out at once, those right behind it
        wait out the interval together); a `keep_alive` one after
        `watch_keep_alive_seconds` without any. Reads nothing from the store.

        The waits happen in a cancel scope that is left before each `yield` (trio
        forbids a yield inside one). The feed is dropped however the generator ends:
        closed by the caller, or cancelled with a request whose client went away."""
        with self._events.subscribe() as feed:
            yield JobsChanged(read_at=now_ms(), many=True)
            sent = trio.current_time()
            while True:
                with trio.move_on_at(sent + self._watch_keep_alive):
                    await feed.wait_changed()
                if feed.pending:
                    await trio.sleep_until(sent + self._watch_min_interval)
                    changes = feed.take()
                    message = JobsChanged(now_ms(), changes.job_ids, changes.many)
                else:
                    message = JobsChanged(now_ms(), keep_alive=True)
                yield message
                sent = trio.current_time()

    async def _require(self, job_id: str) -> Job:
        job = await self._store.get_job(job_id)
        if job is None:
            raise NotFound(f"id: no job {job_id}")
        return job
