"""The scheduler on trio's virtual clock, over the in-memory store: the backup poll,
wake-ups, the cancel-vs-claim race and a job given back by an abandoned wait.

Every race is forced: a store wrapper holds a claim until the test lets it return,
and `wait_all_tasks_blocked` proves that every other task has done what it could
(it never moves the virtual clock). Minutes of virtual time pass in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from provd.errors import NotFound
from provd.events import JobEvents
from provd.model import Daemon, Job, JobStatus, NewJob, QueuePosition
from provd.scheduler import Scheduler
from provd.store.memory import MemoryStore
from tests.claim_gate import ClaimGate
from tests.store.support import (
    ARCHIVE,
    TAGS,
    TAR,
    daemon,
    fetch,
    log,
    make_job,
    new_job,
    outputs,
    queue_of,
)
from tests.virtual_clock import virtual_now

POLL_SECONDS = 30.0
HANG_GUARD_SECONDS = 3600


async def until(event: trio.Event) -> None:
    """Wait for `event`; a hang guard, which on the virtual clock fails at once."""
    with trio.fail_after(HANG_GUARD_SECONDS):
        await event.wait()


@dataclass(eq=False)
class Wait:
    """One `wait_for_job` running in the background."""

    cancel_requested: trio.Event = field(default_factory=trio.Event)
    job: Job | None = None
    ended_at: float | None = None
    ended: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass
class Harness:
    store: MemoryStore
    gate: ClaimGate
    events: JobEvents
    scheduler: Scheduler
    nursery: trio.Nursery

    def wait(self, who: Daemon) -> Wait:
        wait = Wait()

        async def run() -> None:
            with wait.scope:
                wait.job = await self.scheduler.wait_for_job(who, wait.cancel_requested)
            wait.ended_at = trio.current_time()
            wait.ended.set()

        self.nursery.start_soon(run)
        return wait


@pytest.fixture
async def harness(nursery: trio.Nursery) -> Harness:
    store = MemoryStore(now=virtual_now)
    gate = ClaimGate(store)
    events = JobEvents()
    scheduler = Scheduler(gate, job_changed=events.notify, poll_interval=POLL_SECONDS)  # type: ignore[arg-type]
    await nursery.start(scheduler.run)
    return Harness(store, gate, events, scheduler, nursery)


async def test_backup_poll_finds_a_job_nobody_announced_after_exactly_one_interval(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """A job another writer put in a queue this process never saw, with no wake-up,
    is claimed by the poll exactly one poll interval after the group last looked."""
    started = trio.current_time()
    wait = harness.wait(daemon())
    await wait_all_tasks_blocked()
    assert harness.scheduler.statistics().claims_empty == 1  # looked, found nothing
    job = await make_job(harness.store)  # straight into the store: nobody is woken
    await until(wait.ended)
    assert wait.job is not None and wait.job.id == job.id
    assert wait.ended_at == started + POLL_SECONDS
    stats = harness.scheduler.statistics()
    assert (stats.polls, stats.wakeups, stats.claims) == (1, 0, 2)
    held = await fetch(harness.store, job.id)
    assert held.status is JobStatus.RUNNING and held.daemon_id == daemon().id


async def test_backup_poll_keeps_polling_while_nothing_comes(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """Ten minutes without a job: one empty claim per poll interval, and the wait
    goes on until it is canceled."""
    wait = harness.wait(daemon())
    await trio.sleep(10 * 60 + 1)
    stats = harness.scheduler.statistics()
    assert (stats.polls, stats.claims_empty, stats.waiters) == (20, 21, 1)
    wait.cancel_requested.set()
    await until(wait.ended)
    assert wait.job is None
    assert harness.scheduler.statistics().waiters == 0


async def test_a_new_job_wakes_a_matching_waiter_at_once(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """`job_available` wakes the waiting group that can run the job, with no time
    passing; a job it cannot run does not wake it."""
    linux = harness.wait(daemon("linux", os="linux"))
    await wait_all_tasks_blocked()
    started = trio.current_time()
    windows_job = await make_job(harness.store, tags={**TAGS, "os": "windows"})
    harness.scheduler.job_available(queue_of(windows_job))
    await wait_all_tasks_blocked()
    assert not linux.ended.is_set()
    assert harness.scheduler.statistics().wakeups == 0
    linux_job = await make_job(harness.store, tags={**TAGS, "os": "linux"})
    harness.scheduler.job_available(queue_of(linux_job))
    await until(linux.ended)
    assert linux.job is not None and linux.job.id == linux_job.id
    assert linux.ended_at == started
    assert harness.scheduler.statistics().polls == 0
    assert (await fetch(harness.store, windows_job.id)).status is JobStatus.PENDING


async def test_waiters_of_a_group_are_served_in_arrival_order(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """Identical daemons share one group; the one that waited longest gets the first job."""
    first = harness.wait(daemon("first"))
    await wait_all_tasks_blocked()
    second = harness.wait(daemon("second"))
    await wait_all_tasks_blocked()
    assert harness.scheduler.statistics().groups == 1
    jobs = [await make_job(harness.store) for _ in range(2)]
    harness.scheduler.job_available(queue_of(jobs[0]))
    await until(first.ended)
    await until(second.ended)
    assert [first.job and first.job.id, second.job and second.job.id] == [j.id for j in jobs]


async def test_cancel_while_waiting_ends_the_wait_at_once(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """With no claim in flight, a cancel ends the wait with no job and no time passing,
    and a job created afterwards stays pending."""
    wait = harness.wait(daemon())
    await wait_all_tasks_blocked()
    started = trio.current_time()
    wait.cancel_requested.set()
    await until(wait.ended)
    assert (wait.job, wait.ended_at) == (None, started)
    job = await make_job(harness.store)
    harness.scheduler.job_available(queue_of(job))
    await wait_all_tasks_blocked()
    assert (await fetch(harness.store, job.id)).status is JobStatus.PENDING


async def test_cancel_during_a_claim_that_takes_a_job_still_gets_the_job(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """The race: the cancel arrives after the store locked a job for this daemon and
    before the scheduler heard of it. The claim decides: the job is the daemon's."""
    wait = harness.wait(daemon())
    await wait_all_tasks_blocked()
    harness.gate.armed = True
    job = await make_job(harness.store)
    harness.scheduler.job_available(queue_of(job))
    await until(harness.gate.holding)
    assert harness.gate.held is not None and harness.gate.held.id == job.id
    wait.cancel_requested.set()
    await wait_all_tasks_blocked()
    assert harness.scheduler.statistics().cancels_during_claim == 1  # heard...
    assert not wait.ended.is_set()  # ...and waiting for the claim
    harness.gate.opened.set()
    await until(wait.ended)
    assert wait.job is not None and wait.job.id == job.id
    assert (await fetch(harness.store, job.id)).daemon_id == daemon().id
    assert harness.scheduler.statistics().released == 0


async def test_cancel_during_a_claim_that_finds_nothing_ends_the_wait_empty(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """The same race when the store had nothing: the wait ends without a job, and the
    group stops claiming for it."""
    harness.gate.armed = True
    wait = harness.wait(daemon())
    await until(harness.gate.holding)
    assert harness.gate.held is None
    wait.cancel_requested.set()
    await wait_all_tasks_blocked()
    assert harness.scheduler.statistics().cancels_during_claim == 1
    assert not wait.ended.is_set()
    harness.gate.opened.set()
    await until(wait.ended)
    assert wait.job is None
    stats = harness.scheduler.statistics()
    assert (stats.waiters, stats.groups, stats.claims) == (0, 0, 1)


async def test_abandoned_wait_gives_its_job_back_to_the_head_of_its_queue(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """The waiting task is cancelled while a claim for it is in flight: it leaves at
    once, and the job the claim took goes back first in its queue, with a log line and
    a wake-up for the job's log followers."""
    gone = harness.wait(daemon("gone"))
    await wait_all_tasks_blocked()
    harness.gate.armed = True
    taken = await make_job(harness.store)
    later = await make_job(harness.store)
    harness.scheduler.job_available(queue_of(taken))
    await until(harness.gate.holding)
    assert harness.gate.held is not None and harness.gate.held.id == taken.id
    followers = harness.events.watch(taken.id)
    gone.scope.cancel()
    await until(gone.ended)  # left while the claim is still held
    assert (await fetch(harness.store, taken.id)).status is JobStatus.RUNNING
    assert not followers.is_set()
    harness.gate.opened.set()
    await until(followers)
    back = await fetch(harness.store, taken.id)
    assert back.status is JobStatus.PENDING and back.daemon_id is None
    assert any(
        "Daemon 'gone' went away before the job reached it" in line
        for line in await outputs(harness.store, taken.id)
    )
    assert harness.scheduler.statistics().released == 1
    # First in its queue again: the next daemon gets it, not the job created after it.
    nxt = harness.wait(daemon("next"))
    await until(nxt.ended)
    assert nxt.job is not None and nxt.job.id == taken.id
    assert (await fetch(harness.store, later.id)).status is JobStatus.PENDING


async def test_a_job_given_back_wakes_a_waiting_daemon(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """`release` puts a held job back and wakes a daemon waiting for its queue at once."""
    job = await make_job(harness.store)
    holder = daemon("holder")
    claimed = await harness.store.claim_job([queue_of(job)], holder.id)
    assert claimed is not None
    waiting = harness.wait(daemon("waiting"))
    await wait_all_tasks_blocked()
    started = trio.current_time()
    followers = harness.events.watch(job.id)
    await harness.scheduler.release(holder, claimed)
    assert followers.is_set()
    await until(waiting.ended)
    assert waiting.job is not None and waiting.job.id == job.id
    assert waiting.ended_at == started
    lines = await outputs(harness.store, job.id)
    assert lines == [
        "Daemon 'holder' went away before the job reached it;"
        " the job is back at the head of its queue."
    ]


async def test_release_of_a_job_no_longer_held_changes_nothing(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """A job the daemon no longer holds (completed meanwhile) is left alone."""
    job = await make_job(harness.store)
    holder = daemon("holder")
    claimed = await harness.store.claim_job([queue_of(job)], holder.id)
    assert claimed is not None
    await harness.store.complete_job(job.id, holder.id, b"done")
    followers = harness.events.watch(job.id)
    await harness.scheduler.release(holder, claimed)
    assert not followers.is_set()
    assert (await fetch(harness.store, job.id)).status is JobStatus.SUCCEEDED
    assert harness.scheduler.statistics().released == 0


# -- a new job handed straight to an idle waiter (Scheduler.create_job) ----------


async def new(harness: Harness, **overrides: object) -> NewJob:
    """A new job of the default queue whose archive is stored."""
    stored = await harness.store.put_file(ARCHIVE, TAR)
    return new_job(stored.hash, **overrides)


async def test_a_new_job_goes_straight_to_an_idle_waiter(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """Created and claimed in one store call: the wait ends at once with it, and no
    wake-up or claim of the group's task is involved."""
    wait = harness.wait(daemon())
    await wait_all_tasks_blocked()
    started = trio.current_time()
    created, place = await harness.scheduler.create_job(await new(harness), [log("queued")])
    assert created.status is JobStatus.RUNNING and created.daemon_id == daemon().id
    assert place == QueuePosition(0, 0)
    await until(wait.ended)
    assert wait.job == created and wait.ended_at == started
    assert await outputs(harness.store, created.id) == ["queued"]
    stats = harness.scheduler.statistics()
    assert (stats.handed_straight, stats.wakeups, stats.claims, stats.waiters) == (1, 0, 2, 0)


async def test_a_new_job_with_nobody_idle_is_created_pending(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """No waiter, or only one that cannot run it: the job is stored pending, for the
    caller to announce."""
    linux = harness.wait(daemon("linux", os="linux"))
    await wait_all_tasks_blocked()
    created, place = await harness.scheduler.create_job(await new(harness), [])
    assert created.status is JobStatus.PENDING
    assert place == QueuePosition(1, 1)
    assert not linux.ended.is_set()
    assert harness.scheduler.statistics().handed_straight == 0


async def test_a_job_ahead_in_the_queue_is_handed_over_first(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """A job created elsewhere whose wake-up has not arrived is ahead of the new one:
    the waiter gets it, and the new one is returned pending."""
    wait = harness.wait(daemon())
    await wait_all_tasks_blocked()
    older = await make_job(harness.store)  # straight into the store: nobody is woken
    created, place = await harness.scheduler.create_job(await new(harness), [])
    await until(wait.ended)
    assert wait.job is not None and wait.job.id == older.id
    assert created.status is JobStatus.PENDING
    assert place == QueuePosition(1, 1)  # the older one left the queue
    assert (await fetch(harness.store, created.id)).status is JobStatus.PENDING


async def test_cancel_during_a_hand_over_still_gets_the_job(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """The cancel-vs-claim race on the hand-over: the claim decides."""
    wait = harness.wait(daemon())
    await wait_all_tasks_blocked()
    harness.gate.armed = True
    created: list[Job] = []

    async def create() -> None:
        created.append((await harness.scheduler.create_job(await new(harness), []))[0])

    harness.nursery.start_soon(create)
    await until(harness.gate.holding)
    wait.cancel_requested.set()
    await wait_all_tasks_blocked()
    assert harness.scheduler.statistics().cancels_during_claim == 1
    assert not wait.ended.is_set()
    harness.gate.opened.set()
    await until(wait.ended)
    assert wait.job is not None and [wait.job] == created
    assert harness.scheduler.statistics().released == 0


async def test_a_wait_abandoned_during_a_hand_over_gives_the_job_back(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """The daemon's stream dies while its new job is being claimed for it: the job
    goes back to the head of its queue, with a log line, and the next daemon gets it."""
    gone = harness.wait(daemon("gone"))
    await wait_all_tasks_blocked()
    harness.gate.armed = True
    job = await new(harness)
    harness.nursery.start_soon(harness.scheduler.create_job, job, [])
    await until(harness.gate.holding)
    followers = harness.events.watch(job.id)
    gone.scope.cancel()
    await until(gone.ended)
    harness.gate.opened.set()
    await until(followers)
    back = await fetch(harness.store, job.id)
    assert back.status is JobStatus.PENDING and back.daemon_id is None
    assert any(
        "went away before the job reached it" in line
        for line in await outputs(harness.store, job.id)
    )
    nxt = harness.wait(daemon("next"))
    await until(nxt.ended)
    assert nxt.job is not None and nxt.job.id == job.id


async def test_waiters_behind_a_hand_over_are_served_without_the_poll(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """While the first waiter of a group is handed a new job, a job announced for the
    group finds its task unable to claim (the first waiter is taken): once the hand-
    over ends, the task claims that job for the second waiter at once."""
    first = harness.wait(daemon("first"))
    await wait_all_tasks_blocked()
    second = harness.wait(daemon("second"))
    await wait_all_tasks_blocked()
    harness.gate.armed = True
    handed = await new(harness)
    harness.nursery.start_soon(harness.scheduler.create_job, handed, [])
    await until(harness.gate.holding)
    other = await make_job(harness.store)
    harness.scheduler.job_available(queue_of(other))
    await wait_all_tasks_blocked()
    assert not second.ended.is_set()
    started = trio.current_time()
    harness.gate.opened.set()
    await until(first.ended)
    await until(second.ended)
    assert first.job is not None and first.job.id == handed.id
    assert second.job is not None and second.job.id == other.id
    assert second.ended_at == started
    assert harness.scheduler.statistics().polls == 0


async def test_a_failed_hand_over_leaves_the_waiter_waiting(
    harness: Harness, autojump_clock: MockClock
) -> None:
    """A job the store refuses (its archive is missing) claims nothing: the waiter
    keeps its place and gets the next job."""
    wait = harness.wait(daemon())
    await wait_all_tasks_blocked()
    with pytest.raises(NotFound):
        await harness.scheduler.create_job(new_job("0" * 64), [])
    await wait_all_tasks_blocked()
    assert not wait.ended.is_set()
    created, _ = await harness.scheduler.create_job(await new(harness), [])
    await until(wait.ended)
    assert wait.job == created
