"""`provd serve --workers N`: N processes on one port and one SQLite file, under a
supervisor that restarts a worker that dies and drains them all on SIGTERM."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import trio

from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.workers import bind_listeners, describe_exit, worker_count
from tests.daemon_clients import Jobs, TestDaemon
from tests.processes import ServerProcess, start_server
from tests.procfs import child_pids, holders

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


async def test_jobs_created_through_any_worker_reach_daemons_on_any_worker(
    tmp_path: Path,
) -> None:
    """Twenty daemons spread by the kernel over two workers, forty jobs created over
    fresh connections: each job reaches exactly one daemon, through the wake-up path
    between the workers (the backup poll is an hour)."""
    async with trio.open_nursery() as nursery:
        server = await start_server(
            nursery, tmp_path / "provd.db", "--workers", "2", "--poll-interval", "3600"
        )
        target = SimpleNamespace(url=server.url)
        workers = await _workers(server)
        daemons = [TestDaemon(target, f"d{i}") for i in range(20)]  # type: ignore[arg-type]
        delivered: dict[str, list[str]] = {}

        async def serve_jobs(daemon: TestDaemon, task_status: trio.TaskStatus[None]) -> None:
            acquisition = await daemon.acquire(nursery)
            task_status.started()
            while True:
                job = await acquisition.wait(timeout=60)
                delivered.setdefault(job.job_id, []).append(daemon.name)
                await daemon.complete(job.job_id)
                acquisition = await daemon.acquire(nursery)

        async with trio.open_nursery() as daemons_nursery:
            for daemon in daemons:
                await daemons_nursery.start(serve_jobs, daemon)
            with trio.fail_after(10):
                while len(set(holders(_port(server), workers).values())) < 2:
                    await trio.sleep(0.02)
            created = []
            for _ in range(40):
                # A new client each time: a new connection, hashed to either worker.
                created.append((await Jobs(target).create()).id)  # type: ignore[arg-type]
            with trio.fail_after(30):
                while len(delivered) < len(created):
                    await trio.sleep(0.02)
            daemons_nursery.cancel_scope.cancel()
        assert sorted(delivered) == sorted(created)
        assert all(len(names) == 1 for names in delivered.values()), delivered
        for job_id in created:
            job = await Jobs(target).get(job_id)  # type: ignore[arg-type]
            assert job.status == pb.JOB_STATUS_SUCCEEDED
        server.signal(signal.SIGTERM)
        assert await server.wait() == 0


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
