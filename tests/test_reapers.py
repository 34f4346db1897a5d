"""The reapers on trio's virtual clock, over the in-memory store: the hang timer and
the unroutable-job timer, each over many minutes of virtual time in milliseconds; and
the unroutable-job timer of one process beside daemons connected to another."""

from __future__ import annotations

from functools import partial

import pytest
import trio
from trio.testing import MockClock

from provd.errors import StoreClosed, StoreFull
from provd.events import JobEvents
from provd.model import Daemon, Job, JobStatus, JobUpdate
from provd.protocol import JobErrorCode
from provd.reapers import ReaperSettings, reap_hung_jobs, reap_unroutable_jobs
from provd.registry import DaemonRegistry
from provd.store.memory import MemoryDatabase, MemoryStore
from tests.store.support import daemon, fetch, make_job, make_running, outputs
from tests.virtual_clock import at, virtual_now

HANG = ReaperSettings(hang_timeout_seconds=300, pending_timeout_seconds=None, interval_seconds=30)
PENDING = ReaperSettings(
    hang_timeout_seconds=300, pending_timeout_seconds=1800, interval_seconds=30
)
HEARTBEAT_SECONDS = 10  # a daemon is stale after three: 30 s, also the restart grace


async def status_at(store: MemoryStore, job: Job, seconds: float) -> JobStatus:
    """The job's status at virtual time `seconds` (sleeping until then)."""
    await trio.sleep_until(seconds)
    return (await fetch(store, job.id)).status


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(now=virtual_now)


@pytest.fixture
def registry(store: MemoryStore) -> DaemonRegistry:
    return DaemonRegistry(store, heartbeat_interval=HEARTBEAT_SECONDS, now=virtual_now)


async def heartbeat(store: MemoryStore, job: Job, every: float) -> None:
    """UpdateJob on `job`, by its holder, every `every` seconds, forever."""
    assert job.daemon_id is not None
    while True:
        await trio.sleep(every)
        await store.update_job(job.id, job.daemon_id, JobUpdate())


async def test_a_silent_running_job_fails_as_hung_and_a_heartbeating_one_does_not(
    store: MemoryStore, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    """Ten minutes: the job without updates fails at the first look after 5 minutes,
    with JOB_HUNG, log lines and a wake-up; the job updated every 4 minutes runs on."""
    assert trio.current_time() == 0
    silent = await make_running(store, "quiet-daemon")
    alive = await make_running(store, "busy-daemon")
    events = JobEvents()
    followers = events.watch(silent.id)
    nursery.start_soon(heartbeat, store, alive, 240)
    nursery.start_soon(partial(reap_hung_jobs, store, events, HANG, now=virtual_now))

    # Looks every 30 s; at 300 s the job has been silent for exactly the timeout.
    assert await status_at(store, silent, 315) is JobStatus.RUNNING
    assert not followers.is_set()
    assert await status_at(store, silent, 345) is JobStatus.FAILED
    assert followers.is_set()
    hung = await fetch(store, silent.id)
    assert hung.completed_at == at(330)
    assert hung.error_code == JobErrorCode.JOB_HUNG
    assert hung.error.startswith("Job hung: its provisioner daemon sent no update for 5m00s")
    lines = await outputs(store, silent.id)
    assert lines[0] == hung.error
    assert "does not stay running forever" in lines[1]

    assert await status_at(store, alive, 600) is JobStatus.RUNNING


async def test_a_job_whose_daemon_stops_reporting_fails_five_minutes_after_its_last_update(
    store: MemoryStore, nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    """The timer counts from the last update, not from the start."""
    job = await make_running(store, "flaky-daemon")
    nursery.start_soon(partial(reap_hung_jobs, store, JobEvents(), HANG, now=virtual_now))
    async with trio.open_nursery() as beating:
        beating.start_soon(heartbeat, store, job, 60)
        await trio.sleep_until(605)  # the last update was at 600 s
        beating.cancel_scope.cancel()
    assert await status_at(store, job, 915) is JobStatus.RUNNING
    assert await status_at(store, job, 935) is JobStatus.FAILED
    assert (await fetch(store, job.id)).completed_at == at(930)


async def test_a_job_no_daemon_can_take_fails_after_the_pending_timeout(
    store: MemoryStore,
    registry: DaemonRegistry,
    nursery: trio.Nursery,
    autojump_clock: MockClock,
) -> None:
    """No daemon offers terraform: the job fails at the first look after 30 minutes,
    with NO_CAPABLE_DAEMON and an error that names the provisioner."""
    job = await make_job(store, provisioner="terraform")
    events = JobEvents()
    followers = events.watch(job.id)
    nursery.start_soon(
        partial(reap_unroutable_jobs, store, registry, events, PENDING, now=virtual_now)
    )
    assert await status_at(store, job, 1815) is JobStatus.PENDING
    assert await status_at(store, job, 1845) is JobStatus.FAILED
    failed = await fetch(store, job.id)
    assert failed.completed_at == at(1830)
    assert failed.error_code == JobErrorCode.NO_CAPABLE_DAEMON
    assert failed.error.startswith("No daemon could take this job for 30m00s")
    assert "provisioner 'terraform'" in failed.error
    assert failed.error in await outputs(store, job.id)
    assert followers.is_set()


async def test_a_job_a_live_daemon_could_take_is_never_failed(
    store: MemoryStore,
    registry: DaemonRegistry,
    nursery: trio.Nursery,
    autojump_clock: MockClock,
) -> None:
    """A capable daemon that keeps calling in (busy with another job, say) keeps its
    queue's jobs pending for an hour, while an unroutable job fails beside them."""
    waiting = await make_job(store)
    unroutable = await make_job(store, provisioner="terraform")
    busy = daemon("busy")

    async def calls_in() -> None:
        while True:
            await registry.seen(busy)
            await trio.sleep(HEARTBEAT_SECONDS)

    nursery.start_soon(calls_in)
    nursery.start_soon(
        partial(reap_unroutable_jobs, store, registry, JobEvents(), PENDING, now=virtual_now)
    )
    assert await status_at(store, unroutable, 1845) is JobStatus.FAILED
    assert await status_at(store, waiting, 3600) is JobStatus.PENDING


async def test_a_stale_daemon_does_not_keep_a_job_pending(
    store: MemoryStore,
    registry: DaemonRegistry,
    nursery: trio.Nursery,
    autojump_clock: MockClock,
) -> None:
    """A capable daemon that called once and went quiet is stale after three heartbeat
    intervals, so the job fails at its pending timeout, naming the provisioner."""
    job = await make_job(store)
    await registry.seen(daemon("once"))
    nursery.start_soon(
        partial(reap_unroutable_jobs, store, registry, JobEvents(), PENDING, now=virtual_now)
    )
    assert await status_at(store, job, 1815) is JobStatus.PENDING
    assert await status_at(store, job, 1845) is JobStatus.FAILED
    assert (await fetch(store, job.id)).completed_at == at(1830)


async def test_no_job_is_judged_while_daemons_reconnect_after_a_start(
    store: MemoryStore,
    registry: DaemonRegistry,
    autojump_clock: MockClock,
) -> None:
    """A job older than the pending timeout when provd starts is left alone for one
    stale interval (daemons are reconnecting); one that a reconnecting daemon can take
    stays pending, the other fails when the grace ends."""
    takeable = await make_job(store)
    unroutable = await make_job(store, provisioner="terraform")
    await trio.sleep(2000)  # provd was down; both jobs are older than the timeout
    often = ReaperSettings(
        hang_timeout_seconds=300, pending_timeout_seconds=1800, interval_seconds=5
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(reap_unroutable_jobs, store, registry, JobEvents(), often, now=virtual_now)
        )
        assert await status_at(store, unroutable, 2025) is JobStatus.PENDING
        await registry.seen(daemon("back"))  # 25 s after the start, within the grace
        assert await status_at(store, unroutable, 2029) is JobStatus.PENDING
        assert await status_at(store, unroutable, 2031) is JobStatus.FAILED
        assert (await fetch(store, unroutable.id)).completed_at == at(2030)
        assert await status_at(store, takeable, 2040) is JobStatus.PENDING
        nursery.cancel_scope.cancel()


async def test_without_a_pending_timeout_nothing_is_failed(
    store: MemoryStore, registry: DaemonRegistry, autojump_clock: MockClock
) -> None:
    """pending_timeout_seconds=None: the reaper returns at once, and an unroutable job
    waits (here: a day)."""
    job = await make_job(store, provisioner="terraform")
    await reap_unroutable_jobs(store, registry, JobEvents(), HANG, now=virtual_now)
    assert trio.current_time() == 0
    assert await status_at(store, job, 24 * 3600) is JobStatus.PENDING


class RefusesTwice(MemoryStore):
    """A store that refuses the first two `fail_hung_jobs` with `error`: SQLite's or
    PostgreSQL's StoreFull, or PostgreSQL's StoreUnreachable (a StoreClosed)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(now=virtual_now)
        self.error = error
        self.refused = 0

    def _refuse_once(self) -> None:
        if self.refused < 2:
            self.refused += 1
            raise self.error

    async def fail_hung_jobs(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._refuse_once()
        return await super().fail_hung_jobs(*args, **kwargs)


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        (StoreFull("the database's disk is full: free space on /test"), "could not write"),
        (StoreClosed("lost the PostgreSQL database at host=db"), "could not reach the database"),
    ],
)
async def test_a_full_disk_or_a_lost_database_costs_the_hang_reaper_one_pass_not_its_life(
    nursery: trio.Nursery,
    autojump_clock: MockClock,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    logged: str,
) -> None:
    """Its first two passes meet a full disk (or a database it cannot reach): each is
    logged, the reaper goes on, and the first pass after the timeout fails the job."""
    store = RefusesTwice(error)
    silent = await make_running(store, "quiet-daemon")
    nursery.start_soon(partial(reap_hung_jobs, store, JobEvents(), HANG, now=virtual_now))
    assert await status_at(store, silent, 31) is JobStatus.RUNNING  # first pass refused
    assert await status_at(store, silent, 61) is JobStatus.RUNNING  # second pass refused
    assert store.refused == 2
    assert sum(f"the hang reaper {logged}" in r.message for r in caplog.records) == 2
    assert await status_at(store, silent, 345) is JobStatus.FAILED


# -- several processes on one database ---------------------------------------------


def process_on(database: MemoryDatabase) -> tuple[MemoryStore, DaemonRegistry]:
    """The store and registry of one process serving `database`."""
    store = MemoryStore(database, now=virtual_now)
    return store, DaemonRegistry(store, heartbeat_interval=HEARTBEAT_SECONDS, now=virtual_now)


async def streams(registry: DaemonRegistry, streaming: Daemon, until: float) -> None:
    """`streaming` calls `registry`'s process and holds a stream open there until `until`."""
    await registry.seen(streaming)
    with registry.connected(streaming):
        await trio.sleep_until(until)


async def reaping_on_b_beside_a(
    nursery: trio.Nursery,
) -> tuple[MemoryStore, DaemonRegistry, MemoryStore]:
    """Two processes on one database, each running its registry: A (returned with its
    store) takes daemons; B (its store returned) runs the pending reaper, looking every
    30 s. B's registry flushes half a second after A's, so their order is known."""
    database = MemoryDatabase()
    a_store, a = process_on(database)
    b_store, b = process_on(database)
    await nursery.start(a.run)
    nursery.start_soon(
        partial(reap_unroutable_jobs, b_store, b, JobEvents(), PENDING, now=virtual_now)
    )
    await trio.sleep_until(0.5)
    await nursery.start(b.run)
    return a_store, a, b_store


async def test_a_job_a_daemon_on_another_process_can_take_is_never_failed(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    """A capable daemon holds a stream open to process A for an hour and never calls
    B: B's pending reaper leaves its queue's job pending, and fails the job no process's
    daemon can take at its pending timeout."""
    a_store, a, b_store = await reaping_on_b_beside_a(nursery)
    waiting = await make_job(a_store)
    unroutable = await make_job(a_store, provisioner="terraform")
    nursery.start_soon(streams, a, daemon("on-a"), 3600)
    assert await status_at(b_store, unroutable, 1815) is JobStatus.PENDING
    assert await status_at(b_store, unroutable, 1845) is JobStatus.FAILED
    assert await status_at(b_store, waiting, 3599) is JobStatus.PENDING


async def test_a_job_fails_once_the_daemon_on_another_process_is_gone(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    """The capable daemon's stream to A closes at 1852 s, after the job's pending timeout
    (1800 s): B's reaper leaves the job alone while the daemon is live anywhere, and fails
    it at its first look after the stale interval has passed since the daemon was last
    seen (1882 s) and A's last lease (1850 s to 1865 s) has ended."""
    a_store, a, b_store = await reaping_on_b_beside_a(nursery)
    job = await make_job(a_store)
    nursery.start_soon(streams, a, daemon("leaves"), 1852)
    assert await status_at(b_store, job, 1885) is JobStatus.PENDING
    assert await status_at(b_store, job, 1895) is JobStatus.FAILED
    failed = await fetch(b_store, job.id)
    assert (failed.completed_at, failed.error_code) == (at(1890), JobErrorCode.NO_CAPABLE_DAEMON)
