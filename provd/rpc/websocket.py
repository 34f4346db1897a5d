"""The daemon protocol over WebSocket, for clients that cannot hold an HTTP/2
bidirectional stream (browsers, HTTP/1.1-only proxies). See docs/websocket.md.

`ws[s]://HOST:PORT/provisionerd.ProvisionerDaemon/<Method>`, with the same headers
as over HTTP (daemon key or PSK, identity). Each WebSocket binary message carries one
Connect envelope: a flags byte, a 4-byte big-endian length, then the protobuf
message. The client sends its request message(s) and may end its side with an
envelope flagged end-of-stream (0x02). The server sends its response message(s),
then an end-of-stream envelope holding Connect's end-of-stream JSON (`{}`, or
`{"error": {"code": ..., "message": ..., "details": [...]}}`), then closes. Requests
run through the same handler as over HTTP, so an acquire stream answers exactly once.

Browsers apply no CORS to WebSockets: the origin rule for upgrades sent from a page
(refused with 403 unless the origin is allowed or the server's own) is enforced by
the CORS layer around the whole app (rpc/cors.py), before this route accepts anything.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import Headers, RequestContext
from google.protobuf.message import DecodeError, Message

from provd import errors
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.rpc.auth import DaemonAuth
from provd.rpc.errors import to_connect_error
from provd.rpc.provisionerd_handler import ProvisionerDaemonHandler
from provd.websocket_framing import (
    END_STREAM,
    PROVISIONER_DAEMON_SERVICE,
    end_of_stream,
    envelope,
    parse_envelope,
)

if TYPE_CHECKING:
    from provd.metrics import Metrics

# method -> (request type, response type, bidi?)
_METHODS: dict[str, tuple[type[Message], type[Message], bool]] = {
    "AcquireJobWithCancel": (pd.CancelAcquire, pd.AcquiredJob, True),
    "AcquireJob": (pd.Empty, pd.AcquiredJob, False),
    "UpdateJob": (pd.UpdateJobRequest, pd.UpdateJobResponse, False),
    "FailJob": (pd.FailedJob, pd.Empty, False),
    "CompleteJob": (pd.CompletedJob, pd.Empty, False),
    "CommitQuota": (pd.CommitQuotaRequest, pd.CommitQuotaResponse, False),
}

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _Messages:
    """The client's side of one WebSocket RPC as request messages."""

    def __init__(self, receive: Receive, request_type: type[Message]) -> None:
        self._receive = receive
        self._type = request_type

    async def next(self) -> Message | None:
        """The next request message; None once the client ended its side."""
        event = await self._receive()
        if event["type"] == "websocket.disconnect":
            raise ConnectError(Code.CANCELED, "Client disconnected")
        data = event.get("bytes")
        if data is None:
            raise ConnectError(Code.INVALID_ARGUMENT, "send binary WebSocket messages")
        flags, payload = parse_envelope(data)
        if flags & END_STREAM:
            return None
        try:
            return self._type.FromString(payload)
        except DecodeError as error:
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"bad {self._type.__name__}: {error}"
            ) from None

    async def stream(self) -> AsyncIterator[Message]:
        while (message := await self.next()) is not None:
            yield message


class WebSocketTransport:
    """An ASGI app for `websocket` scopes that serves `ProvisionerDaemon`."""

    def __init__(
        self, handler: ProvisionerDaemonHandler, auth: DaemonAuth, metrics: Metrics | None = None
    ) -> None:
        """`metrics` counts and times each call, as `RpcMetrics` does over HTTP."""
        self._handler = handler
        self._auth = auth
        self._metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        started = time.perf_counter()
        error: ConnectError | None = None
        try:
            await self._serve(scope, receive, send)
        except ConnectError as raised:
            error = raised
        except errors.ProvdError as raised:
            error = to_connect_error(raised)
        if self._metrics is not None:
            self._count(scope["path"], error, time.perf_counter() - started)
        try:
            await send({"type": "websocket.send", "bytes": end_of_stream(error)})
            await send({"type": "websocket.close", "code": 1000})
        except Exception:  # the client is gone; there is no one to tell
            return

    def _count(self, path: str, error: ConnectError | None, seconds: float) -> None:
        """Count the call; a path that names no method counts as one label, not one
        per path a client made up."""
        service, _, method = path.lstrip("/").partition("/")
        known = service == PROVISIONER_DAEMON_SERVICE and method in _METHODS
        assert self._metrics is not None
        self._metrics.rpc(
            f"{service}/{method}" if known else "unknown",
            "websocket",
            "ok" if error is None else str(error.code.value),
            seconds,
        )

    async def _serve(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        service, _, method = scope["path"].lstrip("/").partition("/")
        if service != PROVISIONER_DAEMON_SERVICE or method not in _METHODS:
            raise ConnectError(Code.UNIMPLEMENTED, f"no WebSocket method {scope['path']}")
        request_type, response_type, bidi = _METHODS[method]
        headers = Headers()
        for name, value in scope.get("headers", ()):
            headers.add(name.decode("latin-1").lower(), value.decode("latin-1"))
        ctx: RequestContext[Any, Any] = RequestContext(
            method=MethodInfo(
                name=method,
                service_name=PROVISIONER_DAEMON_SERVICE,
                input=request_type,
                output=response_type,
                idempotency_level=IdempotencyLevel.UNKNOWN,
                stream_type=StreamType.BIDI_STREAM if bidi else StreamType.UNARY,
            ),
            http_method="GET",
            request_headers=headers,
        )
        await self._auth.on_start(ctx)
        messages = _Messages(receive, request_type)
        if bidi:
            responses = self._handler.acquire_job_with_cancel(messages.stream(), ctx)
            async with aclosing(responses):
                async for response in responses:
                    # Handing the message to the transport is this send; if it
                    # fails, closing the handler's generator gives the job back.
                    await send(
                        {"type": "websocket.send", "bytes": envelope(response.SerializeToString())}
                    )
            return
        request = await messages.next()
        if request is None:
            raise ConnectError(Code.INVALID_ARGUMENT, f"{method} needs one request message")
        handler = getattr(self._handler, _snake(method))
        response = await handler(request, ctx)
        await send({"type": "websocket.send", "bytes": envelope(response.SerializeToString())})


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
