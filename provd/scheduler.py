"""Who gets which job: waiting daemons, wake-ups, and claims that happen once.

Daemons that announce the same (organization, provisioners, tags) form a group,
served by one task in the scheduler's nursery. The group's task claims jobs for
its waiters in arrival order, so waiting costs nothing and identical waiters never
each query the store. A new job wakes one matching group at once; a slow poll
covers a missed wake-up (another process writing to the database, say).

A waiter ends exactly once: with a job, or canceled. A cancel that arrives while a
claim for that waiter is in flight waits for the claim, and a job claimed in that
race is still the waiter's (the daemon must run it).
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trio

from provd.model import Daemon, Job, LogLevel, LogSource, NewLogLine, Queue, tags_key
from provd.store import Store

logger = logging.getLogger(__name__)

QueueKey = tuple[str, str, str]
GroupKey = tuple[str, tuple[str, ...], str]

_RELEASED_LINE = NewLogLine(
    source=LogSource.PROVISIONER_DAEMON,
    level=LogLevel.WARN,
    stage="Queued",
    output="The daemon that was given this job went away before it was sent;"
    " the job is back at the head of its queue.",
)


def queue_key(queue: Queue) -> QueueKey:
    return (queue.organization, queue.provisioner, tags_key(queue.tags))


def queue_of(job: Job) -> Queue:
    return Queue(job.organization, job.provisioner, job.tags)


class WaiterState(enum.Enum):
    WAITING = "waiting"
    CLAIMING = "claiming"
    ASSIGNED = "assigned"
    CANCELED = "canceled"


class Waiter:
    """One daemon's wait for one job."""

    def __init__(self, daemon: Daemon, group: _Group) -> None:
        self.daemon = daemon
        self.state = WaiterState.WAITING
        self.job: Job | None = None
        self._group = group
        self._cancel_requested = False
        self._abandoned = False
        self._settled = trio.Event()

    async def wait(self) -> Job | None:
        """The job claimed for this waiter, or None once it was canceled."""
        await self._settled.wait()
        return self.job

    def cancel(self) -> None:
        """Stop waiting. Takes effect at once unless a claim is in flight, in which
        case the claim decides: a job it took is still this waiter's."""
        if self.state is WaiterState.WAITING:
            self._group.waiters.remove(self)
            self._settle(None)
        elif self.state is WaiterState.CLAIMING:
            self._cancel_requested = True

    def _settle(self, job: Job | None) -> None:
        self.job = job
        self.state = WaiterState.ASSIGNED if job is not None else WaiterState.CANCELED
        self._settled.set()


@dataclass(eq=False)
class _Group:
    key: GroupKey
    daemon: Daemon  # any member: they all route alike
    waiters: deque[Waiter] = field(default_factory=deque)
    wake: trio.Event = field(default_factory=trio.Event)
    queues: list[Queue] = field(default_factory=list)
    queues_version: int = -1


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    waiters: int
    groups: int
    known_queues: int
    claims: int
    claims_empty: int
    wakeups: int
    polls: int
    released: int


class Scheduler:
    """Matches waiting daemons with pending jobs. Run `run` in a nursery first."""

    def __init__(self, store: Store, *, poll_interval: float = 30.0) -> None:
        self._store = store
        self._poll_interval = poll_interval
        self._queues: dict[QueueKey, Queue] = {}
        self._queues_version = 0
        self._groups: dict[GroupKey, _Group] = {}
        self._nursery: trio.Nursery | None = None
        self._claims = self._claims_empty = self._wakeups = self._polls = self._released = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the known queues, then host the groups' tasks until cancelled."""
        for queue in await self._store.pending_queues():
            self._queues[queue_key(queue)] = queue
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    @contextmanager
    def waiter(self, daemon: Daemon) -> Iterator[Waiter]:
        """Register `daemon` as waiting for one job while the block runs.

        Leaving the block before the waiter settled (the stream went away) cancels
        it; a job claimed for it in that moment goes back to its queue.
        """
        group = self._group_for(daemon)
        waiter = Waiter(daemon, group)
        group.waiters.append(waiter)
        if len(group.waiters) == 1:
            # Others in the group already know the store holds nothing for them.
            group.wake.set()
        try:
            yield waiter
        finally:
            if waiter.state is WaiterState.CLAIMING:
                waiter._abandoned = True
            waiter.cancel()

    def job_available(self, queue: Queue) -> None:
        """A job is pending in `queue` (created, or released): wake one group that can
        take it, the one whose first waiter has waited longest."""
        key = queue_key(queue)
        if key not in self._queues:
            self._queues[key] = queue
            self._queues_version += 1
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
            released=self._released,
        )

    def _group_for(self, daemon: Daemon) -> _Group:
        key: GroupKey = (daemon.organization, daemon.provisioners, tags_key(daemon.tags))
        group = self._groups.get(key)
        if group is None:
            if self._nursery is None:
                raise RuntimeError("Scheduler.run is not running")
            group = self._groups[key] = _Group(key, daemon)
            self._nursery.start_soon(self._serve, group, name=f"scheduler-group-{key}")
        return group

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
                    self._polls += 1
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
            head.state = WaiterState.CLAIMING
            try:
                job = await self._store.claim_job(self._matching_queues(group), head.daemon.id)
            except Exception:
                logger.exception("claiming a job for daemon %s failed", head.daemon.name)
                job = None
            self._claims += 1
            if job is None:
                self._claims_empty += 1
                head.state = WaiterState.WAITING
                if head._cancel_requested:
                    head.cancel()
                return
            group.waiters.popleft()
            if not head._abandoned:
                head._settle(job)
                continue
            # The stream ended while we claimed: nothing was sent, so the job goes back.
            head._settle(None)
            self._released += 1
            await self._store.release_job(job.id, head.daemon.id, [_RELEASED_LINE])
            self.job_available(queue_of(job))
