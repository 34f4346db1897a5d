"""CORS for browsers calling provd with connect-web or gRPC-web.

`with_cors` wraps the ASGI app when `--cors-origin` names allowed origins; without any,
provd sends no CORS headers and browsers on other origins cannot read its responses.

- A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin
  is answered here: POST and GET, the Connect, gRPC-web and provd request headers, a
  max-age; from any other origin it is refused with 403.
- Every other request from an allowed origin gets `Access-Control-Allow-Origin` and the
  Connect and gRPC-web response headers exposed (gRPC-web puts the status in headers
  when a call fails before any message).
- Requests without an `Origin` header (every non-browser client) and WebSocket and
  lifespan scopes pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

ASGIApp = Any

ALLOWED_METHODS = ("POST", "GET")
ALLOWED_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Connect-Protocol-Version",
    "Connect-Timeout-Ms",
    "Connect-Accept-Encoding",
    "Connect-Content-Encoding",
    "Grpc-Timeout",
    "Grpc-Accept-Encoding",
    "X-Grpc-Web",
    "X-User-Agent",
    "Authorization",
    "Provd-Daemon-Psk",
    "Provd-Daemon-Name",
    "Provd-Daemon-Provisioners",
    "Provd-Daemon-Tags",
    "Provd-Daemon-Organization",
    "Provd-Daemon-Version",
    "Provd-Api-Version",
)
EXPOSED_HEADERS = (
    "Grpc-Status",
    "Grpc-Message",
    "Grpc-Status-Details-Bin",
    "Grpc-Encoding",
    "Grpc-Accept-Encoding",
    "Content-Encoding",
    "Connect-Content-Encoding",
    "Connect-Accept-Encoding",
)
# Chrome caps it at 2 hours, Firefox at 24.
MAX_AGE_SECONDS = 7200


def parse_origin(value: str) -> str:
    """`*` or `scheme://host[:port]`, lower-cased; raises ValueError for anything else."""
    value = value.strip()
    if value == "*":
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an origin such as https://app.example.com, got {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"an origin is scheme://host[:port] only, got {value!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


def with_cors(app: ASGIApp, origins: Iterable[str]) -> ASGIApp:
    """`app` with CORS for `origins` (`*` for any); `app` itself if there are none."""
    allowed = frozenset(parse_origin(origin) for origin in origins)
    return CORSMiddleware(app, allowed) if allowed else app


class CORSMiddleware:
    def __init__(self, app: ASGIApp, origins: frozenset[str]) -> None:
        self._app = app
        self._any = "*" in origins
        self._origins = origins

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = _headers(scope)
        origin = headers.get(b"origin")
        if origin is None:
            await self._app(scope, receive, send)
            return
        allowed = self._allows(origin)
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await self._preflight(send, origin if allowed else None, headers)
            return
        if not allowed:
            await self._app(scope, receive, send)
            return
        cors = [
            (b"access-control-allow-origin", b"*" if self._any else origin),
            (b"access-control-expose-headers", ", ".join(EXPOSED_HEADERS).encode()),
        ]
        if not self._any:
            cors.append((b"vary", b"Origin"))

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self._app(scope, receive, send_with_cors)

    def _allows(self, origin: bytes) -> bool:
        return self._any or origin.decode("latin-1").lower() in self._origins

    async def _preflight(
        self, send: Any, origin: bytes | None, request_headers: dict[bytes, bytes]
    ) -> None:
        vary = (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        if origin is None:
            body = b"CORS: origin not allowed (see provd serve --cors-origin)\n"
            headers = [(b"content-type", b"text/plain; charset=utf-8"), vary]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers = [
            (b"access-control-allow-origin", b"*" if self._any else origin),
            (b"access-control-allow-methods", ", ".join(ALLOWED_METHODS).encode()),
            (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
            (b"access-control-max-age", str(MAX_AGE_SECONDS).encode()),
            vary,
        ]
        # Chrome's Private Network Access: a public page calling provd on localhost.
        if request_headers.get(b"access-control-request-private-network") == b"true":
            headers.append((b"access-control-allow-private-network", b"true"))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}
