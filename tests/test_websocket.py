"""provd's WebSocket transport with a plain trio-websocket client: the framing of
docs/websocket.md, errors in the end-of-stream message, and the daemon on it."""

from __future__ import annotations

import json
from dataclasses import replace

import trio
from trio_websocket import open_websocket_url

from provd.client.daemon.runner import DaemonSettings, run_daemon
from provd.client.websocket import websocket_url
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.websocket_framing import END_STREAM, envelope, parse_envelope
from tests.conftest import DAEMON_PSK, Server
from tests.daemon_clients import Jobs, TestDaemon
from tests.test_daemon import FAST, Scripted

HEADERS = [
    (b"provd-daemon-psk", DAEMON_PSK.encode()),
    (b"provd-daemon-name", b"ws-client"),
    (b"provd-daemon-provisioners", b"echo"),
]


async def call(
    server: Server, method: str, *frames: bytes, headers=HEADERS
) -> list[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
    """Send `frames`, return every envelope provd sent until it closed."""
    received = []
    async with open_websocket_url(websocket_url(server.url, method), extra_headers=headers) as ws:
        for frame in frames:
            await ws.send_message(frame)
        while True:
            flags, payload = parse_envelope(await ws.get_message())
            received.append((flags, payload))
            if flags & END_STREAM:
                return received


async def test_unary_call_over_websocket(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    job = await jobs.create()
    acquired = await (await TestDaemon(server, "ws-client").acquire(nursery)).wait()
    request = pd.UpdateJobRequest(
        job_id=job.id, logs=[pd.Log(output="over a websocket", stage="WS")]
    )
    (response, end) = await call(server, "UpdateJob", envelope(request.SerializeToString()))
    assert response[0] == 0 and pd.UpdateJobResponse.FromString(response[1]).canceled is False
    assert end == (END_STREAM, b"{}")
    assert acquired.job_id == job.id
    assert "over a websocket" in [line.output for line in await jobs.logs(job.id)]


async def test_errors_arrive_in_the_end_of_stream_message(server: Server) -> None:
    unknown = pd.UpdateJobRequest(job_id="00000000-0000-4000-8000-000000000000")
    ((flags, body),) = await call(server, "UpdateJob", envelope(unknown.SerializeToString()))
    assert flags == END_STREAM and json.loads(body)["error"]["code"] == "not_found"

    ((_, body),) = await call(server, "NoSuchMethod", envelope(b""))
    assert json.loads(body)["error"]["code"] == "unimplemented"

    no_key = [h for h in HEADERS if h[0] != b"provd-daemon-psk"]
    ((_, body),) = await call(server, "UpdateJob", envelope(b""), headers=no_key)
    assert json.loads(body)["error"]["code"] == "unauthenticated"

    ((_, body),) = await call(server, "UpdateJob", b"\x00\x00")
    assert json.loads(body)["error"]["code"] == "invalid_argument"


async def test_acquire_cancel_then_exactly_one_empty_answer(server: Server) -> None:
    messages = await call(
        server, "AcquireJobWithCancel", envelope(pd.CancelAcquire().SerializeToString())
    )
    assert messages == [(0, b""), (END_STREAM, b"{}")]  # one empty AcquiredJob, then the end
    assert server.scheduler.statistics().waiters == 0


async def test_daemon_over_websocket_runs_jobs(server: Server, nursery: trio.Nursery) -> None:
    jobs = Jobs(server)
    script = Scripted()
    script.release.set()
    settings = DaemonSettings(
        url=server.url, psk=DAEMON_PSK, name="ws-daemon", reporting=FAST, transport="websocket"
    )
    stop = trio.Event()
    done = trio.Event()

    async def daemon() -> None:
        await run_daemon(replace(settings, jobs=2), stop, provisioners={"echo": script})
        done.set()

    nursery.start_soon(daemon)
    created = [await jobs.create() for _ in range(4)]
    with trio.fail_after(20):
        for job in created:
            while (await jobs.get(job.id)).status != pb.JOB_STATUS_SUCCEEDED:
                await trio.sleep(0.02)
    stop.set()
    with trio.fail_after(10):
        await done.wait()
    assert server.scheduler.statistics().waiters == 0
