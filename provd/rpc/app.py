"""The one ASGI application provd serves, assembled here and nowhere else.

From the outside in: CORS (for `--cors-origin`) and the origin rule for WebSocket
upgrades, draining HTTP/1.1 bodies an early answer left unread, then a router that
picks each service's Connect app by path (connectrpc's generated apps speak Connect,
gRPC and gRPC-web on their own, with provd's codecs: see rpc/codecs.py), the
WebSocket route, the web dashboard's static files at `/` and `/ui/` (rpc/dashboard.py),
and lifespan.

gRPC needs HTTP/2 (its status travels in trailers, which HTTP/1.1 here cannot send).
A gRPC request over HTTP/1.1 (a proxy that downgraded it, curl without
`--http2-prior-knowledge`) is answered by the router itself, before connectrpc, with
`unimplemented` and a message that says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from connectrpc.interceptor import Interceptor

from provd.dispatch import Dispatcher
from provd.gen.provd.v1.backup_connect import BackupServiceASGIApplication
from provd.gen.provd.v1.daemons_connect import DaemonServiceASGIApplication
from provd.gen.provd.v1.jobs_connect import JobServiceASGIApplication
from provd.gen.provd.v1.keys_connect import KeyServiceASGIApplication
from provd.gen.provd.v1.quota_connect import QuotaServiceASGIApplication
from provd.gen.provisionerd.provisionerd_connect import ProvisionerDaemonASGIApplication
from provd.job_service import JobService
from provd.keys import DaemonKeys
from provd.metrics import Metrics, RpcMetrics
from provd.registry import DaemonRegistry
from provd.rpc import (
    compression,  # noqa: F401 - small messages go plain
    connect_fixes,  # noqa: F401 - applies the fix on import
)
from provd.rpc.admin_handlers import DaemonServiceHandler, QuotaServiceHandler
from provd.rpc.auth import BearerTokenAuth, DaemonAuth
from provd.rpc.backup_handler import BackupServiceHandler
from provd.rpc.codecs import codecs
from provd.rpc.cors import with_cors
from provd.rpc.dashboard import Dashboard, is_dashboard_path
from provd.rpc.errors import ErrorMapping
from provd.rpc.health import Endpoint, plain
from provd.rpc.http1 import DrainRequestBody
from provd.rpc.job_handler import JobServiceHandler
from provd.rpc.key_handler import KeyServiceHandler
from provd.rpc.page_tokens import PageTokens
from provd.rpc.provisionerd_handler import ProvisionerDaemonHandler
from provd.rpc.reflection import reflection_apps
from provd.rpc.websocket import WebSocketTransport
from provd.store import Store

Scope = dict[str, Any]
ASGIApp = Any

GRPC_NEEDS_HTTP2 = (
    "gRPC needs HTTP/2 and this request came over HTTP/{version}: use HTTP/2 (over"
    " cleartext, with prior knowledge: curl --http2-prior-knowledge), or gRPC-web or"
    " Connect, which work over HTTP/1.1"
)
_GRPC_UNIMPLEMENTED = b"12"


class ServiceApp(Protocol):
    """An ASGI app serving one RPC service under `path` (`/<package.Service>`)."""

    @property
    def path(self) -> str: ...

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None: ...


class ServiceRouter:
    """Routes `/<package.Service>/<Method>` to the app serving that service, the
    plain `endpoints` (`/readyz`, `/metrics`: rpc/health.py) by their path, and `/`
    and `/ui/...` to the web `dashboard` (rpc/dashboard.py)."""

    def __init__(
        self,
        apps: Sequence[ServiceApp],
        websocket: ASGIApp | None = None,
        endpoints: Mapping[str, Endpoint] | None = None,
        dashboard: ASGIApp | None = None,
    ) -> None:
        self._apps = {app.path: app for app in apps}
        self._websocket = websocket
        self._endpoints = dict(endpoints or {})
        self._dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket" and self._websocket is not None:
            await self._websocket(scope, receive, send)
            return
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == "/healthz":
                await plain(send, 200, b"ok\n")
                return
            endpoint = self._endpoints.get(path)
            if endpoint is not None:
                await endpoint(send)
                return
            if self._dashboard is not None and is_dashboard_path(path):
                await self._dashboard(scope, receive, send)
                return
            app = self._apps.get(path[: path.rfind("/")])
            if app is not None:
                if _is_grpc(scope) and scope.get("http_version", "2") in ("1.0", "1.1"):
                    message = GRPC_NEEDS_HTTP2.format(version=scope["http_version"])
                    await _grpc_error(send, _GRPC_UNIMPLEMENTED, message)
                    return
                await app(scope, receive, send)
                return
            await plain(send, 404, b"not found\n")


def build_app(
    *,
    store: Store,
    jobs: JobService,
    dispatcher: Dispatcher,
    registry: DaemonRegistry,
    keys: DaemonKeys,
    admin_token: str,
    daemon_psk: str,
    cors_origins: Sequence[str] = (),
    metrics: Metrics | None = None,
    endpoints: Mapping[str, Endpoint] | None = None,
) -> ASGIApp:
    """Assemble every service with its auth, error mapping and size limits, and the
    HTTP middleware around them. Daemons authenticate with a daemon key from `keys`
    or with `daemon_psk` (empty: the pre-shared key is off). `metrics` counts and
    times every RPC; `endpoints` are plain HTTP paths (rpc/health.py)."""
    errors = ErrorMapping()
    daemon_auth = DaemonAuth(daemon_psk, keys)
    daemon_handler = ProvisionerDaemonHandler(dispatcher, registry, daemon_auth)
    # First in every list: its on_end runs last and sees the status the client gets.
    counted: list[Interceptor] = [] if metrics is None else [RpcMetrics(metrics)]
    admin: list[Interceptor] = [*counted, BearerTokenAuth(admin_token), errors]
    # JSON carries bytes as base64 (4/3 larger); leave room for the envelope too.
    upload_read_max = jobs.limits.upload_max_bytes * 4 // 3 + 64 * 1024
    job_handler = JobServiceHandler(jobs, PageTokens.from_admin_token(admin_token))
    router = ServiceRouter(
        [
            JobServiceASGIApplication(
                job_handler, interceptors=admin, read_max_bytes=upload_read_max, codecs=codecs()
            ),
            DaemonServiceASGIApplication(
                DaemonServiceHandler(registry, keys), interceptors=admin, codecs=codecs()
            ),
            KeyServiceASGIApplication(
                KeyServiceHandler(keys, registry), interceptors=admin, codecs=codecs()
            ),
            QuotaServiceASGIApplication(
                QuotaServiceHandler(store), interceptors=admin, codecs=codecs()
            ),
            BackupServiceASGIApplication(
                BackupServiceHandler(store), interceptors=admin, codecs=codecs()
            ),
            ProvisionerDaemonASGIApplication(
                daemon_handler, interceptors=[*counted, daemon_auth, errors], codecs=codecs()
            ),
            # No auth: reflection describes the schema (public, in proto/), never data.
            *reflection_apps(),
        ],
        websocket=WebSocketTransport(daemon_handler, daemon_auth, metrics),
        endpoints=endpoints,
        # Static files only; the page calls the API above like any client.
        dashboard=Dashboard(),
    )
    return with_cors(DrainRequestBody(router), cors_origins)


def _is_grpc(scope: Scope) -> bool:
    """Whether the request is gRPC proper (`application/grpc`, `application/grpc+proto`
    ...), not gRPC-web."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/grpc" or media.startswith(b"application/grpc+")
    return False


async def _grpc_error(send: Any, status: bytes, message: str) -> None:
    """A gRPC trailers-only error: HTTP 200, the status and message in the headers."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/grpc"),
                (b"grpc-status", status),
                # Percent-encoded as the gRPC spec asks (only printable ASCII as is).
                (
                    b"grpc-message",
                    quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode(),
                ),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
