"""AcquireJobWithCancel and AcquireJob over real sockets: exactly one answer,
never a job for two daemons, never a job lost."""

from __future__ import annotations

import trio

from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from tests.archives import MAIN_TF, make_tar
from tests.conftest import Server
from tests.daemon_clients import Jobs, TestDaemon, wait_until


async def test_waiting_daemon_gets_a_new_job(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    daemon = TestDaemon(server, "d1")
    acquisition = await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    job = await jobs.create(
        "workspace_build",
        initiator=pb.Initiator(user_id="u1", user_name="alice"),
        trace_metadata={"traceparent": "t"},
        workspace_build=pb.WorkspaceBuildInput(
            workspace_build_id="b1",
            workspace_name="ws",
            state=b"tfstate",
            log_level="debug",
            rich_parameter_values=[sdk.RichParameterValue(name="cpu", value="2")],
            variable_values=[sdk.VariableValue(name="region", value="eu", sensitive=True)],
            external_auth_providers=[sdk.ExternalAuthProvider(id="gh", access_token="tok")],
            metadata=sdk.Metadata(workspace_transition=sdk.START, workspace_owner="alice"),
        ),
    )
    acquired = await acquisition.wait()
    assert acquired.job_id == job.id
    assert acquired.provisioner == "echo"
    assert acquired.user_name == "alice"
    assert acquired.trace_metadata == {"traceparent": "t"}
    assert acquired.created_at == job.created_at.ToMilliseconds()
    assert acquired.template_source_archive == make_tar(MAIN_TF)
    build = acquired.workspace_build
    assert (build.workspace_build_id, build.workspace_name, build.state) == ("b1", "ws", b"tfstate")
    assert build.log_level == "debug"
    assert build.rich_parameter_values[0].value == "2"
    assert build.variable_values[0].sensitive
    assert build.external_auth_providers[0].access_token == "tok"
    assert build.metadata.workspace_owner == "alice"
    running = await jobs.get(job.id)
    assert running.status == pb.JOB_STATUS_RUNNING
    assert running.HasField("started_at")
    assert running.worker_id


async def test_each_job_type_reaches_the_daemon(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    daemon = TestDaemon(server, "d1")
    for kind in ("template_import", "workspace_build", "template_dry_run"):
        job = await jobs.create(kind)
        acquired = await (await daemon.acquire(nursery)).wait()
        assert acquired.job_id == job.id
        assert acquired.WhichOneof("type") == kind


async def test_pending_job_is_taken_as_soon_as_a_daemon_connects(
    server: Server, nursery: trio.Nursery
) -> None:
    jobs = Jobs(server)
    job = await jobs.create()
    acquired = await (await TestDaemon(server, "late").acquire(nursery)).wait()
    assert acquired.job_id == job.id


async def test_cancel_acquire_gets_one_empty_answer(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    acquisition = await TestDaemon(server, "d1").acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    acquisition.requests.cancel()
    acquired = await acquisition.wait()
    assert acquired.job_id == "" and acquired == type(acquired)()
    assert server.scheduler.statistics().waiters == 0
    # The canceled waiter takes nothing created afterwards.
    job = await jobs.create()
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_PENDING


async def test_half_close_counts_as_cancel(server: Server, nursery: trio.Nursery) -> None:
    acquisition = await TestDaemon(server, "d1").acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    acquisition.requests.close()
    assert (await acquisition.wait()).job_id == ""


async def test_two_daemons_race_for_one_job(server: Server, nursery: trio.Nursery) -> None:
    """Exactly one gets it; the other keeps waiting and gets the next one."""
    jobs = Jobs(server)
    first = await TestDaemon(server, "d1").acquire(nursery)
    second = await TestDaemon(server, "d2").acquire(nursery)
    # Both wait in one group, whose one claim so far found nothing.
    await wait_until(lambda: server.scheduler.statistics().waiters == 2)
    await wait_until(lambda: server.scheduler.statistics().claims_empty == 1)
    job = await jobs.create()
    await wait_until(lambda: first.ended.is_set() or second.ended.is_set())
    winner, loser = (first, second) if first.ended.is_set() else (second, first)
    assert (await winner.wait()).job_id == job.id
    # CreateJob claimed it for the daemon first in line, in the transaction that
    # created it (Scheduler.create_job): the other one's wait never saw it.
    stats = server.scheduler.statistics()
    assert (stats.handed_straight, stats.claims_empty, stats.waiters) == (1, 1, 1)
    assert not loser.ended.is_set()
    next_job = await jobs.create()
    assert (await loser.wait()).job_id == next_job.id


async def test_higher_priority_first_then_oldest(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    old = await jobs.create()
    urgent = await jobs.create(priority=10)
    young = await jobs.create()
    daemon = TestDaemon(server, "d1")
    order = [(await (await daemon.acquire(nursery)).wait()).job_id for _ in range(3)]
    assert order == [urgent.id, old.id, young.id]


async def test_canceled_pending_job_is_never_acquired(
    server: Server, nursery: trio.Nursery
) -> None:
    jobs = Jobs(server)
    canceled = await jobs.create()
    await jobs.cancel(canceled.id)
    live = await jobs.create()
    assert (await (await TestDaemon(server, "d1").acquire(nursery)).wait()).job_id == live.id


async def test_deprecated_acquire_job_long_polls(make_server, nursery: trio.Nursery) -> None:  # type: ignore[no-untyped-def]

    from provd.client.connect import call
    from provd.gen.provisionerd import provisionerd_pb2 as pd

    server = await make_server(unary_acquire_wait_seconds=0.3)
    daemon = TestDaemon(server, "old-daemon")
    empty = await call(daemon.client.acquire_job, pd.Empty())
    assert empty.job_id == ""
    job = await Jobs(server).create()
    acquired = await call(daemon.client.acquire_job, pd.Empty())
    assert acquired.job_id == job.id and acquired.template_source_archive


async def test_job_over_the_payload_cap_fails_and_the_daemon_gets_the_next(
    make_server,  # type: ignore[no-untyped-def]
    nursery: trio.Nursery,
) -> None:
    from dataclasses import replace

    from provd.client.connect import call
    from provd.model import Limits

    # The jobs were accepted under the default cap; the operator then lowered it and
    # restarted: the oversize job fails at acquire, and the daemon gets the next one.
    creator = await make_server()
    jobs = Jobs(creator)
    big = await call(
        jobs.client.upload_file,
        pb.UploadFileRequest(data=make_tar({"blob.bin": bytes(range(256)) * 512})),
    )
    too_big = await jobs.create(file_hash=big.hash)
    fits = await jobs.create()
    server = await make_server(
        db_path=creator.db_path, limits=replace(Limits(), payload_max_bytes=64 * 1024)
    )
    acquired = await (await TestDaemon(server, "d1").acquire(nursery)).wait()
    assert acquired.job_id == fits.id
    failed = await jobs.get(too_big.id)
    assert failed.status == pb.JOB_STATUS_FAILED
    assert failed.error_code == "PAYLOAD_TOO_LARGE"
    assert "over the 65536 bytes" in failed.error
