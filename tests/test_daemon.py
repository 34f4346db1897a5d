"""The reference daemon (provd.client.daemon) against a real server: slots, heartbeats,
log batching, cancel, graceful stop, and retries that only cover the transport."""

from __future__ import annotations

import socket
from dataclasses import replace
from functools import partial

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.app import serve
from provd.client.daemon.provisioners import JobFailed
from provd.client.daemon.reporting import JobReporter
from provd.client.daemon.runner import DaemonSettings, run_daemon
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from tests.conftest import DAEMON_PSK, Server, server_settings
from tests.daemon_clients import Jobs, wait_until
from tests.reference_daemon import FAST, Scripted


def settings_for(server: Server, **overrides: object) -> DaemonSettings:
    base = DaemonSettings(url=server.url, psk=DAEMON_PSK, name="ref", reporting=FAST)
    return replace(base, **overrides)  # type: ignore[arg-type]


async def test_runs_a_job_and_reports_logs_and_success(
    server: Server, nursery: trio.Nursery
) -> None:
    jobs = Jobs(server)
    script = Scripted()
    stop = trio.Event()
    nursery.start_soon(
        partial(run_daemon, settings_for(server), stop, provisioners={"echo": script})
    )
    job = await jobs.create()
    with trio.fail_after(10):
        await script.started.wait()
    script.release.set()
    with trio.fail_after(10):
        while (await jobs.get(job.id)).status != pb.JOB_STATUS_SUCCEEDED:
            await trio.sleep(0.02)
    outputs = [line.output for line in await jobs.logs(job.id)]
    assert outputs[-3:] == ["line 0", "line 1", "line 2"]
    stop.set()


async def test_heartbeats_keep_a_quiet_job_fresh(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    script = Scripted(lines=0)
    nursery.start_soon(
        partial(run_daemon, settings_for(server), trio.Event(), provisioners={"echo": script})
    )
    job = await jobs.create()
    with trio.fail_after(10):
        await script.started.wait()
    first = (await jobs.get(job.id)).updated_at.ToMilliseconds()
    await trio.sleep(0.5)  # several heartbeat intervals with nothing to log
    assert (await jobs.get(job.id)).updated_at.ToMilliseconds() > first
    script.release.set()


async def test_cancel_while_running_ends_canceled(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    script = Scripted()
    nursery.start_soon(
        partial(run_daemon, settings_for(server), trio.Event(), provisioners={"echo": script})
    )
    job = await jobs.create()
    with trio.fail_after(10):
        await script.started.wait()
    await jobs.cancel(job.id)
    with trio.fail_after(10):
        while (await jobs.get(job.id)).status != pb.JOB_STATUS_CANCELED:
            await trio.sleep(0.02)
    assert script.cancelled
    assert any("asked to cancel" in line.output for line in await jobs.logs(job.id))


async def test_failure_is_reported_with_its_code(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    script = Scripted()
    script.fail_with = JobFailed("it broke", "BROKEN")
    script.release.set()
    nursery.start_soon(
        partial(run_daemon, settings_for(server), trio.Event(), provisioners={"echo": script})
    )
    job = await jobs.create()
    with trio.fail_after(10):
        while (await jobs.get(job.id)).status != pb.JOB_STATUS_FAILED:
            await trio.sleep(0.02)
    failed = await jobs.get(job.id)
    assert (failed.error, failed.error_code) == ("it broke", "BROKEN")


async def test_logs_are_batched_and_flushed_at_stage_boundaries(
    server: Server, nursery: trio.Nursery
) -> None:
    """Many lines in one stage travel in few UpdateJob calls; a new stage flushes."""
    jobs = Jobs(server)
    calls: list[int] = []

    async def chatty(job: pd.AcquiredJob, reporter: JobReporter) -> pd.CompletedJob:
        original = reporter._connection.update_job

        async def counting(request: pd.UpdateJobRequest) -> pd.UpdateJobResponse:
            if request.logs:
                calls.append(len(request.logs))
            return await original(request)

        reporter._connection.update_job = counting  # type: ignore[method-assign]
        for i in range(50):
            reporter.log(f"plan {i}", stage="Plan")
        reporter.log("apply 0", stage="Apply")
        await trio.sleep(0.3)
        return pd.CompletedJob(template_import=pd.CompletedJob.TemplateImport())

    slow_debounce = replace(FAST, debounce_seconds=10.0, heartbeat_interval_seconds=10.0)
    nursery.start_soon(
        partial(
            run_daemon,
            settings_for(server, reporting=slow_debounce),
            trio.Event(),
            provisioners={"echo": chatty},
        )
    )
    job = await jobs.create()
    with trio.fail_after(10):
        while (await jobs.get(job.id)).status != pb.JOB_STATUS_SUCCEEDED:
            await trio.sleep(0.02)
    # The stage change flushed all 51 queued lines at once, long before the debounce.
    assert calls == [51]
    assert len([x for x in await jobs.logs(job.id) if x.stage in ("Plan", "Apply")]) == 51


async def test_graceful_stop_cancels_waiting_streams(server: Server, nursery: trio.Nursery) -> None:
    stop = trio.Event()
    done = trio.Event()

    async def daemon() -> None:
        await run_daemon(settings_for(server, jobs=3), stop, provisioners={"echo": Scripted()})
        done.set()

    nursery.start_soon(daemon)
    await wait_until(lambda: server.scheduler.statistics().waiters == 3)
    stop.set()
    with trio.fail_after(10):
        await done.wait()
    assert server.scheduler.statistics().waiters == 0
    # Nothing is locked for the departed daemon.
    job = await Jobs(server).create()
    assert (await Jobs(server).get(job.id)).status == pb.JOB_STATUS_PENDING


async def test_graceful_stop_lets_the_running_job_finish(
    server: Server, nursery: trio.Nursery
) -> None:
    jobs = Jobs(server)
    script = Scripted()
    stop = trio.Event()
    done = trio.Event()

    async def daemon() -> None:
        await run_daemon(settings_for(server), stop, provisioners={"echo": script})
        done.set()

    nursery.start_soon(daemon)
    job = await jobs.create()
    with trio.fail_after(10):
        await script.started.wait()
    stop.set()
    await trio.sleep(0.2)
    assert not done.is_set()  # still running its job
    script.release.set()
    with trio.fail_after(10):
        await done.wait()
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_SUCCEEDED


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_retries_until_the_server_comes_up(tmp_path, nursery: trio.Nursery) -> None:  # type: ignore[no-untyped-def]
    """Transport errors are retried with backoff: a daemon started first still works."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    script = Scripted()
    script.release.set()
    daemon_settings = DaemonSettings(url=url, psk=DAEMON_PSK, name="early", reporting=FAST)
    nursery.start_soon(
        partial(run_daemon, daemon_settings, trio.Event(), provisioners={"echo": script})
    )
    await trio.sleep(0.5)  # it is retrying against nothing
    settings = server_settings(tmp_path / "late.db", listen=f"127.0.0.1:{port}")
    running = await nursery.start(partial(serve, settings))
    server = Server(running.url, settings.db_path, settings, running.scheduler)
    jobs = Jobs(server)
    job = await jobs.create()
    with trio.fail_after(20):
        while (await jobs.get(job.id)).status != pb.JOB_STATUS_SUCCEEDED:
            await trio.sleep(0.05)


async def test_application_errors_are_not_retried(server: Server) -> None:
    wrong_key = replace(settings_for(server), psk="not-the-key")
    with trio.fail_after(10), pytest.raises(BaseException) as info:
        await run_daemon(wrong_key, trio.Event(), provisioners={"echo": Scripted()})
    errors = info.value.exceptions if isinstance(info.value, BaseExceptionGroup) else [info.value]
    assert isinstance(errors[0], ConnectError) and errors[0].code == Code.UNAUTHENTICATED
