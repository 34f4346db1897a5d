"""The races of AcquireJobWithCancel, forced deterministically where they matter:
a cancel that arrives while a job is being locked, a daemon that vanishes after
its job was locked, and a storm of daemons and jobs. No test sleeps to order events:
a held claim makes the moment, and the server's scheduler statistics prove that it
saw what the test needs (the cancel, the vanished stream, an empty claim) before the
test goes on. Every test runs over the HTTP/2 stream and over the WebSocket
transport."""

from __future__ import annotations

from collections import Counter
from typing import TypeVar

import pytest
import trio

from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.store import Store
from tests.claim_gate import PATHS, ClaimGate, lock_a_job
from tests.daemon_clients import Acquisition, Jobs, TestDaemon, wait_until
from tests.raw_h2 import VanishingDaemon, VanishingWebSocketDaemon

T = TypeVar("T")


@pytest.fixture(params=["connect", "websocket"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def gated_server(make_server) -> tuple[object, ClaimGate]:  # type: ignore[no-untyped-def]
    gates: list[ClaimGate] = []

    def wrap(store: Store) -> Store:
        gates.append(ClaimGate(store, only_jobs=True))
        return gates[0]  # type: ignore[return-value]

    server = await make_server(wrap_store=wrap)
    return server, gates[0]


@pytest.mark.parametrize("path", PATHS)
async def test_cancel_while_the_job_is_being_locked_still_sends_the_job(
    make_server, nursery: trio.Nursery, transport: str, path: str
) -> None:  # type: ignore[no-untyped-def]
    server, gate = await gated_server(make_server)
    jobs = Jobs(server)
    daemon = TestDaemon(server, "d1", transport=transport)
    acquisition, job_id = await lock_a_job(
        server, gate, jobs, nursery, path, lambda: daemon.acquire(nursery)
    )
    acquisition.requests.cancel()  # arrives while the job is locked but not yet handed over
    # The server read the cancel while the claim was in flight, and waits for the claim.
    await wait_until(lambda: server.scheduler.statistics().cancels_during_claim == 1)
    assert not acquisition.ended.is_set()
    gate.opened.set()
    acquired = await acquisition.wait()
    assert acquired.job_id == job_id  # the job won the race: the daemon must run it
    held = await jobs.get(job_id)
    assert held.status == pb.JOB_STATUS_RUNNING
    await daemon.complete(job_id)
    assert (await jobs.get(job_id)).status == pb.JOB_STATUS_SUCCEEDED


@pytest.mark.parametrize("path", PATHS)
async def test_daemon_vanishing_after_its_job_was_locked_returns_the_job(
    make_server, nursery: trio.Nursery, transport: str, path: str
) -> None:  # type: ignore[no-untyped-def]
    server, gate = await gated_server(make_server)
    jobs = Jobs(server)
    vanishing = VanishingWebSocketDaemon if transport == "websocket" else VanishingDaemon
    ghost = vanishing(server.url, "ghost")
    _, job_id = await lock_a_job(server, gate, jobs, nursery, path, ghost.open_acquire)
    assert (await jobs.get(job_id)).status == pb.JOB_STATUS_RUNNING  # locked for the ghost
    await ghost.vanish()
    # The server noticed the connection is gone while the claim was in flight.
    await wait_until(lambda: server.scheduler.statistics().cancels_during_claim == 1)
    gate.armed = False
    gate.opened.set()
    # Nothing was sent, so nothing ran: the job is pending again, and says why.
    await wait_until(lambda: server.scheduler.statistics().released == 1)
    assert (await jobs.get(job_id)).status == pb.JOB_STATUS_PENDING
    lines = [line.output for line in await jobs.logs(job_id)]
    assert any("went away before" in line for line in lines), lines
    # ... and it is first in line for the next daemon.
    later = await jobs.create()
    acquired = await (await TestDaemon(server, "d2", transport=transport).acquire(nursery)).wait()
    assert acquired.job_id == job_id
    assert (await jobs.get(later.id)).status == pb.JOB_STATUS_PENDING


async def test_job_handed_over_belongs_to_the_daemon_even_if_it_vanishes(
    server, nursery: trio.Nursery, transport: str
) -> None:  # type: ignore[no-untyped-def]
    """Once sent, a job is never re-delivered (terraform is not idempotent)."""
    jobs = Jobs(server)
    job = await jobs.create()
    acquired = await (await TestDaemon(server, "d1", transport=transport).acquire(nursery)).wait()
    assert acquired.job_id == job.id
    empty_claims = server.scheduler.statistics().claims_empty
    other = await TestDaemon(server, "d2", transport=transport).acquire(nursery)
    # The scheduler looked in the store for d2 and found nothing to give it.
    await wait_until(lambda: server.scheduler.statistics().claims_empty > empty_claims)
    assert server.scheduler.statistics().waiters == 1
    assert not other.ended.is_set()
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_RUNNING
    other.requests.cancel()
    assert (await other.wait()).job_id == ""


async def test_cancel_racing_job_creation_never_loses_a_job(
    server, nursery: trio.Nursery, transport: str
) -> None:  # type: ignore[no-untyped-def]
    """A cancel and a new job sent back to back, in both orders: each stream answers
    once, and a job is either delivered to the stream that got it (and held by it) or
    still pending, never locked for nobody. Both outcomes must occur: if one never
    does, the race was not run."""
    jobs = Jobs(server)
    daemon = TestDaemon(server, "racer", transport=transport)
    drain = TestDaemon(server, "drain", transport=transport)
    created: list[str] = []
    delivered: list[str] = []
    outcomes: Counter[str] = Counter()
    for round_number in range(24):
        acquisition = await daemon.acquire(nursery)
        await wait_until(lambda: server.scheduler.statistics().waiters == 1)
        if round_number % 2:
            created.append((await jobs.create()).id)
            acquisition.requests.cancel()
        else:
            acquisition.requests.cancel()
            created.append((await jobs.create()).id)
        answer = await acquisition.wait()
        if answer.job_id:
            outcomes["job"] += 1
            assert answer.job_id == created[-1]
            assert (await jobs.get(answer.job_id)).status == pb.JOB_STATUS_RUNNING
            await daemon.complete(answer.job_id)
        else:
            # The cancel won: the job was never locked for anyone and is still pending.
            outcomes["empty"] += 1
            assert (await jobs.get(created[-1])).status == pb.JOB_STATUS_PENDING
            answer = await (await drain.acquire(nursery)).wait()
            assert answer.job_id == created[-1]
            await drain.complete(answer.job_id)
        delivered.append(answer.job_id)
    assert delivered == created
    assert outcomes["job"] > 0 and outcomes["empty"] > 0, outcomes


@pytest.mark.slow
async def test_storm_of_daemons_and_jobs(server, nursery: trio.Nursery, transport: str) -> None:  # type: ignore[no-untyped-def]
    """50 daemons x 500 jobs: every job delivered exactly once, every stream answered
    exactly once."""
    daemons, total = 50, 500
    jobs = Jobs(server)
    await jobs.file_hash()
    received: Counter[str] = Counter()
    answers_per_stream: list[int] = []
    open_streams: set[Acquisition] = set()
    done = trio.Event()

    async def work(daemon: TestDaemon) -> None:
        while True:
            acquisition = await daemon.acquire(nursery)
            open_streams.add(acquisition)
            try:
                answer = await acquisition.wait(timeout=60)
            finally:
                open_streams.discard(acquisition)
                answers_per_stream.append(len(acquisition.responses))
            if not answer.job_id:
                return  # canceled at the end of the storm
            received[answer.job_id] += 1
            await daemon.complete(answer.job_id)
            if sum(received.values()) == total:
                done.set()

    created: list[str] = []

    async def create_all() -> None:
        for _ in range(total):
            created.append((await jobs.create()).id)

    fleet = [TestDaemon(server, f"storm-{i}", transport=transport) for i in range(daemons)]
    async with trio.open_nursery() as storm:
        for daemon in fleet:
            storm.start_soon(work, daemon)
        storm.start_soon(create_all)
        with trio.fail_after(120):
            await done.wait()
        # Everyone still waiting gets exactly one (empty) answer to CancelAcquire.
        await wait_until(lambda: server.scheduler.statistics().waiters == daemons, timeout=30)
        for acquisition in list(open_streams):
            acquisition.requests.cancel()
    assert len(created) == total
    assert sorted(received) == sorted(created)
    assert set(received.values()) == {1}
    assert set(answers_per_stream) == {1}
    assert len(answers_per_stream) == total + daemons
