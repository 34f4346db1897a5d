"""fail_hung_jobs and fail_pending_jobs: the statements behind the reapers."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import trio

from provd.model import Job, JobStatus, JobUpdate, Queue
from provd.store import Store

from .conftest import Clock, StoreFactory
from .support import (
    DEFAULT_QUEUE,
    ORG,
    PROVISIONER,
    TAGS,
    claim,
    fetch,
    ids,
    log,
    make_job,
    make_running,
    outputs,
)


class TestFailHungJobs:
    async def test_fails_running_jobs_not_updated_since(self, store: Store, clock: Clock) -> None:
        """Jobs last updated before `updated_before` fail with the error and code given,
        now; one updated exactly at it is not hung (the bound is strict)."""
        hung = await make_running(store, "d1")
        on_the_bound = await make_running(store, "d2")
        bound = clock.advance()
        fresh = await make_running(store, "d3")
        await store.update_job(on_the_bound.id, "d2", JobUpdate())
        now = clock.advance()
        failed = await store.fail_hung_jobs(bound, "no update for 1s", "JOB_HUNG")
        assert failed == [
            dataclasses.replace(
                hung,
                completed_at=now,
                updated_at=now,
                error="no update for 1s",
                error_code="JOB_HUNG",
            )
        ]
        assert failed[0].status is JobStatus.FAILED
        assert await store.get_job(hung.id) == failed[0]
        for job in (on_the_bound, fresh):
            assert (await fetch(store, job.id)).status is JobStatus.RUNNING

    async def test_heartbeat_keeps_a_job_alive(self, store: Store, clock: Clock) -> None:
        job = await make_running(store, "d1")
        clock.advance()
        await store.update_job(job.id, "d1", JobUpdate())
        assert await store.fail_hung_jobs(clock(), "hung", "JOB_HUNG") == []

    async def test_fails_every_hung_job_including_canceling(
        self, store: Store, clock: Clock
    ) -> None:
        """A job asked to cancel whose daemon went quiet is reaped too."""
        running = await make_running(store, "d1")
        canceling = await make_running(store, "d2")
        await store.cancel_job(canceling.id)
        failed = await store.fail_hung_jobs(clock.advance(), "hung", "JOB_HUNG")
        assert sorted(ids(failed)) == sorted([running.id, canceling.id])
        assert all(job.status is JobStatus.FAILED for job in failed)
        assert await store.running_jobs_by_daemon() == {}

    async def test_leaves_pending_and_completed_jobs(self, store: Store, clock: Clock) -> None:
        pending = await make_job(store)
        done = await make_running(store, "d1")
        done = await store.complete_job(done.id, "d1", b"")
        canceled = await store.cancel_job((await make_job(store)).id)
        assert await store.fail_hung_jobs(clock.advance(10**6), "hung", "JOB_HUNG") == []
        for job in (pending, done, canceled):
            assert await store.get_job(job.id) == job

    async def test_appends_logs_to_each_failed_job(self, store: Store, clock: Clock) -> None:
        a = await make_running(store, "d1", logs=[log("queued")])
        b = await make_running(store, "d2")
        await store.fail_hung_jobs(clock.advance(), "hung", "JOB_HUNG", [log("hung"), log("bye")])
        assert await outputs(store, a.id) == ["queued", "hung", "bye"]
        assert await outputs(store, b.id) == ["hung", "bye"]

    async def test_nothing_running_is_an_empty_list(self, store: Store, clock: Clock) -> None:
        assert await store.fail_hung_jobs(clock.advance(), "hung", "JOB_HUNG") == []

    async def test_processes_reaping_at_once_fail_each_job_once(
        self, open_store: StoreFactory, clock: Clock
    ) -> None:
        """Every process runs the hang reaper: four calls at once through two stores on
        one database fail each hung job exactly once, return it to exactly one caller,
        and append its log lines once."""
        async with open_store() as one, open_store() as other:
            hung = [await make_running(one, f"d{n}") for n in range(JOBS_AT_ONCE)]
            bound = clock.advance()
            returned = await at_once(
                [
                    lambda s=s: s.fail_hung_jobs(bound, "hung", "JOB_HUNG", [log("hung")])
                    for s in (one, other, one, other)
                ]
            )
            assert sorted(returned) == sorted(ids(hung))
            for job in hung:
                assert (await fetch(other, job.id)).status is JobStatus.FAILED
                assert await outputs(other, job.id) == ["hung"]


class TestFailPendingJobs:
    async def test_fails_jobs_of_the_queue_created_before(self, store: Store, clock: Clock) -> None:
        """Pending jobs of `queue` created before `created_before` fail with the error
        and code given, now; one created exactly at it stays (the bound is strict)."""
        old = await make_job(store)
        bound = clock.advance()
        on_the_bound = await make_job(store)
        now = clock.advance()
        failed = await store.fail_pending_jobs(
            DEFAULT_QUEUE, bound, "no daemon can run it", "NO_CAPABLE_DAEMON"
        )
        assert failed == [
            dataclasses.replace(
                old,
                completed_at=now,
                updated_at=now,
                error="no daemon can run it",
                error_code="NO_CAPABLE_DAEMON",
            )
        ]
        assert failed[0].status is JobStatus.FAILED
        assert await store.get_job(old.id) == failed[0]
        assert (await fetch(store, on_the_bound.id)).status is JobStatus.PENDING
        assert (await claim(store, [DEFAULT_QUEUE], "d1")).id == on_the_bound.id

    async def test_only_the_given_queue(self, store: Store, clock: Clock) -> None:
        """Jobs of other organizations, provisioners or tags stay pending."""
        target = await make_job(store, tags={**TAGS, "region": "eu"})
        others = [
            await make_job(store, tags=dict(TAGS)),
            await make_job(store, tags={**TAGS, "region": "eu", "gpu": "yes"}),
            await make_job(store, organization="org-b", tags={**TAGS, "region": "eu"}),
            await make_job(store, provisioner="terraform", tags={**TAGS, "region": "eu"}),
        ]
        queue = Queue(ORG, PROVISIONER, {"region": "eu", **TAGS})  # tag order is irrelevant
        failed = await store.fail_pending_jobs(queue, clock.advance(), "x", "CODE")
        assert ids(failed) == [target.id]
        for job in others:
            assert await store.get_job(job.id) == job

    async def test_leaves_running_and_completed_jobs(self, store: Store, clock: Clock) -> None:
        running = await make_job(store)
        canceled = await make_job(store)
        assert (await claim(store, [DEFAULT_QUEUE], "d1")).id == running.id
        canceled = await store.cancel_job(canceled.id)
        running = await fetch(store, running.id)
        assert await store.fail_pending_jobs(DEFAULT_QUEUE, clock.advance(), "x", "CODE") == []
        assert await store.get_job(running.id) == running
        assert await store.get_job(canceled.id) == canceled

    async def test_fails_every_old_job_and_logs_each(self, store: Store, clock: Clock) -> None:
        jobs = [await make_job(store, logs=[log(f"queued {n}")]) for n in range(3)]
        failed = await store.fail_pending_jobs(
            DEFAULT_QUEUE, clock.advance(), "x", "CODE", [log("no daemon")]
        )
        assert sorted(ids(failed)) == sorted(ids(jobs))
        for n, job in enumerate(jobs):
            assert await outputs(store, job.id) == [f"queued {n}", "no daemon"]
        assert await store.claim_job([DEFAULT_QUEUE], "d1") is None
        assert await store.pending_summary() == []

    async def test_processes_reaping_at_once_fail_each_job_once(
        self, open_store: StoreFactory, clock: Clock
    ) -> None:
        """Every process runs the pending reaper: four calls at once through two stores
        on one database fail each old job of the queue exactly once, return it to
        exactly one caller, and append its log line once."""
        async with open_store() as one, open_store() as other:
            old = [await make_job(one) for _ in range(JOBS_AT_ONCE)]
            bound = clock.advance()
            returned = await at_once(
                [
                    lambda s=s: s.fail_pending_jobs(
                        DEFAULT_QUEUE, bound, "x", "CODE", [log("no daemon")]
                    )
                    for s in (one, other, one, other)
                ]
            )
            assert sorted(returned) == sorted(ids(old))
            for job in old:
                assert (await fetch(other, job.id)).status is JobStatus.FAILED
                assert await outputs(other, job.id) == ["no daemon"]


JOBS_AT_ONCE = 40


async def at_once(calls: list[Callable[[], Awaitable[list[Job]]]]) -> list[str]:
    """Start every call at once; the ids of the jobs each returned, all together."""
    returned: list[str] = []

    async def run(call: Callable[[], Awaitable[list[Job]]]) -> None:
        returned.extend(ids(await call()))

    async with trio.open_nursery() as nursery:
        for call in calls:
            nursery.start_soon(run, call)
    return returned
