"""HTTP/1.1: read the rest of a request body before the response ends.

A call can fail before its request body is read: an auth interceptor refuses a gRPC-web
or streaming call as soon as its headers arrive. hypercorn then closes the connection
with the client's body still unread, the kernel answers the client's remaining bytes
with a reset, and the client sees `EPIPE`/`ECONNRESET` instead of the error it was
sent (connect-node's gRPC-web over HTTP/1.1 did, one call in three). Reading the
body to its end first lets the client finish writing, read the answer, and keep the
connection. HTTP/2 needs none of this: a stream ends on its own.

The read is bounded in time and size; past either, the connection closes as before.
"""

from __future__ import annotations

from typing import Any

import trio

ASGIApp = Any

DRAIN_SECONDS = 5.0
DRAIN_MAX_BYTES = 64 * 1024 * 1024


class DrainRequestBody:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("http_version") not in ("1.0", "1.1"):
            await self._app(scope, receive, send)
            return
        request_ended = False

        async def tracked_receive() -> dict[str, Any]:
            nonlocal request_ended
            message: dict[str, Any] = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                request_ended = True
            return message

        async def draining_send(message: dict[str, Any]) -> None:
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if last and not request_ended:
                drained = 0
                with trio.move_on_after(DRAIN_SECONDS):
                    while not request_ended and drained <= DRAIN_MAX_BYTES:
                        drained += len((await tracked_receive()).get("body", b""))
            await send(message)

        await self._app(scope, tracked_receive, draining_send)
