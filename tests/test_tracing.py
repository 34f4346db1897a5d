"""provd's own spans over OTLP/HTTP (the extra provd[otel]), received by a real HTTP
endpoint in the test that decodes them as a collector would."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from provd.client.connect import call, http2_client, job_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.tracing import otel_environment, tracing_wanted
from tests.conftest import ADMIN_TOKEN, ServerFactory
from tests.daemon_clients import Jobs, TestDaemon
from tests.processes import provd_env, start_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


class Collector:
    """An OTLP/HTTP traces endpoint: every span it was sent, decoded."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.url = ""
        self.received = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        self.received.set()
        self.received = trio.Event()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, found: Callable[[list[Span]], bool], timeout: float = 20) -> None:
        """Until `found` holds for the spans received (a hang guard, not a timing)."""
        with trio.fail_after(timeout):
            while not found(self.spans):
                await self.received.wait()

    def named(self, name: str) -> list[Span]:
        return [span for span in self.spans if span.name == name]


@pytest.fixture
async def collector(nursery: trio.Nursery) -> Collector:
    collector = Collector()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    binds = await nursery.start(hypercorn_serve, collector, config)
    collector.url = binds[0]
    return collector


def _environment(collector: Collector) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "50"}


async def test_an_rpc_span_and_the_jobs_wait_continue_the_callers_trace(
    make_server: ServerFactory, collector: Collector, nursery: trio.Nursery
) -> None:
    environment = tuple(_environment(collector).items())
    server = await make_server(otel_environment=environment)
    jobs = job_client(server.url, ADMIN_TOKEN)
    request = pb.CreateJobRequest(
        provisioner="echo",
        file_hash=await Jobs(server).file_hash(),
        template_import=pb.TemplateImportInput(),
    )
    created = await call(jobs.create_job, request, headers={"traceparent": TRACEPARENT})
    acquired = await (await TestDaemon(server, "tracer").acquire(nursery)).wait()
    assert acquired.job_id == created.id
    await collector.wait_for(lambda spans: any(s.name == "job queued" for s in spans))

    (create,) = collector.named("provd.v1.JobService/CreateJob")
    assert (create.trace_id.hex(), create.parent_span_id.hex()) == (TRACE_ID, CALLER_SPAN)
    assert create.kind == Span.SPAN_KIND_SERVER
    attributes = {a.key: a.value.string_value for a in create.attributes}
    assert attributes["rpc.system"] == "connect_rpc"
    assert attributes["rpc.method"] == "CreateJob"

    (queued,) = collector.named("job queued")
    assert (queued.trace_id.hex(), queued.parent_span_id.hex()) == (TRACE_ID, CALLER_SPAN)
    job_attributes = {a.key: a.value.string_value for a in queued.attributes}
    assert job_attributes["provd.job.id"] == created.id
    assert job_attributes["provd.daemon.name"] == "tracer"
    assert 0 < queued.start_time_unix_nano <= queued.end_time_unix_nano
    # The daemon gets the same context, to continue the trace itself.
    assert acquired.trace_metadata["traceparent"] == TRACEPARENT


async def test_a_failed_grpc_call_is_an_error_span_with_its_status(
    make_server: ServerFactory, collector: Collector
) -> None:
    server = await make_server(otel_environment=tuple(_environment(collector).items()))
    jobs = job_client(
        server.url, ADMIN_TOKEN, protocol=ProtocolType.GRPC, http_client=http2_client()
    )
    with pytest.raises(ConnectError) as caught:
        await call(jobs.get_job, pb.GetJobRequest(id="not-a-job-id"))
    assert caught.value.code == Code.INVALID_ARGUMENT
    await collector.wait_for(lambda spans: any(s.name.endswith("/GetJob") for s in spans))
    (span,) = collector.named("provd.v1.JobService/GetJob")
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["rpc.system"].string_value == "grpc"
    assert attributes["rpc.grpc.status_code"].int_value == 3  # INVALID_ARGUMENT
    assert span.status.code == span.status.STATUS_CODE_ERROR
    assert span.parent_span_id == b""  # no caller context: a new trace


@pytest.mark.slow
async def test_provd_serve_exports_spans_when_the_environment_asks(
    tmp_path: Path, collector: Collector, nursery: trio.Nursery
) -> None:
    server = await start_server(
        nursery, tmp_path / "provd.db", env=provd_env(**_environment(collector))
    )
    jobs = job_client(server.url, ADMIN_TOKEN)
    await call(jobs.list_jobs, pb.ListJobsRequest(), headers={"traceparent": TRACEPARENT})
    await collector.wait_for(lambda spans: any(s.name.endswith("/ListJobs") for s in spans))
    (span,) = collector.named("provd.v1.JobService/ListJobs")
    assert span.trace_id.hex() == TRACE_ID
    server.signal(signal.SIGTERM)
    assert await server.wait() == 0


def test_the_environment_decides_whether_spans_are_wanted() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert tracing_wanted(endpoint)
    assert tracing_wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"})
    assert not tracing_wanted({})
    assert not tracing_wanted({**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing_wanted({**endpoint, "OTEL_TRACES_EXPORTER": "none"})
    assert otel_environment({**endpoint, "PATH": "/bin"}) == tuple(endpoint.items())
    assert otel_environment({"PATH": "/bin"}) == ()


def test_the_server_imports_no_opentelemetry_unless_asked() -> None:
    """Without the OTEL_* environment nothing of OpenTelemetry is imported, even with
    the extra installed (as it is here)."""
    script = (
        "import sys, provd.app, provd.cli.serve, provd.rpc.app;"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')];"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
