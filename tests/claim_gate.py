"""A store whose next claim can be held at the moment the cancel-vs-claim races are
about: after the store locked a job for a daemon, before the scheduler hears of it.

Both ways a job is claimed are gated: a waiting group's claim (`claim_job`) and the
hand-over of a new job to an idle daemon (`create_and_claim_job`). Tests wrap the
real store of a server (`make_server(wrap_store=...)`) or a `MemoryStore`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio

from provd.model import Job, NewJob, NewLogLine, Queue
from provd.store import Store
from tests.daemon_clients import Jobs, wait_until

T = TypeVar("T")


class ClaimGate:
    """The store, except that once `armed` the next claim is held (shielded: a claim,
    once made, completes) until `opened` is set; `holding` says it is held, `held` is
    what it claimed. With `only_jobs`, a claim that found nothing is not held."""

    def __init__(self, inner: Store, *, armed: bool = False, only_jobs: bool = False) -> None:
        self._inner = inner
        self.armed = armed
        self._only_jobs = only_jobs
        self.holding = trio.Event()
        self.held: Job | None = None
        self.opened = trio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def claim_job(self, queues: Sequence[Queue], daemon_id: str) -> Job | None:
        job = await self._inner.claim_job(queues, daemon_id)
        await self._hold(job)
        return job

    async def create_and_claim_job(
        self, job: NewJob, logs: Sequence[NewLogLine], daemon_id: str
    ) -> tuple[Job, Job]:
        created, claimed = await self._inner.create_and_claim_job(job, logs, daemon_id)
        await self._hold(claimed)
        return created, claimed

    async def _hold(self, job: Job | None) -> None:
        if not self.armed or (self._only_jobs and job is None):
            return
        self.armed = False
        self.held = job
        self.holding.set()
        with trio.CancelScope(shield=True):
            await self.opened.wait()


# How the job reaches the daemon: claimed by its group's task for a job that was
# pending when it came, or handed over by CreateJob while it waited idle.
PATHS = ["claim", "hand-over"]


async def lock_a_job(
    server,
    gate: ClaimGate,
    jobs: Jobs,
    nursery: trio.Nursery,
    path: str,
    wait: Callable[[], Awaitable[T]],
) -> tuple[T, str]:  # type: ignore[no-untyped-def]
    """Start the daemon's wait (`wait`) and a job, so that a claim locks the job for
    the daemon and is held there; returns what `wait` returned and the job's id."""
    if path == "claim":
        gate.armed = True
        job = await jobs.create()  # nobody waits yet: stored pending
        waiting = await wait()
    else:
        waiting = await wait()
        await wait_until(lambda: server.scheduler.statistics().waiters == 1)
        gate.armed = True
        nursery.start_soon(jobs.create)  # answered once the claim returns
    with trio.fail_after(10):
        await gate.holding.wait()
    assert gate.held is not None
    if path == "claim":
        assert gate.held.id == job.id
    return waiting, gate.held.id
