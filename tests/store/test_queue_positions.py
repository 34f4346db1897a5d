"""queue_positions: positions and sizes from the counters (provd/store/_ranks.py) equal
a brute-force count after every path that adds or removes a pending job: create,
claim, release (back to its old place), cancel, pending-timeout failure, retention,
on a database migrated from before the counters, and with two stores (replicas) on
one database writing at once."""

from __future__ import annotations

import contextlib
import random
import sqlite3
from functools import partial
from typing import Any

import pytest
import trio

from provd.errors import FailedPrecondition
from provd.model import Job, JobQuery, JobStatus, Queue, QueuePosition, tags_key
from provd.store import Store

from .conftest import Clock, StoreFactory
from .support import ARCHIVE, DEFAULT_QUEUE, TAGS, TAR, claim, log, make_job, new_job, queue_of

OTHER_QUEUE = Queue("org-a", "echo", {**TAGS, "region": "eu"})


async def all_jobs(store: Store) -> list[Job]:
    """Every stored job, oldest first."""
    jobs: list[Job] = []
    before = None
    while True:
        page = await store.list_jobs(JobQuery(limit=500, before_seq=before))
        jobs += page.jobs
        if page.next_before_seq is None:
            return sorted(jobs, key=lambda job: job.seq)
        before = page.next_before_seq


def brute_force(jobs: list[Job]) -> dict[str, QueuePosition]:
    """Each job's position by counting: jobs ahead in (priority desc, seq) order
    among the pending jobs of its queue."""
    pending = [job for job in jobs if job.status is JobStatus.PENDING]
    answers = {}
    for job in jobs:
        if job.status is not JobStatus.PENDING:
            answers[job.id] = QueuePosition(0, 0)
            continue
        key = (job.organization, job.provisioner, tags_key(job.tags))
        queue = [o for o in pending if (o.organization, o.provisioner, tags_key(o.tags)) == key]
        ahead = sum(1 for o in queue if (-o.priority, o.seq) < (-job.priority, job.seq))
        answers[job.id] = QueuePosition(ahead + 1, len(queue))
    return answers


async def check(store: Store) -> None:
    """The store's answer for every job, one by one and as one batch, is the count's."""
    jobs = await all_jobs(store)
    expected = brute_force(jobs)
    batch = await store.queue_positions(jobs)
    assert dict(zip([job.id for job in jobs], batch, strict=True)) == expected
    for job in jobs[:: max(1, len(jobs) // 7)]:
        assert await store.queue_position(job) == expected[job.id]


class TestCreateJobInLine:
    async def test_create_job_in_line_answers_with_the_place(self, store: Store) -> None:
        """`create_job_in_line` stores what `create_job` does and gives the new job's
        place as `queue_positions` reads it afterwards, priorities and queues mixed."""
        stored = await store.put_file(ARCHIVE, TAR)
        for priority, tags in ((0, TAGS), (5, TAGS), (0, TAGS), (9, OTHER_QUEUE.tags), (-1, TAGS)):
            new = new_job(stored.hash, priority=priority, tags=dict(tags))
            created, place = await store.create_job_in_line(new, [log("queued")])
            assert created == await store.get_job(new.id)
            assert created.status is JobStatus.PENDING
            assert [place] == await store.queue_positions([created])
            await check(store)


class TestQueuePositions:
    async def test_empty_and_not_pending(self, store: Store) -> None:
        """No jobs, no reads; a job that is not pending is (0, 0)."""
        assert await store.queue_positions([]) == []
        job = await make_job(store)
        canceled = await store.cancel_job(job.id)
        assert await store.queue_positions([canceled, canceled]) == [QueuePosition(0, 0)] * 2

    async def test_batch_keeps_order_and_duplicates(self, store: Store) -> None:
        first = await make_job(store)
        second = await make_job(store, priority=3)
        other = await make_job(store, tags=dict(OTHER_QUEUE.tags))
        assert await store.queue_positions([first, other, second, first]) == [
            QueuePosition(2, 2),
            QueuePosition(1, 1),
            QueuePosition(1, 2),
            QueuePosition(2, 2),
        ]

    async def test_stale_job_reads_its_stored_state(self, store: Store) -> None:
        """A job read as pending and claimed since is answered as it is now: (0, 0)."""
        job = await make_job(store)
        await make_job(store)
        await claim(store, [DEFAULT_QUEUE], "d1")
        assert job.status is JobStatus.PENDING
        assert await store.queue_positions([job]) == [QueuePosition(0, 0)]

    async def test_create_with_priorities_and_queues(self, store: Store) -> None:
        for priority in (0, 5, 0, -2, 5, 9, 0):
            await make_job(store, priority=priority)
            await check(store)
        await make_job(store, tags=dict(OTHER_QUEUE.tags), priority=5)
        await make_job(store, organization="org-b")
        await check(store)

    async def test_claims_from_the_head(self, store: Store) -> None:
        for priority in (0, 5, 0, 5, 1):
            await make_job(store, priority=priority)
        for _ in range(5):
            await claim(store, [DEFAULT_QUEUE], "d1")
            await check(store)
        assert await store.claim_job([DEFAULT_QUEUE], "d1") is None
        await make_job(store)
        await check(store)

    async def test_release_keeps_the_old_place(self, store: Store) -> None:
        """Released at once, after later claims, after higher-priority arrivals, and
        after its level was drained: back at its place, every count exact."""
        jobs = [await make_job(store, priority=p) for p in (0, 0, 0, 5, 0)]
        first = await claim(store, [DEFAULT_QUEUE], "d1")  # priority 5
        await store.release_job(first.id, "d1")
        await check(store)
        a = await claim(store, [DEFAULT_QUEUE], "d1")
        b = await claim(store, [DEFAULT_QUEUE], "d2")
        c = await claim(store, [DEFAULT_QUEUE], "d3")
        await make_job(store, priority=7)
        await store.release_job(b.id, "d2")  # from the middle of the claimed run
        await check(store)
        await store.release_job(a.id, "d1")
        await check(store)
        await store.release_job(c.id, "d3")
        await check(store)
        while await store.claim_job([DEFAULT_QUEUE], "d9") is not None:
            await check(store)
        last = await store.get_job(jobs[-1].id)
        assert last is not None and last.status is JobStatus.RUNNING
        await store.release_job(last.id, "d9")  # its level had no pending job left
        await check(store)

    async def test_release_of_a_job_canceled_meanwhile(self, store: Store) -> None:
        await make_job(store)
        await make_job(store)
        held = await claim(store, [DEFAULT_QUEUE], "d1")
        await store.cancel_job(held.id)  # canceling
        released = await store.release_job(held.id, "d1")
        assert released is not None and released.status is JobStatus.CANCELED
        await check(store)

    async def test_cancel_head_middle_tail(self, store: Store) -> None:
        jobs = [await make_job(store, priority=p) for p in (0, 0, 0, 0, 0, 2, 2)]
        for index in (2, 0, 6, 3, 1):
            await store.cancel_job(jobs[index].id)
            await check(store)
        for _ in range(2):
            await claim(store, [DEFAULT_QUEUE], "d1")
            await check(store)

    async def test_cancels_then_claims_absorb_the_marks(self, store: Store) -> None:
        """Many removals from the middle, then claims over them: still exact."""
        jobs = [await make_job(store) for _ in range(30)]
        for job in jobs[5:25:2]:
            await store.cancel_job(job.id)
        await check(store)
        while await store.claim_job([DEFAULT_QUEUE], "d1") is not None:
            pass
        await check(store)
        await make_job(store)
        await check(store)

    async def test_pending_timeout_failure(self, store: Store, clock: Clock) -> None:
        old = [await make_job(store, priority=p) for p in (0, 3, 0)]
        clock.advance(10_000)
        cutoff = clock()
        await make_job(store, priority=3)
        await make_job(store)
        await store.cancel_job(old[2].id)
        held = await claim(store, [DEFAULT_QUEUE], "d1")  # old[1], priority 3
        failed = await store.fail_pending_jobs(DEFAULT_QUEUE, cutoff, "too old", "UNROUTABLE")
        assert [job.id for job in failed] == [old[0].id]
        await check(store)
        await store.release_job(held.id, "d1")
        await check(store)

    async def test_retention_changes_nothing(self, store: Store, clock: Clock) -> None:
        done = [await make_job(store) for _ in range(3)]
        waiting = [await make_job(store) for _ in range(3)]
        for job in done:
            await store.cancel_job(job.id)
        clock.advance(60_000)
        purged = await store.purge_expired(clock(), 0, 10)
        assert purged.jobs == 3
        assert await store.queue_positions(waiting) == [QueuePosition(i, 3) for i in (1, 2, 3)]
        await check(store)

    async def test_survives_reopening(self, open_store: StoreFactory) -> None:
        async with open_store() as store:
            for priority in (0, 1, 0):
                await make_job(store, priority=priority)
            await claim(store, [DEFAULT_QUEUE], "d1")
        async with open_store() as store:
            await check(store)

    @pytest.mark.parametrize("seed", [1, 2, 3])
    async def test_random_paths(self, store: Store, clock: Clock, seed: int) -> None:
        """Random creates, claims, releases, cancels and timeouts over two queues and
        three priorities; exact after every step."""
        rng = random.Random(seed)
        held: list[tuple[str, str]] = []  # (job id, daemon)
        queues = [DEFAULT_QUEUE, OTHER_QUEUE]
        for step in range(70):
            clock.advance(1000)
            action = rng.choice(["create", "create", "claim", "release", "cancel", "timeout"])
            if action == "create":
                queue = rng.choice(queues)
                await make_job(store, tags=dict(queue.tags), priority=rng.choice([0, 1, 5]))
            elif action == "claim":
                daemon = f"d{step}"
                job = await store.claim_job(rng.sample(queues, rng.randint(1, 2)), daemon)
                if job is not None:
                    held.append((job.id, daemon))
            elif action == "release" and held:
                job_id, daemon = held.pop(rng.randrange(len(held)))
                await store.release_job(job_id, daemon)
            elif action == "cancel":
                candidates = [job for job in await all_jobs(store) if not job.status.is_terminal]
                if candidates:
                    await store.cancel_job(rng.choice(candidates).id)
            elif action == "timeout":
                cutoff = clock() - rng.randint(0, 20) * 1000
                await store.fail_pending_jobs(rng.choice(queues), cutoff, "old", "UNROUTABLE")
            await check(store)


def _downgrade_sqlite(path: Any) -> None:
    """Undo migration 0006_queue_ranks, as if the previous provd had left the file."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TABLE queue_levels")
        conn.execute("DROP TABLE queue_marks")
        conn.execute("ALTER TABLE jobs DROP COLUMN queue_ordinal")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0006_queue_ranks'")
    finally:
        conn.close()


def _downgrade_postgres(dsn: str) -> None:
    """Undo migration 0005_queue_ranks, as if the previous provd had left the schema."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE queue_levels")
        conn.execute("DROP TABLE queue_marks")
        conn.execute("ALTER TABLE jobs DROP COLUMN queue_ordinal")
        conn.execute("DELETE FROM provd_migrations WHERE name = '0005_queue_ranks'")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)], indirect=True
)
async def test_migration_backfills_the_counters(backend: str, open_store: StoreFactory) -> None:
    """A database from before the counters: its pending and running jobs are counted
    when it is opened, and every path stays exact afterwards (a running job that is
    released included)."""
    async with open_store() as store:
        for priority in (0, 2, 0, 2, 0, 0):
            await make_job(store, priority=priority)
        await make_job(store, tags=dict(OTHER_QUEUE.tags))
        first = await claim(store, [DEFAULT_QUEUE], "d1")
        second = await claim(store, [DEFAULT_QUEUE], "d2")
        jobs = await all_jobs(store)
        await store.cancel_job(jobs[4].id)
    assert isinstance(open_store, partial)
    downgrade = _downgrade_sqlite if backend == "sqlite" else _downgrade_postgres
    await trio.to_thread.run_sync(downgrade, open_store.args[0])
    async with open_store() as store:
        await check(store)
        await store.release_job(first.id, "d1")
        await check(store)
        await claim(store, [DEFAULT_QUEUE], "d3")
        await store.release_job(second.id, "d2")
        await check(store)
        await make_job(store, priority=2)
        await store.cancel_job(jobs[5].id)
        await check(store)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)], indirect=True
)
async def test_two_replicas_at_once(backend: str, open_store: StoreFactory) -> None:
    """Two stores on one database (two replicas), two tasks each, creating, claiming,
    releasing and canceling at once: the counters still equal the count."""
    async with open_store() as one, open_store() as two:
        for _ in range(10):
            await make_job(one)

        async def work(store: Store, name: str, seed: int) -> None:
            rng = random.Random(seed)
            for step in range(25):
                roll = rng.random()
                if roll < 0.35:
                    await make_job(store, priority=rng.choice([0, 1]))
                elif roll < 0.8:
                    daemon = f"{name}-{step}"
                    job = await store.claim_job([DEFAULT_QUEUE], daemon)
                    if job is not None and rng.random() < 0.5:
                        await store.release_job(job.id, daemon)
                else:
                    pending = [
                        job
                        for job in (await store.list_jobs(JobQuery(status=JobStatus.PENDING))).jobs
                        if queue_of(job) == DEFAULT_QUEUE
                    ]
                    if pending:
                        # The other replica may have completed it meanwhile.
                        with contextlib.suppress(FailedPrecondition):
                            await store.cancel_job(rng.choice(pending).id)

        async with trio.open_nursery() as nursery:
            for n in range(4):  # two tasks per store, so claims also race within one
                nursery.start_soon(work, (one, two)[n % 2], f"w{n}", n)
        await check(one)
        await check(two)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_usual_traffic_leaves_no_marks(backend: str, open_store: StoreFactory) -> None:
    """Creates at the tail, claims at the head and releases right after a claim move
    the head and leave no mark, so positions cost the level rows only; marks left by
    cancels in the middle are absorbed once the head reaches them."""
    async with open_store() as store:
        jobs = [await make_job(store) for _ in range(6)]
        held = await claim(store, [DEFAULT_QUEUE], "d1")
        await store.release_job(held.id, "d1")
        await claim(store, [DEFAULT_QUEUE], "d1")
        await store.cancel_job(jobs[3].id)
    assert isinstance(open_store, partial)
    path = open_store.args[0]

    def marks() -> int:
        conn = sqlite3.connect(path)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM queue_marks").fetchone()[0])
        finally:
            conn.close()

    assert await trio.to_thread.run_sync(marks) == 1  # the cancel in the middle
    async with open_store() as store:
        for _ in range(3):
            await claim(store, [DEFAULT_QUEUE], "d2")
        await check(store)
    assert await trio.to_thread.run_sync(marks) == 0
