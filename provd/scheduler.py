"""Who gets which job: waiting daemons, wake-ups, claims that happen once, and jobs
given back.

Daemons that announce the same (organization, provisioners, tags) form a group,
served by one task in the scheduler's nursery. The group's task claims jobs for
its waiters in arrival order, so waiting costs nothing and identical waiters never
each query the store. A new job wakes one matching group at once; a slow poll
covers a missed wake-up (another process writing to the database, say).

A new job created while a daemon that can run it waits idle goes straight to that
daemon: the insert and the claim are one transaction (`Scheduler.create_job`), and
no wake-up or second commit stands between the two.

A wait ends exactly once: with a job, or canceled. A cancel that arrives while a
claim for that waiter is in flight waits for the claim, and a job claimed in that
race is still the waiter's (the daemon must run it). A job claimed for a daemon
that never received it comes back through one door, `Scheduler.release`.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from provd.model import (
    Daemon,
    Job,
    JobStatus,
    LogLevel,
    NewJob,
    NewLogLine,
    Queue,
    QueuePosition,
    server_line,
    tags_key,
)
from provd.store import Store

logger = logging.getLogger(__name__)

QueueKey = tuple[str, str, str]
GroupKey = tuple[str, tuple[str, ...], str]


def _queue_key(queue: Queue) -> QueueKey:
    return (queue.organization, queue.provisioner, tags_key(queue.tags))


def _queue_of(job: Job) -> Queue:
    return Queue(job.organization, job.provisioner, job.tags)


class _WaiterState(enum.Enum):
    WAITING = "waiting"
    CLAIMING = "claiming"
    ASSIGNED = "assigned"
    CANCELED = "canceled"


@dataclass(eq=False)
class _Waiter:
    """One daemon's wait for one job; it settles exactly once."""

    daemon: Daemon
    group: _Group
    state: _WaiterState = _WaiterState.WAITING
    job: Job | None = None
    # Asked to stop while a claim for it was in flight: the claim decides.
    cancel_requested: bool = False
    # Its task left while a claim for it was in flight: nobody will send the job.
    abandoned: bool = False
    settled: trio.Event = field(default_factory=trio.Event)

    def settle(self, job: Job | None) -> None:
        self.job = job
        self.state = _WaiterState.ASSIGNED if job is not None else _WaiterState.CANCELED
        self.settled.set()


@dataclass(eq=False)
class _Group:
    key: GroupKey
    daemon: Daemon  # any member: they all route alike
    waiters: deque[_Waiter] = field(default_factory=deque)
    wake: trio.Event = field(default_factory=trio.Event)
    queues: list[Queue] = field(default_factory=list)
    queues_version: int = -1
    # Its task found its first waiter being handed a new job (`Scheduler.create_job`)
    # and stopped claiming: that hand-over wakes it when it ends.
    deferred: bool = False


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    waiters: int
    groups: int
    known_queues: int
    claims: int
    claims_empty: int
    wakeups: int
    polls: int
    # Cancels that arrived while a claim for their waiter was in flight (the claim decided).
    cancels_during_claim: int
    released: int
    # New jobs claimed in the transaction that created them, for a waiter already idle.
    handed_straight: int


class Scheduler:
    """Matches waiting daemons with pending jobs. Run `run` in a nursery first.

    When the scheduler gives a job back, it announces it like any other change: the
    job is pending in its queue again (`announce_available`, by default only to this
    scheduler's own `job_available`; a server passes one that tells every process) and
    has changed (`job_changed`), so that the job's log followers hear of it.
    """

    def __init__(
        self,
        store: Store,
        *,
        job_changed: Callable[[str], None],
        announce_available: Callable[[Queue], None] | None = None,
        poll_interval: float = 30.0,
    ) -> None:
        self._store = store
        self._job_changed = job_changed
        self._announce_available = announce_available or self.job_available
        self._poll_interval = poll_interval
        self._queues: dict[QueueKey, Queue] = {}
        self._queues_version = 0
        self._groups: dict[GroupKey, _Group] = {}
        self._nursery: trio.Nursery | None = None
        self._claims = self._claims_empty = self._wakeups = self._polls = 0
        self._cancels_during_claim = self._released = self._handed_straight = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the known queues, then host the groups' tasks until cancelled."""
        await self._learn_queues()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def wait_for_job(
        self, daemon: Daemon, cancel_requested: trio.Event, *, deadline: float = math.inf
    ) -> Job | None:
        """The next job claimed for `daemon`, or None once `cancel_requested` is set or
        `deadline` (trio time) passes.

        A cancel that arrives while a claim for this wait is in flight waits for the
        claim, and a job it took is returned all the same: it is locked for `daemon`.
        If the calling task is cancelled instead, the job claimed for it (now, or by a
        claim still in flight) is given back.
        """
        waiter = self._enqueue(daemon)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._cancel_on_request, waiter, cancel_requested, deadline)
                await waiter.settled.wait()
                nursery.cancel_scope.cancel()
        except BaseException:
            if waiter.state is _WaiterState.CLAIMING:
                waiter.abandoned = True  # the claim gives back what it takes
            self._cancel(waiter)
            if waiter.job is not None:
                await self.release(daemon, waiter.job)
            raise
        return waiter.job

    async def release(self, daemon: Daemon, job: Job) -> None:
        """Give back `job`, claimed for `daemon` but never handed to it.

        Nothing ran, so the job is pending again at the head of its queue, with a log
        line that says so; a daemon waiting for that queue is woken and the job's log
        followers are told. Runs shielded, since cancellation is how a job usually
        comes back, and never raises: a job it could not give back stays with
        `daemon`, and the hang reaper fails it.
        """
        line = server_line(
            "Queued",
            f"Daemon {daemon.name!r} went away before the job reached it;"
            " the job is back at the head of its queue.",
            LogLevel.WARN,
        )
        try:
            with trio.CancelScope(shield=True):
                released = await self._store.release_job(job.id, daemon.id, [line])
        except Exception:
            logger.exception("could not give job %s back from daemon %s", job.id, daemon.name)
            return
        if released is None:
            return  # no longer held by `daemon`: nothing to give back
        self._released += 1
        if released.status is JobStatus.PENDING:
            self._announce_available(_queue_of(released))
        self._job_changed(job.id)

    async def create_job(
        self, job: NewJob, logs: Sequence[NewLogLine] = ()
    ) -> tuple[Job, QueuePosition]:
        """Store a new job, and hand it to a daemon waiting idle for its queue if there
        is one: the insert and the claim in one transaction, the waiter settled at
        once. Returns the job as stored and its place in its queue (0 of 0 once handed
        over); a job still pending (nobody was idle, or a job ahead of it went first)
        is the caller's to announce (`job_available`).

        The claim follows the queue's order: if a job ahead of the new one is still
        pending (created elsewhere, its wake-up on its way), that one is handed over.
        """
        queue = Queue(job.organization, job.provisioner, job.tags)
        waiter = self._idle_waiter_for(queue)
        if waiter is None:
            return await self._store.create_job_in_line(job, logs)
        try:
            created, claimed = await self._store.create_and_claim_job(job, logs, waiter.daemon.id)
        except BaseException:
            # Nothing was stored or claimed: the waiter waits on, first in its line.
            waiter.state = _WaiterState.WAITING
            self._resume(waiter.group)
            if waiter.cancel_requested:
                self._cancel(waiter)
            raise
        self._claims += 1
        self._handed_straight += 1
        await self._settle_claimed(waiter, claimed)
        if created.status is JobStatus.PENDING:  # a job ahead of it was handed over
            (position,) = await self._store.queue_positions([created])
            return created, position
        return created, QueuePosition(0, 0)

    def _idle_waiter_for(self, queue: Queue) -> _Waiter | None:
        """The first waiter of the oldest group that can run `queue`'s jobs and has
        nothing under way (no claim in flight, no wake-up to act on), marked as being
        claimed for; None if there is none."""
        self._learn_queue(queue)
        for group in self._groups.values():  # insertion order: oldest group first
            if not group.waiters or group.wake.is_set() or not group.daemon.can_run(queue):
                continue
            head = group.waiters[0]
            if head.state is _WaiterState.WAITING:
                head.state = _WaiterState.CLAIMING
                return head
        return None

    async def _settle_claimed(self, waiter: _Waiter, job: Job) -> None:
        """End `waiter`'s wait with `job`, claimed for it; if its task already left,
        give the job back instead."""
        waiter.group.waiters.remove(waiter)
        self._resume(waiter.group)
        if waiter.abandoned:
            waiter.settle(None)
            await self.release(waiter.daemon, job)
        else:
            waiter.settle(job)

    def _resume(self, group: _Group) -> None:
        """A hand-over to the group's first waiter ended: if the group's task stopped
        claiming because of it, wake it for the waiters behind."""
        if group.deferred:
            group.deferred = False
            if group.waiters:
                group.wake.set()

    def job_available(self, queue: Queue) -> None:
        """A job is pending in `queue` (created, or released): wake one group that can
        take it, the one whose first waiter has waited longest."""
        self._learn_queue(queue)
        for group in self._groups.values():  # insertion order: oldest group first
            if group.waiters and group.daemon.can_run(queue):
                self._wakeups += 1
                group.wake.set()
                return

    def statistics(self) -> SchedulerStatistics:
        return SchedulerStatistics(
            waiters=sum(len(g.waiters) for g in self._groups.values()),
            groups=len(self._groups),
            known_queues=len(self._queues),
            claims=self._claims,
            claims_empty=self._claims_empty,
            wakeups=self._wakeups,
            polls=self._polls,
            cancels_during_claim=self._cancels_during_claim,
            released=self._released,
            handed_straight=self._handed_straight,
        )

    def _enqueue(self, daemon: Daemon) -> _Waiter:
        """A new waiter for `daemon`, last in its group's line."""
        key: GroupKey = (daemon.organization, daemon.provisioners, tags_key(daemon.tags))
        group = self._groups.get(key)
        if group is None:
            if self._nursery is None:
                raise RuntimeError("Scheduler.run is not running")
            group = self._groups[key] = _Group(key, daemon)
            self._nursery.start_soon(self._serve, group, name=f"scheduler-group-{key}")
        waiter = _Waiter(daemon, group)
        group.waiters.append(waiter)
        if len(group.waiters) == 1:
            # Others in the group already know the store holds nothing for them.
            group.wake.set()
        return waiter

    async def _cancel_on_request(
        self, waiter: _Waiter, requested: trio.Event, deadline: float
    ) -> None:
        """Cancel `waiter` once `requested` is set or `deadline` passes."""
        with trio.move_on_at(deadline):
            await requested.wait()
        self._cancel(waiter)

    def _cancel(self, waiter: _Waiter) -> None:
        """Stop `waiter`. Takes effect at once unless a claim for it is in flight, in
        which case the claim decides: a job it took is still the waiter's."""
        if waiter.state is _WaiterState.WAITING:
            waiter.group.waiters.remove(waiter)
            waiter.settle(None)
        elif waiter.state is _WaiterState.CLAIMING and not waiter.cancel_requested:
            waiter.cancel_requested = True
            self._cancels_during_claim += 1

    def _learn_queue(self, queue: Queue) -> None:
        key = _queue_key(queue)
        if key not in self._queues:
            self._queues[key] = queue
            self._queues_version += 1

    async def _learn_queues(self) -> None:
        """Learn the queues the store knows, including those another writer started."""
        for queue in await self._store.pending_queues():
            self._learn_queue(queue)

    def _matching_queues(self, group: _Group) -> list[Queue]:
        if group.queues_version != self._queues_version:
            group.queues = [q for q in self._queues.values() if group.daemon.can_run(q)]
            group.queues_version = self._queues_version
        return group.queues

    async def _serve(self, group: _Group) -> None:
        try:
            while group.waiters:
                group.wake = trio.Event()  # a wake-up during the claims below is kept
                await self._claim_for(group)
                if not group.waiters:
                    break
                with trio.move_on_after(self._poll_interval) as poll:
                    await group.wake.wait()
                if poll.cancelled_caught:
                    # No wake-up for a whole interval: look again, in every queue the
                    # store knows, for jobs that another writer added.
                    self._polls += 1
                    try:
                        await self._learn_queues()
                    except Exception:
                        logger.exception("reading the queues for a poll failed")
        finally:
            if self._groups.get(group.key) is group:
                del self._groups[group.key]
            if group.wake.is_set():
                # Woken for a job it no longer has a waiter for: pass the wake-up on,
                # or the job would wait for the backup poll while another group idles.
                for queue in self._matching_queues(group):
                    self.job_available(queue)

    async def _claim_for(self, group: _Group) -> None:
        """Claim jobs for the group's waiters, oldest first, until the store has none."""
        while group.waiters:
            head = group.waiters[0]
            if head.state is _WaiterState.CLAIMING:
                group.deferred = True  # a new job is being handed to it (create_job)
                return
            head.state = _WaiterState.CLAIMING
            try:
                job = await self._store.claim_job(self._matching_queues(group), head.daemon.id)
            except Exception:
                logger.exception("claiming a job for daemon %s failed", head.daemon.name)
                job = None
            self._claims += 1
            if job is None:
                self._claims_empty += 1
                head.state = _WaiterState.WAITING
                if head.cancel_requested:
                    self._cancel(head)
                return
            group.waiters.popleft()
            if head.abandoned:
                head.settle(None)
                await self.release(head.daemon, job)
            else:
                head.settle(job)
