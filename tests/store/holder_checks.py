"""The holder check shared by update_job, complete_job, fail_job and commit_quota.

Each of those calls first checks that the calling daemon holds the job: `NotFound` for
an unknown job, `PermissionDenied` if another daemon or nobody holds it (pending,
released, canceled before it started, finished by another daemon), and
`FailedPrecondition` if it holds a job that already completed. A refused call changes
nothing. A group subclasses `HolderChecks` and says how to make its call.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from provd.errors import FailedPrecondition, NotFound, PermissionDenied, ProvdError
from provd.store import Store

from .conftest import Clock
from .support import make_build, make_running_build, queue_of

DAEMON = "d1"  # the daemon that makes the refused call


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Store, Clock], Awaitable[str]]  # returns the job id to call with
    error: type[ProvdError]


async def _unknown(store: Store, clock: Clock) -> str:
    await make_running_build(store, daemon_id=DAEMON)
    return str(uuid.uuid4())


async def _pending(store: Store, clock: Clock) -> str:
    return (await make_build(store)).id


async def _held_by_another(store: Store, clock: Clock) -> str:
    return (await make_running_build(store, daemon_id="d2")).id


async def _released(store: Store, clock: Clock) -> str:
    job = await make_running_build(store, daemon_id=DAEMON)
    assert await store.release_job(job.id, DAEMON) is not None
    return job.id


async def _canceled_while_pending(store: Store, clock: Clock) -> str:
    job = await make_build(store)
    await store.cancel_job(job.id)
    return job.id


async def _completed_by_another(store: Store, clock: Clock) -> str:
    job = await make_running_build(store, daemon_id="d2")
    await store.complete_job(job.id, "d2", b"done")
    return job.id


async def _released_then_claimed_by_another(store: Store, clock: Clock) -> str:
    job = await make_running_build(store, daemon_id=DAEMON)
    await store.release_job(job.id, DAEMON)
    again = await store.claim_job([queue_of(job)], "d2")
    assert again is not None and again.id == job.id
    return job.id


async def _succeeded(store: Store, clock: Clock) -> str:
    job = await make_running_build(store, daemon_id=DAEMON)
    await store.complete_job(job.id, DAEMON, b"done")
    return job.id


async def _failed(store: Store, clock: Clock) -> str:
    job = await make_running_build(store, daemon_id=DAEMON)
    await store.fail_job(job.id, DAEMON, "boom")
    return job.id


async def _canceled(store: Store, clock: Clock) -> str:
    job = await make_running_build(store, daemon_id=DAEMON)
    await store.cancel_job(job.id)
    await store.fail_job(job.id, DAEMON, "")
    return job.id


async def _failed_as_hung(store: Store, clock: Clock) -> str:
    job = await make_running_build(store, daemon_id=DAEMON)
    (hung,) = await store.fail_hung_jobs(clock.advance(), "hung", "JOB_HUNG")
    assert hung.id == job.id
    return job.id


CASES = [
    Case("unknown job", _unknown, NotFound),
    Case("pending, never claimed", _pending, PermissionDenied),
    Case("held by another daemon", _held_by_another, PermissionDenied),
    Case("released to its queue", _released, PermissionDenied),
    Case("released, then claimed by another", _released_then_claimed_by_another, PermissionDenied),
    Case("canceled while pending", _canceled_while_pending, PermissionDenied),
    Case("completed by another daemon", _completed_by_another, PermissionDenied),
    Case("succeeded", _succeeded, FailedPrecondition),
    Case("failed", _failed, FailedPrecondition),
    Case("canceled", _canceled, FailedPrecondition),
    Case("failed as hung", _failed_as_hung, FailedPrecondition),
]


class HolderChecks:
    """The holder-check tests of one daemon-protocol method."""

    async def call(self, store: Store, job_id: str, daemon_id: str) -> object:
        """Make the group's call, with log lines and changes if it takes any."""
        raise NotImplementedError

    @pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
    async def test_holder_check(self, store: Store, clock: Clock, case: Case) -> None:
        """A daemon that does not hold the job gets the error that says why, and the
        job and its logs stay as they were."""
        job_id = await case.make(store, clock)
        before = await store.get_job(job_id)
        logs_before = await store.read_logs(job_id)
        clock.advance()
        with pytest.raises(ProvdError) as raised:
            await self.call(store, job_id, DAEMON)
        assert type(raised.value) is case.error
        assert await store.get_job(job_id) == before
        assert await store.read_logs(job_id) == logs_before
