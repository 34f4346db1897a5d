"""A CreateJob caller's W3C trace context reaches the daemon in
`AcquiredJob.trace_metadata` (docs/operations.md, Tracing)."""

from __future__ import annotations

import pytest
import trio
from connectrpc.protocol import ProtocolType

from provd.client.connect import call, http2_client, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.rpc.trace_context import trace_metadata_from_headers, valid_traceparent
from tests.conftest import ADMIN_TOKEN, Server
from tests.daemon_clients import Jobs, TestDaemon

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


async def _create_with_headers(
    server: Server, protocol: ProtocolType, headers: dict[str, str], **fields: object
) -> pb.Job:
    client = job_client(server.url, ADMIN_TOKEN, protocol=protocol, http_client=http2_client())
    request = pb.CreateJobRequest(
        provisioner="echo",
        file_hash=await Jobs(server).file_hash(),
        template_import=pb.TemplateImportInput(),
        **fields,  # type: ignore[arg-type]
    )
    return await call(client.create_job, request, headers=headers)


@pytest.mark.parametrize("protocol", [ProtocolType.CONNECT, ProtocolType.GRPC])
async def test_the_callers_traceparent_reaches_the_daemon(
    server: Server, nursery: trio.Nursery, protocol: ProtocolType
) -> None:
    headers = {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    created = await _create_with_headers(server, protocol, headers)
    assert dict(created.trace_metadata) == headers
    acquired = await (await TestDaemon(server, "tracer").acquire(nursery)).wait()
    assert acquired.job_id == created.id
    assert dict(acquired.trace_metadata) == headers


async def test_trace_metadata_in_the_request_wins_over_the_headers(
    server: Server, nursery: trio.Nursery
) -> None:
    own = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}
    created = await _create_with_headers(
        server, ProtocolType.CONNECT, {"traceparent": TRACEPARENT}, trace_metadata=own
    )
    acquired = await (await TestDaemon(server, "tracer").acquire(nursery)).wait()
    assert acquired.job_id == created.id
    assert dict(acquired.trace_metadata) == own


async def test_a_malformed_traceparent_is_ignored_not_refused(
    server: Server, nursery: trio.Nursery
) -> None:
    created = await _create_with_headers(
        server, ProtocolType.CONNECT, {"traceparent": "00-nonsense", "tracestate": TRACESTATE}
    )
    assert dict(created.trace_metadata) == {}
    acquired = await (await TestDaemon(server, "tracer").acquire(nursery)).wait()
    assert (acquired.job_id, dict(acquired.trace_metadata)) == (created.id, {})


@pytest.mark.parametrize(
    ("traceparent", "valid"),
    [
        (TRACEPARENT, True),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", True),
        # A later version may append fields; version 00 may not.
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", True),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", False),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", False),
        ("", False),
    ],
)
def test_traceparent_validation_follows_the_specification(traceparent: str, valid: bool) -> None:
    assert valid_traceparent(traceparent) is valid


def test_a_tracestate_alone_or_too_long_is_left_out() -> None:
    assert trace_metadata_from_headers({"tracestate": TRACESTATE}) == {}
    assert trace_metadata_from_headers({"traceparent": TRACEPARENT, "tracestate": "x" * 513}) == {
        "traceparent": TRACEPARENT
    }
