"""A store whose next claim can be held at the moment the cancel-vs-claim races are
about: after the store locked a job for a daemon, before the scheduler hears of it.

Both ways a job is claimed are gated: a waiting group's claim (`claim_job`) and the
hand-over of a new job to an idle daemon (`create_and_claim_job`). Tests wrap the
real store of a server (`make_server(wrap_store=...)`) or a `MemoryStore`.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from provd.model import Job, NewJob, NewLogLine, Queue
from provd.store import Store


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
