"""purge_expired: retention deletes old completed jobs, their logs and unused files."""

from __future__ import annotations

import trio

from provd.model import Job, JobStatus
from provd.store import Purged, Store

from .conftest import Clock, StoreFactory
from .support import (
    ARCHIVE,
    TAR,
    all_jobs,
    committed_build,
    fetch,
    log,
    make_job,
    make_running,
    new_job,
    update_logs,
    workspace,
)

HOUR = 3_600_000


async def succeeded(store: Store, lines: int = 2, **overrides: object) -> Job:
    """A job that ran, logged `lines` lines (plus the one it was created with) and
    succeeded."""
    job = await make_running(store, logs=[log("queued")], **overrides)
    await update_logs(store, job, [log(f"line {n}") for n in range(lines)])
    return await store.complete_job(job.id, "d1", b"done")


async def failed(store: Store) -> Job:
    job = await make_running(store)
    return await store.fail_job(job.id, "d1", "it broke", logs=[log("failing")])


async def canceled(store: Store) -> Job:
    job = await make_job(store, logs=[log("queued")])
    return await store.cancel_job(job.id, [log("canceled")])


class TestPurgeExpired:
    async def test_deletes_old_completed_jobs_with_their_logs(
        self, store: Store, clock: Clock
    ) -> None:
        """Succeeded, failed and canceled jobs that completed before the cut-off go,
        with every log line; get_job and read_logs then find nothing."""
        old = [await succeeded(store), await failed(store), await canceled(store)]
        assert [job.status for job in old] == [
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELED,
        ]
        logs = sum([len(await store.read_logs(job.id)) for job in old])
        clock.advance(HOUR)
        purged = await store.purge_expired(clock(), clock() - HOUR, 100)
        assert purged == Purged(jobs=3, logs=logs, files=0)  # the file is still fresh
        for job in old:
            assert await store.get_job(job.id) is None
            assert await store.read_logs(job.id) == []
        assert await all_jobs(store) == []

    async def test_keeps_unfinished_and_recent_jobs(self, store: Store, clock: Clock) -> None:
        """Pending, running and canceling jobs stay however old; so does a job that
        completed at or after the cut-off."""
        pending = await make_job(store, logs=[log("queued")])
        running = await make_running(store)
        canceling = await store.cancel_job((await make_running(store, "d2")).id)
        assert canceling.status is JobStatus.CANCELING
        old = await succeeded(store)
        cutoff = clock.advance(HOUR)
        recent = await succeeded(store)
        clock.advance(HOUR)
        assert await store.purge_expired(cutoff, 0, 100) == Purged(jobs=1, logs=3)
        kept = {job.id for job in await all_jobs(store)}
        assert kept == {pending.id, running.id, canceling.id, recent.id}
        assert old.id not in kept
        assert len(await store.read_logs(recent.id)) == 3
        assert len(await store.read_logs(pending.id)) == 1

    async def test_batches_oldest_first_and_is_idempotent(self, store: Store, clock: Clock) -> None:
        """At most `limit` jobs per call, those that completed first; calls after the
        last find nothing to do."""
        jobs = []
        for _ in range(5):
            jobs.append(await succeeded(store, lines=0))
            clock.advance()
        cutoff = clock.advance(HOUR)
        first = await store.purge_expired(cutoff, 0, 2)
        assert (first.jobs, first.files) == (2, 0)  # a full batch leaves files for later
        assert {job.id for job in await all_jobs(store)} == {job.id for job in jobs[2:]}
        assert (await store.purge_expired(cutoff, 0, 2)).jobs == 2
        assert (await store.purge_expired(cutoff, 0, 2)).jobs == 1
        assert await store.purge_expired(cutoff, 0, 2) == Purged()
        assert await all_jobs(store) == []

    async def test_keeps_the_latest_build_of_each_workspace(
        self, store: Store, clock: Clock
    ) -> None:
        """Quota counts the latest build of each workspace, so it stays, and with it
        the owner's consumption; older builds go."""
        ws = workspace("ws-1", "owner-1")
        older = await committed_build(store, ws, 5)
        latest = await committed_build(store, ws, 7)
        other = await committed_build(store, workspace("ws-2", "owner-1"), 3)
        clock.advance(HOUR)
        assert (await store.purge_expired(clock(), 0, 100)).jobs == 1
        assert await store.get_job(older.id) is None
        assert await fetch(store, latest.id) == latest
        assert await fetch(store, other.id) == other
        assert await store.quota_usage("org-a", "owner-1", []) == (10, -1)

    async def test_removes_files_no_job_uses(self, store: Store, clock: Clock) -> None:
        """Once their jobs are gone, files older than `files_before` go; a file that
        a remaining job uses stays, and so does a fresh upload no job uses yet."""
        gone = await store.put_file(b"archive of deleted jobs", TAR)
        job = await store.create_job(new_job(gone.hash))
        await store.cancel_job(job.id)
        used = await store.put_file(ARCHIVE, TAR)
        pending = await store.create_job(new_job(used.hash))
        clock.advance(HOUR)
        fresh = await store.put_file(b"uploaded, its job not created yet", TAR)
        purged = await store.purge_expired(clock(), clock() - 1, 100)
        assert purged == Purged(jobs=1, logs=0, files=1)
        assert await store.get_file_info(gone.hash) is None
        assert await store.get_file_data(used.hash) == ARCHIVE
        assert await store.get_file_info(fresh.hash) == fresh
        # The fresh upload's job can still be created, and the store goes on working.
        later = await store.create_job(new_job(fresh.hash))
        assert await fetch(store, later.id) == later
        assert await fetch(store, pending.id) == pending
        # Past its grace period, an unused upload goes too.
        await store.cancel_job(later.id)
        clock.advance(HOUR)
        assert await store.purge_expired(clock(), clock(), 100) == Purged(jobs=1, files=1)
        assert await store.get_file_info(fresh.hash) is None

    async def test_a_deleted_file_can_be_uploaded_again(self, store: Store, clock: Clock) -> None:
        stored = await store.put_file(ARCHIVE, TAR)
        clock.advance(HOUR)
        assert (await store.purge_expired(clock(), clock(), 100)).files == 1
        with_job = await make_job(store)
        assert with_job.file_hash == stored.hash
        assert await store.get_file_data(stored.hash) == ARCHIVE

    async def test_new_logs_after_a_purge(self, store: Store, clock: Clock) -> None:
        """Jobs and log lines written after a purge read back in order."""
        await succeeded(store, lines=3)
        clock.advance(HOUR)
        await store.purge_expired(clock(), 0, 100)
        job = await make_running(store, logs=[log("queued")])
        await update_logs(store, job, [log("a"), log("b")])
        lines = await store.read_logs(job.id)
        assert [line.output for line in lines] == ["queued", "a", "b"]
        assert [line.id for line in lines] == sorted({line.id for line in lines})
        assert len(await store.read_logs(job.id, after=lines[0].id)) == 2

    async def test_concurrent_purges_delete_each_job_once(
        self, open_store: StoreFactory, clock: Clock
    ) -> None:
        """Two stores on one database (two processes) purging at once delete every
        expired job once between them."""
        async with open_store() as store, open_store() as other:
            for _ in range(12):
                await succeeded(store, lines=1)
            clock.advance(HOUR)
            results: list[Purged] = []

            async def purge(on: Store) -> None:
                while (purged := await on.purge_expired(clock(), 0, 2)).jobs:
                    results.append(purged)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(purge, store)
                nursery.start_soon(purge, other)
            assert sum(r.jobs for r in results) == 12
            assert sum(r.logs for r in results) == 24
            assert await all_jobs(store) == []
