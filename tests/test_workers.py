"""`provd serve --workers N`: N processes on one port and one SQLite file, under a
supervisor that restarts a worker that dies and drains them all on SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.gen.provd.v1 import daemons_pb2 as dpb
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.workers import bind_listeners, describe_exit, worker_count
from tests.archives import MAIN_TF, make_tar
from tests.daemon_clients import Acquisition, Jobs, TestDaemon, wait_until
from tests.processes import ServerProcess, start_server
from tests.procfs import child_pids, holders
from tests.worker_connections import Pinned, pinned_to

pytestmark = pytest.mark.slow

if not sys.platform.startswith("linux"):
    pytest.skip("reads /proc to tell the workers apart", allow_module_level=True)


def _port(server: ServerProcess) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


async def _workers(server: ServerProcess, count: int = 2) -> set[int]:
    """The worker pids once there are `count` of them (a hang guard, not a timing)."""
    with trio.fail_after(20):
        while len(pids := child_pids(server.process.pid)) != count:
            await trio.sleep(0.05)
    return pids


def _open_connections(url: str, count: int) -> list[http.client.HTTPConnection]:
    """`count` HTTP/1.1 connections that each had one request answered (so a worker
    accepted it) and stay open (keep-alive)."""
    parts = urlsplit(url)
    connections = []
    for _ in range(count):
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        connection.request("GET", "/no-such-page")
        connection.getresponse().read()
        connections.append(connection)
    return connections


async def test_workers_share_one_port_and_the_kernel_spreads_connections(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, tmp_path / "provd.db", "--workers", "2")
        assert "2 workers" in server.output.decode()
        workers = await _workers(server)
        connections = await trio.to_thread.run_sync(_open_connections, server.url, 40)
        try:
            held = holders(_port(server), workers)
            local_ports = {c.sock.getsockname()[1] for c in connections}
            assert local_ports <= set(held), "every connection is held by a worker"
            # SO_REUSEPORT hashes connections over both sockets: 40 all on one
            # worker would be a chance of 2 in 2**40.
            assert {held[port] for port in local_ports} == workers
        finally:
            for connection in connections:
                connection.close()
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_sigterm_drains_every_worker_and_exits_0(tmp_path: Path) -> None:
    """An open acquire stream on a worker gets its one answer and every worker exits
    before the supervisor does, which exits 0."""
    async with trio.open_nursery() as nursery:
        server = await start_server(
            nursery, tmp_path / "provd.db", "--workers", "2", "--shutdown-grace", "1"
        )
        workers = await _workers(server)
        daemon = TestDaemon(SimpleNamespace(url=server.url), "draining")  # type: ignore[arg-type]
        acquisition = await daemon.acquire(nursery)
        with trio.fail_after(10):
            while not holders(_port(server), workers):
                await trio.sleep(0.02)
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
        await acquisition.ended.wait()
        assert len(acquisition.responses) <= 1  # never two answers
        assert not (child_pids(server.process.pid) & workers)
        assert not any(_alive(pid) for pid in workers)
        output = server.output.decode()
        assert "SIGTERM, draining 2 workers" in output
        assert "died" not in output


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie has ended: only its exit status is left)."""
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


async def test_a_killed_worker_is_replaced_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, tmp_path / "provd.db", "--workers", "2")
        target = SimpleNamespace(url=server.url)
        workers = await _workers(server)
        jobs = Jobs(target)  # type: ignore[arg-type]
        created = [await jobs.create() for _ in range(10)]
        victim = min(workers)
        await trio.to_thread.run_sync(_kill, victim)
        with trio.fail_after(20):
            while (now := child_pids(server.process.pid)) == workers or len(now) != 2:
                await trio.sleep(0.05)
        assert victim not in now and len(now & workers) == 1
        # Every acknowledged job is there, whichever worker answers.
        for job in created:
            assert (await Jobs(target).get(job.id)).id == job.id  # type: ignore[arg-type]
        # And the replacement serves: connections reach both workers again.
        connections = await trio.to_thread.run_sync(_open_connections, server.url, 40)
        try:
            held = holders(_port(server), now)
            assert set(held.values()) == now
        finally:
            for connection in connections:
                connection.close()
        assert f"(pid {victim}) died (killed by SIGKILL)" in server.output.decode()
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


async def test_workers_drain_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves the supervisor no time to say anything; its workers notice the
    end of their lifeline (stdin) and drain instead of serving on as orphans."""
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, tmp_path / "provd.db", "--workers", "2")
        workers = await _workers(server)
        server.signal(signal.SIGKILL)
        await server.wait()
        with trio.fail_after(20):
            while any(_alive(pid) for pid in workers):
                await trio.sleep(0.05)
        assert "the supervisor is gone; draining" in server.output.decode()


def test_worker_count_auto_is_the_cores_this_process_may_use() -> None:
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    assert worker_count(" 3 ") == 3


def test_listeners_share_a_port_and_a_busy_port_is_refused() -> None:
    sockets = bind_listeners("127.0.0.1:0", 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1 and len({id(s) for s in sockets}) == 3
        plain = socket.socket()
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", ports.pop()))
        plain.close()
    finally:
        for sock in sockets:
            sock.close()


def test_exits_are_described_in_words() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit status 3"


# -- across workers: issue "Beyond one process", point 7, on `--workers 2` ------------

HOUR = "3600"


def _percentile(samples: list[float], percentile: int) -> str:
    ordered = sorted(samples)
    return f"{ordered[min(len(ordered) - 1, len(ordered) * percentile // 100)] * 1000:.1f} ms"


async def _daemon_on(
    server: ServerProcess, pid: int, workers: set[int], name: str, nursery: trio.Nursery
) -> tuple[TestDaemon, Acquisition, int]:
    """A test daemon (provisioner `name`) whose connection the worker `pid` accepted,
    with its first acquire stream open; and the client port of that connection."""
    port = _port(server)
    for attempt in range(64):
        before = set(holders(port, workers))
        daemon = TestDaemon(
            SimpleNamespace(url=server.url),  # type: ignore[arg-type]
            f"{name}-{attempt}",
            provisioners=[name],
        )
        acquisition = await daemon.acquire(nursery)
        with trio.fail_after(10):
            while not (new := set(holders(port, workers)) - before):
                await trio.sleep(0.01)
        (client_port,) = new
        if holders(port, workers)[client_port] == pid:
            return daemon, acquisition, client_port
        acquisition.requests.close()  # the protocol's cancel: one empty answer
        assert (await acquisition.wait()).job_id == ""
    raise AssertionError(f"no daemon connection reached worker {pid}")


async def _until_streaming(lister: Pinned, name: str) -> None:
    """Until ListDaemons, through the daemon's own worker, shows its stream open: its
    waiter is then in that worker's scheduler."""

    def streaming() -> bool:
        listed = lister.unary(
            "provd.v1.DaemonService/ListDaemons", dpb.ListDaemonsRequest(), dpb.ListDaemonsResponse
        )
        return any(d.name == name and d.connected and not d.current_job_id for d in listed.daemons)

    with trio.fail_after(10):
        while not await trio.to_thread.run_sync(streaming):
            await trio.sleep(0.005)


async def _deaf_workers(nursery: trio.Nursery, tmp_path: Path) -> ServerProcess:
    """`--workers 2` with the backup polls at an hour: only wake-ups deliver in time."""
    return await start_server(
        nursery,
        tmp_path / "provd.db",
        *("--workers", "2", "--poll-interval", HOUR, "--log-poll-interval", HOUR),
    )


async def _create_request(creator: Pinned, provisioner: str) -> pb.CreateJobRequest:
    """A template import for `provisioner`, its archive uploaded through `creator`."""
    uploaded = await trio.to_thread.run_sync(
        creator.unary,
        "provd.v1.JobService/UploadFile",
        pb.UploadFileRequest(data=make_tar(MAIN_TF)),
        pb.UploadFileResponse,
    )
    return pb.CreateJobRequest(
        provisioner=provisioner, file_hash=uploaded.hash, template_import=pb.TemplateImportInput()
    )


async def _create_through(connection: Pinned, request: pb.CreateJobRequest) -> str:
    job = await trio.to_thread.run_sync(
        connection.unary, "provd.v1.JobService/CreateJob", request, pb.Job
    )
    return job.id


async def test_a_job_created_on_one_worker_reaches_a_daemon_waiting_on_the_other(
    tmp_path: Path,
) -> None:
    """The creator's connection on worker A, the daemon's on worker B, the backup polls
    an hour: only the wake-up between the workers can deliver. 50 jobs, one at a time,
    each created once the daemon waits; create-sent → received printed (-s)."""
    async with trio.open_nursery() as nursery:
        server = await _deaf_workers(nursery, tmp_path)
        workers = await _workers(server)
        a, b = sorted(workers)
        creator = await pinned_to(server.url, a, workers)
        lister = await pinned_to(server.url, b, workers)
        daemon, acquisition, daemon_port = await _daemon_on(server, b, workers, "cross", nursery)
        request = await _create_request(creator, "cross")
        latencies = []
        for _ in range(50):
            await _until_streaming(lister, daemon.name)
            started = time.perf_counter()
            job_id = await _create_through(creator, request)
            acquired = await acquisition.wait(timeout=5)  # a hang guard, not a timing
            latencies.append(time.perf_counter() - started)
            assert acquired.job_id == job_id
            await daemon.complete(job_id)
            acquisition = await daemon.acquire(nursery)
        # Every stream went over the one connection worker B accepted.
        assert holders(_port(server), workers).get(daemon_port) == b
        print(
            f"\n--workers 2: CreateJob on worker A -> acquired on worker B, 50 jobs:"
            f" p50 {_percentile(latencies, 50)}, p99 {_percentile(latencies, 99)}"
        )
        acquisition.requests.close()
        await acquisition.wait()
        for connection in (creator, lister):
            connection.close()
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_cancel_and_log_follow_cross_workers(tmp_path: Path) -> None:
    """A follower on worker A sees lines the daemon sends through worker B; a cancel
    through A reaches the daemon on B; the daemon's end through B ends A's follow."""
    async with trio.open_nursery() as nursery:
        server = await _deaf_workers(nursery, tmp_path)
        workers = await _workers(server)
        a, b = sorted(workers)
        creator = await pinned_to(server.url, a, workers)
        follower = await pinned_to(server.url, a, workers)
        daemon, acquisition, _ = await _daemon_on(server, b, workers, "followed", nursery)
        job_id = await _create_through(creator, await _create_request(creator, "followed"))
        assert (await acquisition.wait()).job_id == job_id

        lines: list[pb.JobLog] = []
        followed = trio.Event()

        def follow() -> None:
            request = pb.StreamJobLogsRequest(id=job_id, follow=True)
            for line in follower.server_stream(
                "provd.v1.JobService/StreamJobLogs", request, pb.JobLog
            ):
                lines.append(line)

        async def run_follower() -> None:
            await trio.to_thread.run_sync(follow, abandon_on_cancel=True)
            followed.set()

        nursery.start_soon(run_follower)
        await wait_until(lambda: any(line.stage == "Queued" for line in lines))

        await daemon.update(job_id, logs=[_log("hello from worker B")])
        await wait_until(lambda: any(line.output == "hello from worker B" for line in lines))

        await trio.to_thread.run_sync(
            creator.unary, "provd.v1.JobService/CancelJob", pb.CancelJobRequest(id=job_id), pb.Job
        )
        assert (await daemon.update(job_id)).canceled
        await daemon.fail(job_id)
        with trio.fail_after(10):
            await followed.wait()
        assert lines[-1].stage == "Failed"
        for connection in (creator, follower):
            connection.close()
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


def _log(output: str) -> pd.Log:
    return pd.Log(source=pd.PROVISIONER, level=sdk.INFO, stage="Plan", output=output)


async def test_storm_over_two_workers_each_job_once_each_stream_answered_once(
    tmp_path: Path,
) -> None:
    """50 daemons spread by the kernel over two workers, 500 jobs created through four
    connections, two on each worker, at once; the backup poll an hour. Each job
    reaches exactly one daemon; every acquire stream, those canceled at the end
    included, gets exactly one answer."""
    async with trio.open_nursery() as nursery:
        server = await start_server(
            nursery, tmp_path / "provd.db", "--workers", "2", "--poll-interval", HOUR
        )
        workers = await _workers(server)
        a, b = sorted(workers)
        creators = [await pinned_to(server.url, pid, workers) for pid in (a, a, b, b)]
        request = await _create_request(creators[0], "echo")
        target = SimpleNamespace(url=server.url)
        acquisitions: list[Acquisition] = []
        open_streams: dict[str, Acquisition] = {}
        delivered: dict[str, list[str]] = {}
        created: list[str] = []

        async def serve_jobs(daemon: TestDaemon) -> None:
            while True:
                acquisition = await daemon.acquire(nursery)
                acquisitions.append(acquisition)
                open_streams[daemon.name] = acquisition
                job = await acquisition.wait(timeout=120)
                if not job.job_id:
                    return  # canceled at the end
                delivered.setdefault(job.job_id, []).append(daemon.name)
                await daemon.complete(job.job_id)

        async def create(connection: Pinned, count: int) -> None:
            for _ in range(count):
                created.append(await _create_through(connection, request))

        async with trio.open_nursery() as daemons:
            for i in range(50):
                daemons.start_soon(serve_jobs, TestDaemon(target, f"storm-{i}"))  # type: ignore[arg-type]
            with trio.fail_after(20):
                while len(open_streams) < 50:
                    await trio.sleep(0.01)
            spread = set(holders(_port(server), workers).values())
            async with trio.open_nursery() as creating:
                for connection in creators:
                    creating.start_soon(create, connection, 125)
            # Cancel only once every daemon waits again: one that took a last job may
            # still be completing it, and the stream it opens next would go uncanceled.
            with trio.fail_after(120):
                while len(delivered) < len(created) or any(
                    acquisition.ended.is_set() for acquisition in open_streams.values()
                ):
                    await trio.sleep(0.02)
            for acquisition in open_streams.values():
                acquisition.requests.close()  # the protocol's cancel
        assert spread == workers, "daemons on both workers"
        assert len(created) == 500 and sorted(delivered) == sorted(created)
        twice = {job: names for job, names in delivered.items() if len(names) > 1}
        assert not twice, twice
        assert len(acquisitions) == 550
        for acquisition in acquisitions:
            await acquisition.wait()  # exactly one answer, else it raises
        for connection in creators:
            connection.close()
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


async def test_sigkill_of_a_worker_mid_run_loses_no_acknowledged_job(tmp_path: Path) -> None:
    """Ten daemons that reconnect when their stream breaks, jobs created over fresh
    connections, one worker SIGKILLed halfway. Every acknowledged job ends: done by a
    daemon (exactly once), or, if the dead worker had claimed it and not handed it
    over, failed JOB_HUNG by the survivors after the hang timeout. The daemons whose
    streams broke carry on through the live worker and the replacement."""
    async with trio.open_nursery() as nursery:
        server = await start_server(
            nursery,
            tmp_path / "provd.db",
            *("--workers", "2", "--hang-timeout", "2", "--poll-interval", "1"),
        )
        target = SimpleNamespace(url=server.url)
        workers = await _workers(server)
        delivered: dict[str, list[str]] = {}
        broken: set[str] = set()
        waiting: dict[str, Acquisition] = {}

        async def complete(daemon: TestDaemon, name: str, job_id: str) -> TestDaemon:
            """Complete a delivered job as `provd daemon` does: a call the dying worker
            took down is made again over a new connection, until an answer."""
            while True:
                try:
                    await daemon.complete(job_id)
                    return daemon
                except ConnectError as error:
                    if error.code in (Code.FAILED_PRECONDITION, Code.PERMISSION_DENIED):
                        raise  # an answer: the job is no longer this daemon's
                broken.add(name)
                await trio.sleep(0.05)  # retry pacing, as a daemon's backoff
                daemon = TestDaemon(target, name)  # type: ignore[arg-type]

        async def serve_jobs(name: str) -> None:
            daemon = TestDaemon(target, name)  # type: ignore[arg-type]
            while True:
                acquisition = await daemon.acquire(nursery)
                waiting[name] = acquisition
                try:
                    job = await acquisition.wait(timeout=120)
                    if not job.job_id:
                        return
                    delivered.setdefault(job.job_id, []).append(name)
                    daemon = await complete(daemon, name, job.job_id)
                except Exception:
                    # The worker died under the stream or the call: a new client, so a
                    # new connection, as a real daemon's retry would make.
                    broken.add(name)
                    await trio.sleep(0.05)  # retry pacing, as a daemon's backoff
                    daemon = TestDaemon(target, name)  # type: ignore[arg-type]

        acknowledged: list[str] = []

        async def create(count: int) -> None:
            for _ in range(count):
                # An error is a call the worker died under: not acknowledged.
                with contextlib.suppress(Exception):
                    acknowledged.append((await Jobs(target).create()).id)  # type: ignore[arg-type]

        async with trio.open_nursery() as daemons:
            for i in range(10):
                daemons.start_soon(serve_jobs, f"survivor-{i}")
            await create(60)
            victim = min(workers)
            await trio.to_thread.run_sync(_kill, victim)
            await create(60)
            with trio.fail_after(30):
                while len(child_pids(server.process.pid)) != 2:
                    await trio.sleep(0.05)
            # Phase two, once every daemon has a stream open again.
            with trio.fail_after(30):
                while len(waiting) < 10 or any(acq.ended.is_set() for acq in waiting.values()):
                    await trio.sleep(0.02)
            after_restart = len(delivered)
            await create(40)
            jobs = Jobs(target)  # type: ignore[arg-type]
            with trio.fail_after(60):
                for job_id in acknowledged:
                    while (job := await jobs.get(job_id)).status not in (
                        pb.JOB_STATUS_SUCCEEDED,
                        pb.JOB_STATUS_FAILED,
                    ):
                        await trio.sleep(0.05)
                    if job.status == pb.JOB_STATUS_FAILED:
                        assert job.error_code == "JOB_HUNG", job
                        assert job_id not in delivered, job
                    else:
                        assert delivered[job_id] and len(delivered[job_id]) == 1, job_id
            # As in the storm: a daemon still returning from its last complete would
            # open a stream after the cancels below, so wait until all wait again.
            with trio.fail_after(30):
                while any(acquisition.ended.is_set() for acquisition in waiting.values()):
                    await trio.sleep(0.02)
            for acquisition in waiting.values():
                acquisition.requests.close()
        assert len(acknowledged) >= 100  # at most a call or two died with the worker
        assert len(delivered) > after_restart
        assert broken, "the SIGKILL broke some daemons' streams"
        assert f"(pid {victim}) died (killed by SIGKILL)" in server.output.decode()
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0
