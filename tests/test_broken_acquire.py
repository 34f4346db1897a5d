"""A job provd handed over is run even when the stream breaks before its end.

provd counts a job as delivered once its answer is written to the transport; if the
connection then dies before the end of the stream, the daemon holds the job and must
run it (it is never delivered again). A proxy cuts the connection right after the
server's job frame, over HTTP/2 and over WebSocket."""

from __future__ import annotations

import logging
from functools import partial
from urllib.parse import urlsplit

import pytest
import trio

from provd.client.daemon.runner import DaemonSettings, run_daemon
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests.conftest import DAEMON_PSK, Server
from tests.cutting_proxy import CuttingProxy
from tests.daemon_clients import Jobs
from tests.reference_daemon import FAST, Scripted


@pytest.mark.parametrize("transport", ["connect", "websocket"])
async def test_a_job_whose_stream_broke_after_it_arrived_is_run(
    server: Server,
    nursery: trio.Nursery,
    transport: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="provd.client.daemon")
    port = urlsplit(server.url).port
    assert port is not None
    proxy = CuttingProxy(port)
    await nursery.start(proxy.serve)
    jobs = Jobs(server)
    job = await jobs.create()
    script = Scripted()
    script.release.set()
    settings = DaemonSettings(
        url=proxy.url, psk=DAEMON_PSK, name="cut", reporting=FAST, transport=transport
    )
    nursery.start_soon(partial(run_daemon, settings, trio.Event(), provisioners={"echo": script}))
    with trio.fail_after(10):
        await proxy.cut.wait()
        while (await jobs.get(job.id)).status != pb.JOB_STATUS_SUCCEEDED:
            await trio.sleep(0.02)
    assert script.started.is_set()
    assert any(
        f"the acquire stream broke after provd sent job {job.id}" in record.getMessage()
        for record in caplog.records
    )
