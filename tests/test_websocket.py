"""provd's WebSocket transport with a plain trio-websocket client: the framing of
docs/websocket.md, errors (with their details) in the end-of-stream message, the
origin rule for upgrades from browser pages, and the daemon on it."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from trio_websocket import ConnectionRejected, open_websocket_url

from provd.client.daemon.runner import DaemonSettings, run_daemon
from provd.client.websocket import websocket_url
from provd.error_reasons import ERROR_INFO, reason_detail, reason_of
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.protocol import JobErrorCode
from provd.websocket_framing import (
    END_STREAM,
    end_of_stream,
    envelope,
    error_from_end_of_stream,
    parse_envelope,
)
from tests.conftest import DAEMON_PSK, Server, ServerFactory
from tests.daemon_clients import Jobs, TestDaemon
from tests.reference_daemon import FAST, Scripted

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


async def test_error_details_arrive_in_the_end_of_stream_message(
    server: Server, nursery: trio.Nursery
) -> None:
    """UpdateJob that leaves a required variable without a value fails with the
    REQUIRED_TEMPLATE_VARIABLES reason as a google.rpc.ErrorInfo detail; over WebSocket
    it arrives as Connect puts it: `details: [{type, value}]`, the value unpadded
    base64, and reads back into the ConnectError a Connect client would get."""
    jobs = Jobs(server)
    job = await jobs.create()
    assert (await (await TestDaemon(server, "ws-client").acquire(nursery)).wait()).job_id
    request = pd.UpdateJobRequest(
        job_id=job.id,
        template_variables=[sdk.TemplateVariable(name="region", type="string", required=True)],
    )
    ((flags, body),) = await call(server, "UpdateJob", envelope(request.SerializeToString()))
    assert flags == END_STREAM
    error = json.loads(body)["error"]
    assert error["code"] == "failed_precondition" and "region" in error["message"]
    (detail,) = error["details"]
    assert detail["type"] == ERROR_INFO and not detail["value"].endswith("=")
    expected = reason_detail(JobErrorCode.REQUIRED_TEMPLATE_VARIABLES).message_bytes
    assert base64.b64decode(detail["value"] + "==") == expected
    parsed = error_from_end_of_stream(json.loads(body))
    assert parsed is not None and parsed.code == Code.FAILED_PRECONDITION
    assert reason_of(parsed) == JobErrorCode.REQUIRED_TEMPLATE_VARIABLES


def test_end_of_stream_errors_round_trip() -> None:
    """What end_of_stream writes, error_from_end_of_stream reads back: code, message
    and details; padded or URL-safe values are read too, malformed details skipped,
    unknown codes read as `unknown`, and `{}` is no error."""
    detail = reason_detail(JobErrorCode.JOB_HUNG)
    sent = ConnectError(Code.PERMISSION_DENIED, "not yours", [detail])
    _, payload = parse_envelope(end_of_stream(sent))
    got = error_from_end_of_stream(json.loads(payload))
    assert got is not None and (got.code, got.message) == (Code.PERMISSION_DENIED, "not yours")
    assert [(d.type_name, d.message_bytes) for d in got.details] == [
        (ERROR_INFO, detail.message_bytes)
    ]
    assert reason_of(got) == JobErrorCode.JOB_HUNG
    assert json.loads(parse_envelope(end_of_stream(ConnectError(Code.INTERNAL, "x")))[1]) == {
        "error": {"code": "internal", "message": "x"}
    }

    value = b"\xfb\xff\x01"
    padded, urlsafe = base64.b64encode(value).decode(), base64.urlsafe_b64encode(value).decode()
    end = {
        "error": {
            "code": "no_such_code",
            "message": "m",
            "details": [
                {"type": "a.B", "value": padded},
                {"type": "a.C", "value": urlsafe.rstrip("=")},
                {"type": "a.D"},
                {"value": padded},
                "garbage",
                {"type": "a.E", "value": 7},
            ],
        }
    }
    got = error_from_end_of_stream(end)
    assert got is not None and got.code == Code.UNKNOWN
    assert [(d.type_name, d.message_bytes) for d in got.details] == [
        ("a.B", value),
        ("a.C", value),
    ]
    assert error_from_end_of_stream({}) is None
    for malformed in ([], "x", None):
        got = error_from_end_of_stream(malformed)
        assert got is not None and got.code == Code.INTERNAL
    got = error_from_end_of_stream({"error": "x"})
    assert got is not None and got.code == Code.UNKNOWN


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


# -- the origin rule ---------------------------------------------------------------

APP = "https://app.example.com"
EVIL = "https://evil.example"


def with_origin(origin: str) -> list[tuple[bytes, bytes]]:
    return [*HEADERS, (b"origin", origin.encode())]


async def refused(server: Server, method: str, origin: str, *frames: bytes) -> None:
    """The upgrade from `origin` is refused before it is accepted: HTTP 403."""
    with pytest.raises(ConnectionRejected) as rejected:
        await call(server, method, *frames, headers=with_origin(origin))
    assert rejected.value.status_code == 403
    assert b"origin not allowed" in (rejected.value.body or b"")


async def update_works(server: Server, job_id: str, origin: str | None) -> None:
    headers = HEADERS if origin is None else with_origin(origin)
    request = pd.UpdateJobRequest(job_id=job_id)
    (response, end) = await call(
        server, "UpdateJob", envelope(request.SerializeToString()), headers=headers
    )
    assert response[0] == 0 and end == (END_STREAM, b"{}")


@pytest.mark.parametrize("cors_origins", [(), (APP,)], ids=["no-cors-origin", "cors-origin"])
async def test_upgrades_from_a_foreign_origin_are_refused(
    make_server: ServerFactory,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
    cors_origins: tuple[str, ...],
) -> None:
    """A page on another origin, holding a valid PSK, can neither report on a job nor
    take one: the upgrade is refused with 403 before the call runs, and a warning
    (without a traceback) says why. The same for `Origin: null`."""
    caplog.set_level(logging.INFO)
    server = await make_server(cors_origins=cors_origins)
    jobs = Jobs(server)
    job = await jobs.create()
    assert (await (await TestDaemon(server, "ws-client").acquire(nursery)).wait()).job_id
    update = pd.UpdateJobRequest(job_id=job.id, logs=[pd.Log(output="from evil", stage="X")])
    await refused(server, "UpdateJob", EVIL, envelope(update.SerializeToString()))
    assert "from evil" not in [line.output for line in await jobs.logs(job.id)]

    pending = await jobs.create()
    cancel = envelope(pd.CancelAcquire().SerializeToString())
    await refused(server, "AcquireJobWithCancel", EVIL, cancel)
    await refused(server, "AcquireJobWithCancel", "null", cancel)
    await trio.sleep(0.2)
    assert (await jobs.get(pending.id)).status == pb.JOB_STATUS_PENDING
    assert server.scheduler.statistics().waiters == 0

    warnings = [r for r in caplog.records if r.name == "provd.rpc.cors"]
    assert len(warnings) == 3 and all(r.levelno == logging.WARNING for r in warnings)
    assert EVIL in warnings[0].getMessage() and "--cors-origin" in warnings[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


async def test_upgrades_from_allowed_origins_and_without_one_work(
    make_server: ServerFactory, nursery: trio.Nursery
) -> None:
    """Allowed: an origin --cors-origin names, the server's own origin (with or
    without --cors-origin), no Origin at all (daemons), and any origin with `*`."""
    for cors_origins, allowed in [
        ((APP,), [APP, None, "SERVER"]),
        ((), [None, "SERVER"]),
        (("*",), [EVIL, "null", None, "SERVER"]),
    ]:
        server = await make_server(cors_origins=cors_origins)
        job = await Jobs(server).create()
        assert (await (await TestDaemon(server, "ws-client").acquire(nursery)).wait()).job_id
        for origin in allowed:
            await update_works(server, job.id, server.url if origin == "SERVER" else origin)
