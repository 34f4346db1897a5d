"""OpenTelemetry spans for provd: one per RPC, one per job's wait in the queue.

Imported only through `provd.tracing` when tracing is on. Finished spans are
collected on trio's thread and exported in batches by a task in provd's nursery,
which hands each batch to a worker thread: the loop never waits on the collector,
and no exporter thread outlives the server (the SDK's BatchSpanProcessor would
start one of its own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import trio
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from provd import __version__
from provd.model import Daemon, Job

# The SDK's defaults for its batch processor (OTEL_BSP_*), kept here too.
DEFAULT_DELAY_MS: Final = 5000
DEFAULT_MAX_BATCH: Final = 512
DEFAULT_MAX_QUEUE: Final = 2048
_NS_PER_MS: Final = 1_000_000
_PROPAGATOR = TraceContextTextMapPropagator()
_GRPC_OK = "0"

Scope = dict[str, Any]
ASGIApp = Any


def traces_endpoint(environ: Mapping[str, str]) -> str:
    """Where spans go, as the OTLP/HTTP specification derives it: the traces endpoint
    as given, else the base endpoint with `/v1/traces` appended."""
    explicit = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if explicit:
        return explicit
    return environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip().rstrip("/") + "/v1/traces"


def _int_setting(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


class TrioBatchProcessor(SpanProcessor):
    """Keeps finished spans until `run` exports them: every `delay_seconds`, or at
    once when a batch is full. Past `max_queue` waiting spans, new ones are dropped
    (and counted) rather than slowing provd down."""

    def __init__(
        self, exporter: SpanExporter, *, delay_seconds: float, max_batch: int, max_queue: int
    ) -> None:
        self._exporter = exporter
        self._delay_seconds = delay_seconds
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._pending: list[ReadableSpan] = []
        self._batch_full = trio.Event()
        self.dropped = 0

    def on_end(self, span: ReadableSpan) -> None:
        if len(self._pending) >= self._max_queue:
            self.dropped += 1
            return
        self._pending.append(span)
        if len(self._pending) >= self._max_batch:
            self._batch_full.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # `run` flushes when it is cancelled

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Export batches until cancelled, then what is left, once."""
        task_status.started()
        try:
            while True:
                with trio.move_on_after(self._delay_seconds):
                    await self._batch_full.wait()
                self._batch_full = trio.Event()
                await self._export_pending()
        finally:
            with trio.CancelScope(shield=True):
                await self._export_pending()
                await trio.to_thread.run_sync(self._exporter.shutdown)

    async def _export_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            # The exporter's own timeout (OTEL_EXPORTER_OTLP_TIMEOUT) bounds the call.
            await trio.to_thread.run_sync(self._exporter.export, batch)


class Tracing:
    """provd's tracer, its exporting task, and the places spans are made."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        service_name: str = "provd",
        delay_seconds: float = DEFAULT_DELAY_MS / 1000,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.processor = TrioBatchProcessor(
            exporter, delay_seconds=delay_seconds, max_batch=max_batch, max_queue=max_queue
        )
        resource = Resource.create({"service.name": service_name, "service.version": __version__})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(self.processor)
        self.tracer: Tracer = provider.get_tracer("provd", __version__)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Tracing:
        """Configured as the OpenTelemetry specification's environment variables say
        (headers, certificates, timeout and compression are read by the exporter)."""
        return cls(
            OTLPSpanExporter(endpoint=traces_endpoint(environ)),
            service_name=environ.get("OTEL_SERVICE_NAME", "").strip() or "provd",
            delay_seconds=_int_setting(environ, "OTEL_BSP_SCHEDULE_DELAY", DEFAULT_DELAY_MS) / 1000,
            max_batch=_int_setting(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_MAX_BATCH),
            max_queue=_int_setting(environ, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The exporting task; run it in the server's nursery."""
        await self.processor.run(task_status=task_status)

    def around(self, app: ASGIApp) -> ASGIApp:
        """`app` with a server span around each RPC."""
        return RpcSpans(app, self.tracer)

    def job_handed_over(self, job: Job, daemon: Daemon) -> None:
        """A span for `job`'s wait in the queue, from its creation to its claim, in the
        trace of the request that created it (its `trace_metadata`)."""
        if job.started_at is None:
            return
        span = self.tracer.start_span(
            "job queued",
            context=_PROPAGATOR.extract(dict(job.trace_metadata)),
            kind=SpanKind.INTERNAL,
            start_time=job.created_at * _NS_PER_MS,
            attributes={
                "provd.job.id": job.id,
                "provd.job.type": job.type.value,
                "provd.job.provisioner": job.provisioner,
                "provd.job.organization": job.organization,
                "provd.daemon.name": daemon.name,
            },
        )
        span.end(end_time=max(job.started_at, job.created_at) * _NS_PER_MS)


def rpc_system(content_type: str) -> str:
    """The RPC protocol a request's content type names (its `rpc.system`)."""
    if content_type.startswith("application/grpc-web"):
        return "grpc-web"
    if content_type.startswith("application/grpc"):
        return "grpc"
    return "connect_rpc"


class RpcSpans:
    """ASGI middleware: a SERVER span per RPC (`/<package.Service>/<Method>`), child
    of the caller's `traceparent`, ended when the response is; its status is the
    gRPC status (from headers or trailers) or the HTTP status for Connect."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self._app = app
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path: str = scope.get("path", "")
        service, _, method = path[1:].rpartition("/")
        if scope["type"] != "http" or "." not in service or not method:
            await self._app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        system = rpc_system(headers.get("content-type", ""))
        span = self._tracer.start_span(
            f"{service}/{method}",
            context=_PROPAGATOR.extract(headers, context=Context()),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": system, "rpc.service": service, "rpc.method": method},
        )

        async def traced_send(message: Scope) -> None:
            if message["type"] == "http.response.start":
                span.set_attribute("http.response.status_code", message["status"])
                _grpc_status(span, message.get("headers", ()))
                if message["status"] >= 400:
                    span.set_status(Status(StatusCode.ERROR, f"HTTP {message['status']}"))
            elif message["type"] == "http.response.trailers":
                _grpc_status(span, message.get("headers", ()))
            await send(message)

        try:
            await self._app(scope, receive, traced_send)
        except BaseException as error:
            if not isinstance(error, trio.Cancelled):
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
        finally:
            span.end()


def _grpc_status(span: Span, headers: Sequence[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if name.lower() == b"grpc-status":
            code = value.decode("latin-1")
            span.set_attribute("rpc.grpc.status_code", int(code) if code.isdigit() else -1)
            if code != _GRPC_OK:
                span.set_status(Status(StatusCode.ERROR, f"gRPC status {code}"))
