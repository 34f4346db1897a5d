"""ListDaemons' `connected` and `stale` over a real server, on the real clock.

A daemon is connected while it holds a stream open, or runs a job and was seen within
the stale interval (three heartbeat intervals); it is stale when it has no stream
open and was not seen within it. So a daemon that took a job and reports on it is
connected, one that stopped reporting becomes stale (never both), and one with no
stream and no job is neither. The same rule on trio's virtual clock is in
tests/test_registry.py.
"""

from __future__ import annotations

import pytest
import trio

from provd.gen.provd.v1 import daemons_pb2 as dpb
from tests.conftest import ServerFactory
from tests.daemon_clients import Jobs, TestDaemon, daemon_named

# Stale after 1.5 s: heartbeats every 0.1 s keep it far from stale, even on a busy machine.
HEARTBEAT_SECONDS = 0.5


def state(listed: dpb.Daemon) -> tuple[bool, bool, str]:
    return listed.connected, listed.stale, listed.current_job_id


@pytest.mark.slow  # real-time heartbeats; test_registry.py covers it on the autojump clock
@pytest.mark.parametrize("transport", ["connect", "websocket"])
async def test_a_daemon_running_a_job_is_connected_until_it_stops_reporting(
    make_server: ServerFactory, nursery: trio.Nursery, transport: str
) -> None:
    """Right after the acquire that handed it a job, the daemon is connected with the
    job as its current one; its stream has ended, and while it heartbeats (UpdateJob)
    for longer than the stale interval it stays connected. Once it stops, it becomes
    stale and is no longer connected, still holding the job; after it completes the
    job and is quiet, it is neither connected nor listed with a job."""
    server = await make_server(heartbeat_interval_seconds=HEARTBEAT_SECONDS)
    job = await Jobs(server).create()
    daemon = TestDaemon(server, "runner", transport=transport)
    acquisition = await daemon.acquire(nursery)
    assert (await acquisition.wait()).job_id == job.id  # the stream has ended
    assert state(await daemon_named(server, "runner")) == (True, False, job.id)

    heartbeating_until = trio.current_time() + 4 * HEARTBEAT_SECONDS
    while trio.current_time() < heartbeating_until:
        await daemon.update(job.id)
        assert state(await daemon_named(server, "runner")) == (True, False, job.id)
        await trio.sleep(HEARTBEAT_SECONDS / 5)

    with trio.fail_after(10 * HEARTBEAT_SECONDS):
        while not (listed := await daemon_named(server, "runner")).stale:
            assert state(listed) == (True, False, job.id)
            await trio.sleep(HEARTBEAT_SECONDS / 10)
    assert state(listed) == (False, True, job.id)

    await daemon.complete(job.id)  # a call: seen again, but no stream and no job
    assert state(await daemon_named(server, "runner")) == (False, False, "")
