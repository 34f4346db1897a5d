"""The one ASGI application provd serves, assembled here and nowhere else.

From the outside in: CORS (for `--cors-origin`), draining HTTP/1.1 bodies an early
answer left unread, then a router that picks each service's Connect app by path
(connectrpc's generated apps speak Connect, gRPC and gRPC-web on their own), the
WebSocket route, and lifespan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectrpc.interceptor import Interceptor
from connectrpc.server import ConnectASGIApplication

from provd.dispatch import Dispatcher
from provd.gen.provd.v1.daemons_connect import DaemonServiceASGIApplication
from provd.gen.provd.v1.jobs_connect import JobServiceASGIApplication
from provd.gen.provd.v1.quota_connect import QuotaServiceASGIApplication
from provd.gen.provisionerd.provisionerd_connect import ProvisionerDaemonASGIApplication
from provd.job_service import JobService
from provd.registry import DaemonRegistry
from provd.rpc.admin_handlers import DaemonServiceHandler, QuotaServiceHandler
from provd.rpc.auth import BearerTokenAuth, DaemonKeyAuth
from provd.rpc.cors import with_cors
from provd.rpc.errors import ErrorMapping
from provd.rpc.http1 import DrainRequestBody
from provd.rpc.job_handler import JobServiceHandler
from provd.rpc.provisionerd_handler import ProvisionerDaemonHandler
from provd.rpc.reflection import reflection_apps
from provd.rpc.websocket import WebSocketTransport
from provd.store import Store

Scope = dict[str, Any]
ASGIApp = Any


class ServiceRouter:
    """Routes `/<package.Service>/<Method>` to the app serving that service."""

    def __init__(
        self, apps: Sequence[ConnectASGIApplication[Any]], websocket: ASGIApp | None = None
    ) -> None:
        self._apps = {app.path: app for app in apps}
        self._websocket = websocket

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
                await _plain(send, 200, b"ok\n")
                return
            app = self._apps.get(path[: path.rfind("/")])
            if app is not None:
                await app(scope, receive, send)
                return
            await _plain(send, 404, b"not found\n")


def build_app(
    *,
    store: Store,
    jobs: JobService,
    dispatcher: Dispatcher,
    registry: DaemonRegistry,
    admin_token: str,
    daemon_psk: str,
    cors_origins: Sequence[str] = (),
) -> ASGIApp:
    """Assemble every service with its auth, error mapping and size limits, and the
    HTTP middleware around them."""
    errors = ErrorMapping()
    daemon_handler = ProvisionerDaemonHandler(dispatcher, registry)
    daemon_auth = DaemonKeyAuth(daemon_psk)
    admin: list[Interceptor] = [BearerTokenAuth(admin_token), errors]
    # JSON carries bytes as base64 (4/3 larger); leave room for the envelope too.
    upload_read_max = jobs.limits.upload_max_bytes * 4 // 3 + 64 * 1024
    router = ServiceRouter(
        [
            JobServiceASGIApplication(
                JobServiceHandler(jobs), interceptors=admin, read_max_bytes=upload_read_max
            ),
            DaemonServiceASGIApplication(DaemonServiceHandler(registry), interceptors=admin),
            QuotaServiceASGIApplication(QuotaServiceHandler(store), interceptors=admin),
            ProvisionerDaemonASGIApplication(daemon_handler, interceptors=[daemon_auth, errors]),
            # No auth: reflection describes the schema (public, in proto/), never data.
            *reflection_apps(),
        ],
        websocket=WebSocketTransport(daemon_handler, daemon_auth),
    )
    return with_cors(DrainRequestBody(router), cors_origins)


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
