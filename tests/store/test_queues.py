"""claim_job, pending_queues, queue_position and pending_summary: the queues."""

from __future__ import annotations

import pytest
import trio

from provd.errors import NotFound
from provd.model import Job, JobStatus, PendingSummary, Queue, QueuePosition, tags_key
from provd.store import Store

from .conftest import Clock
from .support import (
    ARCHIVE,
    DEFAULT_QUEUE,
    ORG,
    PROVISIONER,
    TAGS,
    TAR,
    all_jobs,
    claim,
    fetch,
    ids,
    log,
    make_job,
    new_job,
    outputs,
    queue_of,
)

EU = Queue(ORG, PROVISIONER, {**TAGS, "region": "eu"})


def key(queue: Queue) -> tuple[str, str, str]:
    return (queue.organization, queue.provisioner, tags_key(queue.tags))


class TestClaimJob:
    async def test_no_queues_is_none(self, store: Store) -> None:
        """claim_job with an empty queue list returns None and claims nothing."""
        job = await make_job(store)
        assert await store.claim_job([], "w1") is None
        assert (await fetch(store, job.id)).status is JobStatus.PENDING

    async def test_nothing_pending_is_none(self, store: Store) -> None:
        """claim_job returns None when no job is pending."""
        assert await store.claim_job([DEFAULT_QUEUE], "w1") is None
        job = await make_job(store)
        await store.claim_job([DEFAULT_QUEUE], "w1")
        assert await store.claim_job([DEFAULT_QUEUE], "w2") is None
        assert (await fetch(store, job.id)).daemon_id == "w1"

    async def test_sets_started_updated_and_daemon(self, store: Store, clock: Clock) -> None:
        """A claimed job is RUNNING, started and updated now, held by the daemon."""
        job = await make_job(store)
        now = clock.advance()
        claimed = await store.claim_job([DEFAULT_QUEUE], "worker-7")
        assert claimed is not None and claimed.id == job.id
        assert claimed.status is JobStatus.RUNNING
        assert claimed.daemon_id == claimed.holder_id == "worker-7"
        assert claimed.started_at == claimed.updated_at == now
        assert claimed.created_at == job.created_at
        assert claimed.seq == job.seq
        assert claimed.canceled_at is None and claimed.completed_at is None
        assert await store.get_job(job.id) == claimed

    async def test_takes_higher_priority_first(self, store: Store) -> None:
        """Among pending jobs of a queue the highest priority is claimed first."""
        low = await make_job(store, priority=0)
        high = await make_job(store, priority=10)
        mid = await make_job(store, priority=5)
        negative = await make_job(store, priority=-3)
        order = [(await claim(store, [DEFAULT_QUEUE], "w")).id for _ in range(4)]
        assert order == [high.id, mid.id, low.id, negative.id]

    async def test_takes_oldest_among_equal_priority(self, store: Store) -> None:
        """Among jobs of equal priority the oldest is claimed first."""
        jobs = [await make_job(store) for _ in range(4)]
        order = [(await claim(store, [DEFAULT_QUEUE], "w")).id for _ in range(4)]
        assert order == ids(jobs)

    async def test_only_from_given_queues(self, store: Store) -> None:
        """claim_job takes no job whose organization, provisioner or tags differ."""
        job = await make_job(store, tags={**TAGS, "region": "eu"})
        misses = [
            Queue("other-org", PROVISIONER, {**TAGS, "region": "eu"}),
            Queue(ORG, "terraform", {**TAGS, "region": "eu"}),
            Queue(ORG, PROVISIONER, dict(TAGS)),  # job tags are a superset
            Queue(ORG, PROVISIONER, {**TAGS, "region": "eu", "gpu": "yes"}),  # a subset
            Queue(ORG, PROVISIONER, {**TAGS, "region": "us"}),
        ]
        assert await store.claim_job(misses, "w1") is None
        assert (await fetch(store, job.id)).status is JobStatus.PENDING
        claimed = await store.claim_job([queue_of(job)], "w1")
        assert claimed is not None and claimed.id == job.id

    async def test_tag_order_does_not_matter(self, store: Store) -> None:
        """A queue matches a job whose tags are equal, whatever their insertion order."""
        job = await make_job(store, tags={"region": "eu", "scope": "organization", "owner": ""})
        queue = Queue(ORG, PROVISIONER, {"owner": "", "scope": "organization", "region": "eu"})
        claimed = await store.claim_job([queue], "w1")
        assert claimed is not None and claimed.id == job.id

    async def test_claimed_job_is_never_claimed_again(self, store: Store) -> None:
        """Once claimed, a job is not returned by any later claim."""
        first = await make_job(store)
        second = await make_job(store)
        assert (await claim(store, [DEFAULT_QUEUE], "w1")).id == first.id
        assert (await claim(store, [DEFAULT_QUEUE], "w2")).id == second.id
        assert await store.claim_job([DEFAULT_QUEUE], "w3") is None
        assert (await fetch(store, first.id)).daemon_id == "w1"

    async def test_picks_best_head_across_queues(self, store: Store) -> None:
        """With several queues, claim_job takes the best head: priority, then age."""
        eu_tags = {**TAGS, "region": "eu"}
        us_tags = {**TAGS, "region": "us"}
        eu_old = await make_job(store, tags=eu_tags, priority=1)
        us_old = await make_job(store, tags=us_tags, priority=1)
        eu_new = await make_job(store, tags=eu_tags, priority=1)
        us_high = await make_job(store, tags=us_tags, priority=5)
        other = await make_job(store, tags={**TAGS, "region": "ap"}, priority=9)
        queues = [Queue(ORG, PROVISIONER, eu_tags), Queue(ORG, PROVISIONER, us_tags)]
        order = [(await claim(store, queues, "w")).id for _ in range(4)]
        assert order == [us_high.id, eu_old.id, us_old.id, eu_new.id]
        assert await store.claim_job(queues, "w") is None
        assert (await fetch(store, other.id)).status is JobStatus.PENDING

    async def test_skips_jobs_that_left_the_queue(self, store: Store, clock: Clock) -> None:
        """Pending jobs that were canceled or failed are not claimed; the next one is."""
        canceled = await make_job(store, priority=9)
        failed = await make_job(store, priority=8)
        clock.advance()
        waiting = await make_job(store)
        await store.cancel_job(canceled.id)
        reaped = await store.fail_pending_jobs(DEFAULT_QUEUE, waiting.created_at, "gone", "")
        assert ids(reaped) == [failed.id]
        assert (await claim(store, [DEFAULT_QUEUE], "w")).id == waiting.id
        assert await store.claim_job([DEFAULT_QUEUE], "w") is None

    async def test_concurrent_claims_take_each_job_once(self, store: Store) -> None:
        """30 concurrent claims on 10 pending jobs: each job once, 20 get None."""
        jobs = [await make_job(store) for _ in range(10)]
        results: list[Job | None] = []

        async def claim_one(daemon: int) -> None:
            results.append(await store.claim_job([DEFAULT_QUEUE], f"w{daemon}"))

        async with trio.open_nursery() as nursery:
            for daemon in range(30):
                nursery.start_soon(claim_one, daemon)

        claimed = [job for job in results if job is not None]
        assert len(results) == 30
        assert results.count(None) == 20
        assert sorted(ids(claimed)) == sorted(ids(jobs))
        assert len({job.daemon_id for job in claimed}) == 10
        for job in claimed:
            assert await store.get_job(job.id) == job

    async def test_a_cancelled_caller_still_gets_its_job(self, store: Store) -> None:
        """A claim asked for inside a cancelled scope still happens and returns its job:
        a claimed job is never lost between the store and its caller."""
        job = await make_job(store)
        with trio.CancelScope() as scope:
            scope.cancel()
            claimed = await store.claim_job([DEFAULT_QUEUE], "w1")
        assert claimed is not None and claimed.id == job.id
        assert (await fetch(store, job.id)).daemon_id == "w1"


class TestCreateAndClaimJob:
    """create_and_claim_job: a new job for a daemon already waiting, in one transaction."""

    async def test_an_empty_queue_hands_over_the_new_job(self, store: Store, clock: Clock) -> None:
        stored = await store.put_file(ARCHIVE, TAR)
        created, claimed = await store.create_and_claim_job(
            new_job(stored.hash), [log("queued")], "w1"
        )
        assert created == claimed
        assert (claimed.status, claimed.daemon_id, claimed.started_at) == (
            JobStatus.RUNNING,
            "w1",
            clock(),
        )
        assert await fetch(store, claimed.id) == claimed
        assert await outputs(store, claimed.id) == ["queued"]
        assert await store.queue_position(claimed) == QueuePosition(0, 0)
        assert await store.claim_job([DEFAULT_QUEUE], "w2") is None

    async def test_a_job_ahead_in_the_queue_goes_first(self, store: Store) -> None:
        """An older job, or one of higher priority, is claimed instead; the new job
        stays pending, next in line."""
        older = await make_job(store)
        urgent = await make_job(store, priority=5)
        stored = await store.put_file(ARCHIVE, TAR)
        created, claimed = await store.create_and_claim_job(new_job(stored.hash), [], "w1")
        assert claimed.id == urgent.id and claimed.daemon_id == "w1"
        assert created.status is JobStatus.PENDING
        assert await store.queue_positions([older, created]) == [
            QueuePosition(1, 2),
            QueuePosition(2, 2),
        ]
        assert ids([await claim(store, [DEFAULT_QUEUE], "w2")]) == [older.id]
        assert ids([await claim(store, [DEFAULT_QUEUE], "w3")]) == [created.id]

    async def test_only_the_new_jobs_queue(self, store: Store) -> None:
        """A pending job of another queue is not the new job's business."""
        elsewhere = await make_job(store, tags=dict(EU.tags))
        stored = await store.put_file(ARCHIVE, TAR)
        created, claimed = await store.create_and_claim_job(new_job(stored.hash), [], "w1")
        assert created.id == claimed.id
        assert (await fetch(store, elsewhere.id)).status is JobStatus.PENDING

    async def test_a_missing_file_stores_and_claims_nothing(self, store: Store) -> None:
        waiting = await make_job(store)
        with pytest.raises(NotFound):
            await store.create_and_claim_job(new_job("0" * 64), [log("queued")], "w1")
        assert ids(await all_jobs(store)) == [waiting.id]
        assert (await fetch(store, waiting.id)).status is JobStatus.PENDING


class TestPendingQueues:
    async def test_lists_queues_of_created_jobs(self, store: Store) -> None:
        """pending_queues holds the (organization, provisioner, tags) of each created
        job, once each."""
        assert await store.pending_queues() == []
        a = await make_job(store)
        b = await make_job(store, organization="org-b", provisioner="terraform")
        c = await make_job(store, tags={"region": "eu", **TAGS})
        await make_job(store)  # same queue as `a`
        queues = await store.pending_queues()
        assert sorted(map(key, queues)) == sorted(map(key, map(queue_of, (a, b, c))))

    async def test_keeps_queues_that_emptied(self, store: Store) -> None:
        """A queue stays listed after its jobs were claimed or canceled: the list is a
        superset of the non-empty queues."""
        claimed = await make_job(store)
        canceled = await make_job(store, tags={**TAGS, "region": "eu"})
        await claim(store, [DEFAULT_QUEUE], "w1")
        await store.cancel_job(canceled.id)
        queues = await store.pending_queues()
        assert sorted(map(key, queues)) == sorted(map(key, map(queue_of, (claimed, canceled))))

    async def test_tags_come_back_as_stored(self, store: Store) -> None:
        """A listed queue claims its jobs: its tags equal theirs."""
        job = await make_job(store, tags={"region": "eu", **TAGS})
        (queue,) = await store.pending_queues()
        assert queue == queue_of(job)
        claimed = await store.claim_job([queue], "w1")
        assert claimed is not None and claimed.id == job.id


class TestQueuePosition:
    async def test_counts_pending_jobs_of_same_queue(self, store: Store) -> None:
        """A pending job's position is 1-based among pending jobs of its queue only."""
        first = await make_job(store)
        await make_job(store, tags={**TAGS, "region": "eu"})  # another queue
        await make_job(store, organization="org-b")  # another queue
        second = await make_job(store)
        third = await make_job(store)
        assert await store.queue_position(first) == QueuePosition(1, 3)
        assert await store.queue_position(second) == QueuePosition(2, 3)
        assert await store.queue_position(third) == QueuePosition(3, 3)

    async def test_honours_priority(self, store: Store) -> None:
        """A higher-priority job is ahead of older ones of lower priority."""
        old = await make_job(store, priority=0)
        urgent = await make_job(store, priority=5)
        newer = await make_job(store, priority=0)
        assert await store.queue_position(urgent) == QueuePosition(1, 3)
        assert await store.queue_position(old) == QueuePosition(2, 3)
        assert await store.queue_position(newer) == QueuePosition(3, 3)

    async def test_moves_up_as_jobs_leave(self, store: Store) -> None:
        """Claimed and canceled jobs no longer count in their queue."""
        first = await make_job(store)
        second = await make_job(store)
        third = await make_job(store)
        await store.claim_job([DEFAULT_QUEUE], "w1")
        await store.cancel_job(second.id)
        assert (await fetch(store, first.id)).status is JobStatus.RUNNING
        assert await store.queue_position(third) == QueuePosition(1, 1)

    async def test_is_zero_once_started(self, store: Store) -> None:
        """A running job's queue position is (0, 0)."""
        job = await make_job(store)
        await make_job(store)
        claimed = await store.claim_job([DEFAULT_QUEUE], "w1")
        assert claimed is not None and claimed.id == job.id
        assert await store.queue_position(claimed) == QueuePosition(0, 0)

    async def test_is_zero_once_completed(self, store: Store) -> None:
        """A completed (canceled) job's queue position is (0, 0)."""
        job = await make_job(store)
        await make_job(store)
        canceled = await store.cancel_job(job.id)
        assert await store.queue_position(canceled) == QueuePosition(0, 0)


class TestPendingSummary:
    async def test_empty_store_has_none(self, store: Store) -> None:
        assert await store.pending_summary() == []

    async def test_counts_and_oldest_per_queue(self, store: Store, clock: Clock) -> None:
        """Each queue with pending jobs: how many, and the oldest one's created_at
        (whatever the priorities); empty queues are left out."""
        oldest = await make_job(store)
        clock.advance()
        await make_job(store, priority=9)
        clock.advance()
        eu = await make_job(store, tags=EU.tags)
        clock.advance()
        await make_job(store, tags=EU.tags)
        emptied = await make_job(store, organization="org-b")
        await store.cancel_job(emptied.id)
        summaries = {key(s.queue): s for s in await store.pending_summary()}
        assert summaries == {
            key(DEFAULT_QUEUE): PendingSummary(DEFAULT_QUEUE, 2, oldest.created_at),
            key(EU): PendingSummary(EU, 2, eu.created_at),
        }

    async def test_only_pending_jobs_count(self, store: Store, clock: Clock) -> None:
        """Running, canceled and failed jobs leave the summary; the oldest moves on."""
        running = await make_job(store)
        clock.advance()
        canceled = await make_job(store)
        clock.advance()
        waiting = await make_job(store)
        assert (await claim(store, [DEFAULT_QUEUE], "w1")).id == running.id
        await store.cancel_job(canceled.id)
        assert await store.pending_summary() == [
            PendingSummary(DEFAULT_QUEUE, 1, waiting.created_at)
        ]
        await store.fail_pending_jobs(DEFAULT_QUEUE, clock.advance(), "gone", "")
        assert await store.pending_summary() == []
