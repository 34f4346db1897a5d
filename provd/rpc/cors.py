"""CORS for browsers calling provd with connect-web or gRPC-web, and the same origin
rule for WebSocket upgrades, which browsers send from any page without asking.

`with_cors` always wraps the ASGI app. With `--cors-origin` naming allowed origins:

- A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin
  is answered here: POST and GET, the Connect, gRPC-web and provd request headers, a
  max-age; from any other origin it is refused with 403.
- Every other request from an allowed origin gets `Access-Control-Allow-Origin` and the
  Connect and gRPC-web response headers exposed (gRPC-web puts the status in headers
  when a call fails before any message).

Without any, provd sends no CORS headers and browsers on other origins cannot read its
HTTP responses. Requests without an `Origin` header (every non-browser client) and
lifespan scopes pass through untouched.

WebSocket upgrades: browsers apply no CORS to WebSockets, so a page on any origin could
open the daemon route with a PSK it was given. An upgrade whose `Origin` is neither
allowed by `--cors-origin` (`*` allows any) nor the server's own (the Host header's
origin) is refused before it is accepted: HTTP 403 and a log line. Upgrades without an
`Origin` (daemons, every non-browser client) are not affected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

ASGIApp = Any

logger = logging.getLogger(__name__)

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


_DEFAULT_PORTS = {"http": 80, "https": 443}
WEBSOCKET_REFUSED = b"WebSocket: origin not allowed (see provd serve --cors-origin)\n"


def with_cors(app: ASGIApp, origins: Iterable[str]) -> ASGIApp:
    """`app` with CORS for `origins` (`*` for any) and the origin rule for WebSocket
    upgrades. Wrapped even without origins: then HTTP passes through untouched, and a
    WebSocket upgrade from another origin is still refused."""
    return CORSMiddleware(app, frozenset(parse_origin(origin) for origin in origins))


class CORSMiddleware:
    def __init__(self, app: ASGIApp, origins: frozenset[str]) -> None:
        self._app = app
        self._any = "*" in origins
        self._origins = origins

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http" or not self._origins:
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

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass the upgrade on unless a browser page on a foreign origin sent it; refuse
        that one before accepting it, so the app never runs the call."""
        headers = _headers(scope)
        origin = headers.get(b"origin")
        if origin is None or self._allows(origin) or same_origin(origin, headers.get(b"host")):
            await self._app(scope, receive, send)
            return
        logger.warning(
            "refused a WebSocket upgrade to %s from origin %r: not this server's origin"
            " and not allowed by --cors-origin",
            scope.get("path", "?"),
            origin.decode("latin-1"),
        )
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before its upgrade was answered
        if "websocket.http.response" in (scope.get("extensions") or {}):
            # Says why in the body; a plain websocket.close would be a bare 403.
            response_headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(WEBSOCKET_REFUSED)).encode()),
            ]
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 403,
                    "headers": response_headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": WEBSOCKET_REFUSED})
            return
        await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403

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


def same_origin(origin: bytes, host: bytes | None) -> bool:
    """Whether `origin` names the server the request reached: the same host and port
    as its Host header (a port left out is the origin scheme's default).

    The scheme is not compared, as in Gorilla WebSocket's default CheckOrigin: behind a
    TLS-terminating proxy an `https://` page reaches provd over plain HTTP, and a page
    on the same host and port could only have been served by provd itself. `null`
    (sandboxed frames, file: pages) is never the same origin.
    """
    if host is None:
        return False
    try:
        page = urlsplit(origin.decode("latin-1").strip())
        default_port = _DEFAULT_PORTS.get(page.scheme.lower())
        if default_port is None or not page.hostname:
            return False
        server = urlsplit("//" + host.decode("latin-1").strip())
        return (page.hostname, page.port or default_port) == (
            server.hostname,
            server.port or default_port,
        )
    except ValueError:  # a port that is not a number, a malformed IPv6 literal
        return False


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}
