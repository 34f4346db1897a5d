"""What holds across methods: data survives reopening; a closed store refuses work.

`CALLS` makes one call of every `Store` method; test_groups.py checks it stays complete.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from provd.errors import StoreClosed
from provd.model import (
    Allowance,
    Daemon,
    DaemonKey,
    Job,
    JobQuery,
    JobStatus,
    JobUpdate,
)
from provd.store import Store

from .conftest import StoreFactory
from .support import (
    ARCHIVE,
    DEFAULT_QUEUE,
    TAGS,
    TAR,
    all_jobs,
    claim,
    committed_build,
    fetch,
    log,
    make_job,
    new_job,
    outputs,
    update_logs,
    workspace,
)

DAEMON = Daemon("id-a", "org-a", "a", "", ("echo",), dict(TAGS))
KEY = DaemonKey("key-a", "ci", "org-a", "", ("echo",), dict(TAGS), "0" * 64, 1)

Call = Callable[[Store, Job], Awaitable[object]]
CALLS: dict[str, Call] = {
    "put_file": lambda s, j: s.put_file(b"late", TAR),
    "get_file_info": lambda s, j: s.get_file_info(j.file_hash),
    "get_file_data": lambda s, j: s.get_file_data(j.file_hash),
    "create_job": lambda s, j: s.create_job(new_job(j.file_hash)),
    "create_job_in_line": lambda s, j: s.create_job_in_line(new_job(j.file_hash)),
    "create_and_claim_job": lambda s, j: s.create_and_claim_job(new_job(j.file_hash), [], "d1"),
    "get_job": lambda s, j: s.get_job(j.id),
    "list_jobs": lambda s, j: s.list_jobs(JobQuery()),
    "cancel_job": lambda s, j: s.cancel_job(j.id),
    "claim_job": lambda s, j: s.claim_job([DEFAULT_QUEUE], "d1"),
    "pending_queues": lambda s, j: s.pending_queues(),
    "queue_position": lambda s, j: s.queue_position(j),
    "queue_positions": lambda s, j: s.queue_positions([j]),
    "read_logs": lambda s, j: s.read_logs(j.id),
    "pending_summary": lambda s, j: s.pending_summary(),
    "job_history": lambda s, j: s.job_history(60_000, 60_000),
    "purge_expired": lambda s, j: s.purge_expired(j.created_at + 1, j.created_at + 1, 10),
    "release_job": lambda s, j: s.release_job(j.id, "d1"),
    "update_job": lambda s, j: s.update_job(j.id, "d1", JobUpdate()),
    "complete_job": lambda s, j: s.complete_job(j.id, "d1", b""),
    "fail_job": lambda s, j: s.fail_job(j.id, "d1", "late"),
    "fail_hung_jobs": lambda s, j: s.fail_hung_jobs(j.created_at + 1, "hung", "JOB_HUNG"),
    "fail_pending_jobs": lambda s, j: s.fail_pending_jobs(DEFAULT_QUEUE, j.created_at + 1, "x", ""),
    "running_jobs_by_daemon": lambda s, j: s.running_jobs_by_daemon(),
    "upsert_daemon": lambda s, j: s.upsert_daemon(DAEMON),
    "touch_daemons": lambda s, j: s.touch_daemons({DAEMON.id: j.created_at}),
    "list_daemons": lambda s, j: s.list_daemons(),
    "daemon_presence": lambda s, j: s.daemon_presence(),
    "create_key": lambda s, j: s.create_key(KEY),
    "get_key": lambda s, j: s.get_key(KEY.id),
    "list_keys": lambda s, j: s.list_keys(),
    "delete_key": lambda s, j: s.delete_key(KEY.name),
    "touch_keys": lambda s, j: s.touch_keys({KEY.id: j.created_at}),
    "set_allowance": lambda s, j: s.set_allowance(Allowance("org-a", "user", "u", 1)),
    "delete_allowance": lambda s, j: s.delete_allowance("org-a", "user", "u"),
    "list_allowances": lambda s, j: s.list_allowances("org-a"),
    "quota_usage": lambda s, j: s.quota_usage("org-a", "u", ["g"]),
    "commit_quota": lambda s, j: s.commit_quota(j.id, "d1", 1),
}


class TestReopen:
    async def test_jobs_files_and_logs_survive(self, open_store: StoreFactory) -> None:
        """Files, jobs, states and logs survive closing and reopening the store."""
        async with open_store() as store:
            waiting = await make_job(store, logs=[log("queued")])
            urgent = await make_job(store, priority=3)
            running = await claim(store, [DEFAULT_QUEUE], "w1")
            assert running.id == urgent.id
            await update_logs(store, running, [log("more")])
            jobs_before = await all_jobs(store)
            logs_before = await store.read_logs(urgent.id)

        async with open_store() as store:
            assert await all_jobs(store) == jobs_before
            assert (await fetch(store, urgent.id)).status is JobStatus.RUNNING
            assert (await fetch(store, waiting.id)).status is JobStatus.PENDING
            assert await store.read_logs(urgent.id) == logs_before
            assert [line.output for line in logs_before] == ["more"]
            assert await outputs(store, waiting.id) == ["queued"]
            assert await store.get_file_data(waiting.file_hash) == ARCHIVE
            assert DEFAULT_QUEUE in await store.pending_queues()
            assert (await claim(store, [DEFAULT_QUEUE], "w2")).id == waiting.id
            newer = await make_job(store)
            assert newer.seq > max(job.seq for job in jobs_before)
            line_ids = [line.id for line in await store.read_logs(urgent.id)]
            await update_logs(store, running, [log("after reopening")])
            assert (await store.read_logs(urgent.id))[-1].id > max(line_ids)

    async def test_log_budget_survives(self, open_store: StoreFactory) -> None:
        """The budget a job used, and its single marker, outlive a restart."""
        async with open_store() as store:
            job = await make_job(store)
            job = await claim(store, [DEFAULT_QUEUE], "d1")
            await update_logs(store, job, [log("123456", stage="")], budget=10)
        async with open_store() as store:
            await update_logs(store, job, [log("12345", stage="")], budget=10)
            await update_logs(store, job, [log("more", stage="")], budget=10)
            assert len(await store.read_logs(job.id)) == 2
            assert (await fetch(store, job.id)).logs_overflowed is True

    async def test_daemons_and_quota_survive(self, open_store: StoreFactory) -> None:
        async with open_store() as store:
            await store.upsert_daemon(DAEMON)
            await store.touch_daemons({}, connected_until={DAEMON.id: 1_800_000_000_000})
            await store.set_allowance(Allowance("org-a", "user", "owner-1", 30))
            await committed_build(store, workspace("ws-1", "owner-1"), 12)
            daemons = await store.list_daemons()
            presence = await store.daemon_presence()
        async with open_store() as store:
            assert await store.list_daemons() == daemons
            assert await store.daemon_presence() == presence
            assert await store.list_allowances("org-a") == [
                Allowance("org-a", "user", "owner-1", 30)
            ]
            assert await store.quota_usage("org-a", "owner-1", []) == (12, 30)


class TestClosedStore:
    @pytest.mark.parametrize("method", sorted(CALLS))
    async def test_refuses_every_call(self, open_store: StoreFactory, method: str) -> None:
        """Once closed, every method raises StoreClosed."""
        async with open_store() as store:
            stored = await store.put_file(ARCHIVE, TAR)
            job = await store.create_job(new_job(stored.hash))
        with pytest.raises(StoreClosed):
            await CALLS[method](store, job)

    async def test_reopening_gives_a_working_store(self, open_store: StoreFactory) -> None:
        async with open_store() as store:
            job = await make_job(store)
        with pytest.raises(StoreClosed):
            await store.get_job(job.id)
        async with open_store() as reopened:
            assert await reopened.get_job(job.id) == job
