"""provd's own OpenTelemetry spans: optional, and free when off.

With the extra `provd[otel]` installed and an OTLP endpoint set in the standard
environment (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
`provd serve` exports one span per RPC and one per job's wait in the queue, over
OTLP/HTTP. Without the extra, or without an endpoint, nothing of OpenTelemetry is
imported. The spans themselves live in `provd._otel`, imported only from here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provd._otel import Tracing

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_EXPORTER_PACKAGE = "opentelemetry.exporter.otlp.proto.http"


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """Whether `environ` asks for spans: an OTLP endpoint is set, the SDK is not
    disabled, the traces exporter is OTLP (the default)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() not in ("otlp", ""):
        return False
    return any(environ.get(name, "").strip() for name in _ENDPOINTS)


def tracing_installed() -> bool:
    """Whether the extra `provd[otel]` is installed (its exporter is importable)."""
    try:
        return importlib.util.find_spec(_EXPORTER_PACKAGE) is not None
    except ModuleNotFoundError:
        return False


def open_tracing(environ: Mapping[str, str]) -> Tracing:
    """The exporter and tracer, configured by the standard `OTEL_*` variables in
    `environ` (endpoint, `OTEL_SERVICE_NAME`, `OTEL_BSP_*`; headers, certificates,
    timeout and compression are read by the exporter itself). Run its `run` task in
    a nursery."""
    from provd._otel import Tracing

    return Tracing.from_environment(environ)


def otel_environment(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The `OTEL_*` variables of `environ` when they ask for spans, else (): what
    `ServerSettings.otel_environment` carries to the server and its workers."""
    if not tracing_wanted(environ):
        return ()
    return tuple(sorted((k, v) for k, v in environ.items() if k.startswith("OTEL_")))
