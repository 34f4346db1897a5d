"""The one ASGI application provd serves: each service's Connect app, by path.

connectrpc's generated apps speak Connect, gRPC and gRPC-web on their own; this
router only picks the app for a request's service prefix and answers lifespan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectrpc.server import ConnectASGIApplication

from provd.gen.provd.v1.jobs_connect import JobServiceASGIApplication
from provd.jobs import Jobs
from provd.rpc.auth import BearerTokenAuth
from provd.rpc.errors import ErrorMapping
from provd.rpc.jobs import JobServiceHandler

Scope = dict[str, Any]
ASGIApp = Any


class ServiceRouter:
    """Routes `/<package.Service>/<Method>` to the app serving that service."""

    def __init__(self, apps: Sequence[ConnectASGIApplication[Any]]) -> None:
        self._apps = {app.path: app for app in apps}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
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


def build_app(*, jobs: Jobs, admin_token: str) -> ServiceRouter:
    """Assemble every service with its auth, error mapping and size limits."""
    errors = ErrorMapping()
    # JSON carries bytes as base64 (4/3 larger); leave room for the envelope too.
    upload_read_max = jobs.limits.upload_max_bytes * 4 // 3 + 64 * 1024
    return ServiceRouter(
        [
            JobServiceASGIApplication(
                JobServiceHandler(jobs),
                interceptors=[BearerTokenAuth(admin_token), errors],
                read_max_bytes=upload_read_max,
            ),
        ]
    )


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
