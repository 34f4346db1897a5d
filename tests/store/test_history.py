"""job_history: the jobs finished per bucket by outcome, and the queue depth over time."""

from __future__ import annotations

import pytest

from provd.model import JobStatus, Queue
from provd.store import HistoryBucket, JobHistory, Store

from .conftest import Clock
from .support import ARCHIVE, DEFAULT_QUEUE, ORG, TAGS, TAR, claim, fetch, make_job, new_job

MINUTE = 60_000
T0 = 1_700_000_040_000  # a whole minute since the epoch
OTHER_ORG = "org-b"
TERRAFORM = Queue(ORG, "terraform", dict(TAGS))


def at(clock: Clock, seconds: int) -> None:
    """Set the stores' clock to `seconds` after T0."""
    clock.ms = T0 + seconds * 1000


def counts(history: JobHistory) -> list[tuple[int, int, int, int]]:
    """(succeeded, failed, canceled, pending) of each bucket, oldest first."""
    return [(b.succeeded, b.failed, b.canceled, b.pending) for b in history.buckets]


async def scripted(store: Store, clock: Clock) -> None:
    """Jobs created, claimed, completed, failed, canceled while pending and while
    running, released back, reaped, created for a waiting daemon, in five minutes
    from T0 (see the expected figures in `test_counts_each_bucket`)."""
    at(clock, -600)  # a backlog from before the window: A, B, C pending
    a, b, c = [await make_job(store) for _ in range(3)]
    x = await make_job(store, provisioner="terraform")
    await claim(store, [TERRAFORM], "d1")
    at(clock, -500)
    await store.complete_job(x.id, "d1", b"")  # finished before the window
    # bucket 0
    at(clock, 5)
    assert (await claim(store, [DEFAULT_QUEUE], "d1")).id == a.id
    at(clock, 10)
    d = await make_job(store)
    at(clock, 20)
    await store.complete_job(a.id, "d1", b"")  # succeeded
    # bucket 1
    at(clock, 65)
    await store.cancel_job(b.id)  # canceled while pending
    at(clock, 70)
    e = await make_job(store)
    at(clock, 75)
    assert (await claim(store, [DEFAULT_QUEUE], "d2")).id == c.id
    at(clock, 80)
    assert await store.release_job(c.id, "d2") is not None  # pending again
    # bucket 2
    at(clock, 125)
    assert (await claim(store, [DEFAULT_QUEUE], "d2")).id == c.id
    at(clock, 130)
    await store.fail_job(c.id, "d2", "boom")  # failed
    at(clock, 135)
    assert (await claim(store, [DEFAULT_QUEUE], "d3")).id == d.id
    at(clock, 140)
    await store.cancel_job(d.id)  # canceling while running: not finished yet
    # bucket 3
    at(clock, 185)
    await store.fail_job(d.id, "d3", "")  # the daemon stopped: canceled
    at(clock, 190)
    f = await make_job(store, provisioner="terraform")
    at(clock, 195)
    (failed,) = await store.fail_pending_jobs(TERRAFORM, T0 + 196_000, "unroutable", "X")
    assert failed.id == f.id  # failed while pending
    at(clock, 200)
    await make_job(store, organization=OTHER_ORG)  # G, pending to the end
    # bucket 4
    at(clock, 245)
    stored = await store.put_file(ARCHIVE, TAR)
    h, taken = await store.create_and_claim_job(new_job(stored.hash), [], "d4")
    assert taken.id == e.id  # E was ahead of the new job H
    at(clock, 250)
    assert (await claim(store, [DEFAULT_QUEUE], "d5")).id == h.id
    at(clock, 255)
    await store.complete_job(h.id, "d5", b"")  # succeeded
    at(clock, 265)
    (hung,) = await store.fail_hung_jobs(T0 + 260_000, "hung", "JOB_HUNG")
    assert hung.id == e.id  # a running job reaped: failed
    at(clock, 270)
    statuses = {job.id: (await fetch(store, job.id)).status for job in (a, b, c, d, e, f, h)}
    assert list(statuses.values()) == [
        JobStatus.SUCCEEDED,
        JobStatus.CANCELED,
        JobStatus.FAILED,
        JobStatus.CANCELED,
        JobStatus.FAILED,
        JobStatus.FAILED,
        JobStatus.SUCCEEDED,
    ]


class TestJobHistory:
    async def test_counts_each_bucket(self, store: Store, clock: Clock) -> None:
        """Per minute: the jobs finished by outcome and the jobs pending at its end,
        the backlog from before the window included, the current minute ending now."""
        await scripted(store, clock)
        history = await store.job_history(5 * MINUTE, MINUTE)
        assert [b.start for b in history.buckets] == [T0 + i * MINUTE for i in range(5)]
        assert counts(history) == [
            (1, 0, 0, 3),  # A succeeded; B, C, D pending
            (0, 0, 1, 3),  # B canceled; C (released), D, E pending
            (0, 1, 0, 1),  # C failed; D canceling; E pending
            (0, 1, 1, 2),  # D canceled, F failed while pending; E, G pending
            (1, 1, 0, 1),  # H succeeded, E reaped; G pending now
        ]
        assert (history.pending, history.bucket_ms, history.read_at) == (1, MINUTE, T0 + 270_000)

    async def test_organization_filter(self, store: Store, clock: Clock) -> None:
        """Only the organization's jobs count, finished and pending alike."""
        await scripted(store, clock)
        history = await store.job_history(5 * MINUTE, MINUTE, ORG)
        assert counts(history) == [
            (1, 0, 0, 3),
            (0, 0, 1, 3),
            (0, 1, 0, 1),
            (0, 1, 1, 1),
            (1, 1, 0, 0),
        ]
        assert history.pending == 0
        other = await store.job_history(5 * MINUTE, MINUTE, OTHER_ORG)
        assert counts(other) == [(0, 0, 0, 0)] * 3 + [(0, 0, 0, 1)] * 2
        assert counts(await store.job_history(5 * MINUTE, MINUTE, "nobody")) == [(0, 0, 0, 0)] * 5

    async def test_wider_buckets_add_up(self, store: Store, clock: Clock) -> None:
        """Buckets of two minutes over six: aligned to the epoch, each the sum of its
        minutes; the pending count is the one at its end."""
        await scripted(store, clock)
        history = await store.job_history(6 * MINUTE, 2 * MINUTE)
        assert [b.start for b in history.buckets] == [T0, T0 + 2 * MINUTE, T0 + 4 * MINUTE]
        assert counts(history) == [(1, 0, 1, 3), (0, 2, 1, 2), (1, 1, 0, 1)]
        assert history.buckets[-1].start + 2 * MINUTE > history.read_at

    async def test_empty_window(self, store: Store, clock: Clock) -> None:
        """No jobs: every bucket is empty; the window is rounded up to whole buckets."""
        at(clock, 30)
        history = await store.job_history(150_000, MINUTE)
        assert history.buckets == (
            HistoryBucket(T0 - 2 * MINUTE),
            HistoryBucket(T0 - MINUTE),
            HistoryBucket(T0),
        )
        assert (history.pending, history.read_at) == (0, T0 + 30_000)

    async def test_jobs_before_the_window(self, store: Store, clock: Clock) -> None:
        """Jobs finished before the window do not count; jobs pending since before it
        count in every bucket."""
        at(clock, -3600)
        done = await make_job(store)
        await claim(store, [DEFAULT_QUEUE], "d1")
        await store.complete_job(done.id, "d1", b"")
        for _ in range(3):
            await make_job(store)
        at(clock, 30)
        history = await store.job_history(10 * MINUTE, MINUTE)
        assert counts(history) == [(0, 0, 0, 3)] * 10

    async def test_a_released_job_counts_as_pending_throughout(
        self, store: Store, clock: Clock
    ) -> None:
        """A job given back keeps no claim time: while it was claimed, it still counts
        as pending (the figure the docstring promises)."""
        at(clock, 0)
        job = await make_job(store)
        at(clock, 50)
        await claim(store, [DEFAULT_QUEUE], "d1")
        at(clock, 70)
        await store.release_job(job.id, "d1")
        at(clock, 130)
        assert counts(await store.job_history(3 * MINUTE, MINUTE)) == [(0, 0, 0, 1)] * 3

    async def test_a_claim_in_a_later_bucket(self, store: Store, clock: Clock) -> None:
        """A job counts as pending from its creation to its claim, in every bucket
        in between, and not after."""
        at(clock, 10)
        await make_job(store)
        at(clock, 130)
        await claim(store, [DEFAULT_QUEUE], "d1")
        at(clock, 190)
        assert counts(await store.job_history(4 * MINUTE, MINUTE)) == [
            (0, 0, 0, 1),
            (0, 0, 0, 1),
            (0, 0, 0, 0),
            (0, 0, 0, 0),
        ]

    @pytest.mark.parametrize(("window_ms", "bucket_ms"), [(MINUTE, 0), (MINUTE, 2 * MINUTE)])
    async def test_refuses_a_bucket_outside_the_window(
        self, store: Store, window_ms: int, bucket_ms: int
    ) -> None:
        """A bucket must be at least a millisecond and no wider than the window."""
        with pytest.raises(ValueError, match="bucket_ms"):
            await store.job_history(window_ms, bucket_ms)
