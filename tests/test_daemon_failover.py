"""A daemon given several provd replicas (one SQLite file, two servers) follows the
one that answers: a transport failure moves it to the next URL, an application error
never does."""

from __future__ import annotations

import logging
import socket
import uuid
from dataclasses import dataclass, replace
from functools import partial

import click
import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.app import Running, serve
from provd.client.connect import daemon_client_for, daemon_headers
from provd.client.daemon.command import _join_urls
from provd.client.daemon.connection import Backoff, DaemonConnection, Endpoint
from provd.client.daemon.runner import DaemonSettings, run_daemon
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from tests.conftest import DAEMON_PSK, Server, ServerFactory, server_settings
from tests.daemon_clients import Jobs, wait_until
from tests.reference_daemon import FAST, Scripted

MOVED = "moving to"


@dataclass
class Replica:
    """A provd the test can stop (make_server's run until the test ends)."""

    server: Server
    stop: trio.Event
    stopped: trio.Event

    async def shut_down(self) -> None:
        self.stop.set()
        with trio.fail_after(10):
            await self.stopped.wait()


async def start_replica(nursery: trio.Nursery, server: Server) -> Replica:
    """A second provd on `server`'s database, stoppable."""
    settings = server_settings(server.db_path)
    stop, stopped = trio.Event(), trio.Event()

    async def run(task_status: trio.TaskStatus[Running]) -> None:
        try:
            await serve(settings, shutdown_trigger=stop.wait, task_status=task_status)
        finally:
            stopped.set()

    running: Running = await nursery.start(run)
    return Replica(
        Server(running.url, settings.db_path, settings, running.scheduler), stop, stopped
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_for(*urls: str, **overrides: object) -> DaemonSettings:
    base = DaemonSettings(url=",".join(urls), psk=DAEMON_PSK, name="failover", reporting=FAST)
    return replace(base, **overrides)  # type: ignore[arg-type]


async def wait_for_status(jobs: Jobs, job_id: str, status: pb.JobStatus) -> None:
    with trio.fail_after(10):
        while (await jobs.get(job_id)).status != status:
            await trio.sleep(0.02)


def moves(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if MOVED in r.getMessage()]


def test_urls_are_repeated_or_comma_separated() -> None:
    assert _join_urls(("http://a", "http://b,http://c", " http://d ,")) == (
        "http://a,http://b,http://c,http://d"
    )
    with pytest.raises(click.BadParameter):
        _join_urls((" , ",))
    assert daemon_for("http://a", "http://b").urls == ("http://a", "http://b")
    assert daemon_for("http://a").urls == ("http://a",)


async def test_a_stopped_replica_sends_the_daemon_to_the_next(
    make_server: ServerFactory, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A job created through B after A went away runs to success through B; so
    does one that was running on the daemon when A went away."""
    caplog.set_level(logging.INFO, logger="provd.client.daemon")
    b = await make_server()
    a = await start_replica(nursery, b)
    script = Scripted()
    nursery.start_soon(
        partial(
            run_daemon, daemon_for(a.server.url, b.url), trio.Event(), provisioners={"echo": script}
        )
    )
    # The daemon waits on A (its first choice); B's scheduler has never seen it.
    await wait_until(lambda: a.server.scheduler.statistics().waiters == 1)
    assert b.scheduler.statistics().waiters == 0
    jobs_a, jobs_b = Jobs(a.server), Jobs(b)
    running = await jobs_a.create()
    with trio.fail_after(10):
        await script.started.wait()

    await a.shut_down()
    script.release.set()  # its last logs and verdict can only go through B
    await wait_for_status(jobs_b, running.id, pb.JOB_STATUS_SUCCEEDED)
    assert [line.output for line in await jobs_b.logs(running.id)][-3:] == [
        "line 0",
        "line 1",
        "line 2",
    ]
    assert moves(caplog) == [f"provd at {a.server.url} is not answering; moving to {b.url}"]

    # Its acquire stream is opened again on B, which hands it the next job.
    await wait_until(lambda: b.scheduler.statistics().waiters == 1)
    script.started, script.release = trio.Event(), trio.Event()
    script.release.set()
    later = await jobs_b.create()
    await wait_for_status(jobs_b, later.id, pb.JOB_STATUS_SUCCEEDED)
    assert len(moves(caplog)) == 1


async def test_an_unreachable_first_url_is_skipped(
    server: Server, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provd.client.daemon")
    nowhere = f"http://127.0.0.1:{_free_port()}"
    script = Scripted()
    script.release.set()
    nursery.start_soon(
        partial(
            run_daemon, daemon_for(nowhere, server.url), trio.Event(), provisioners={"echo": script}
        )
    )
    jobs = Jobs(server)
    job = await jobs.create()
    await wait_for_status(jobs, job.id, pb.JOB_STATUS_SUCCEEDED)
    assert f"provd at {nowhere} is not answering; moving to {server.url}" in moves(caplog)


async def test_application_errors_do_not_move(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica that says no is an answer: the daemon stops with it rather than
    trying the next (which would accept the key)."""
    caplog.set_level(logging.INFO, logger="provd.client.daemon")
    refusing = await make_server(daemon_psk="another-key")
    accepting = await make_server(db_path=refusing.db_path)
    settings = daemon_for(refusing.url, accepting.url)
    with trio.fail_after(10), pytest.raises(BaseException) as info:
        await run_daemon(settings, trio.Event(), provisioners={"echo": Scripted()})
    errors = info.value.exceptions if isinstance(info.value, BaseExceptionGroup) else [info.value]
    assert isinstance(errors[0], ConnectError) and errors[0].code == Code.UNAUTHENTICATED
    assert accepting.scheduler.statistics().waiters == 0
    assert moves(caplog) == []


async def test_unary_calls_move_on_transport_errors_only(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """UpdateJob for a job nobody has: not_found from the live replica, after one move
    past the dead one and none back."""
    caplog.set_level(logging.INFO, logger="provd.client.daemon")
    nowhere = f"http://127.0.0.1:{_free_port()}"
    headers = daemon_headers(DAEMON_PSK, name="failover")
    connection = DaemonConnection(
        [Endpoint(url, daemon_client_for(url, headers)) for url in (nowhere, server.url)],
        Backoff(initial_seconds=0.01),
    )
    for _ in range(2):
        with trio.fail_after(10), pytest.raises(ConnectError) as info:
            await connection.update_job(pd.UpdateJobRequest(job_id=str(uuid.uuid4())))
        assert info.value.code == Code.NOT_FOUND
        assert connection.url == server.url
    assert len(moves(caplog)) == 1
