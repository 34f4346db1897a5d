"""Requests sent byte for byte (HTTP/1.1 over a socket, HTTP/2 with h2) and their
answers as they came: what the fuzz and input-error tests need to send what no
well-behaved client would, and a bare hypercorn with a toy app to
send them to."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11
import trio
import trio.testing
from hypercorn.trio import serve as hypercorn_serve

from provd._compat import hypercorn_fixes
from provd.rpc.connections import ConnectionLimits, limited_config

GRPC_CODES = [
    "ok",
    "canceled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # an HTTP/2 stream reset, or a connection closed without an answer


async def http1(
    url: str, method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> Response:
    """One request on a new HTTP/1.1 connection."""
    host, port = address(url)
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        lines = [f"{method} {target} HTTP/1.1", f"host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if method not in ("GET", "HEAD"):
            lines.append(f"content-length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body
        # h11 parses the answer; it is told of a plain request of the same method
        # (which decides whether an answer has a body), since it refuses odd headers.
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        conn.send(h11.EndOfMessage())
        # Refused before it was all sent (a head too large)? Read the answer all the same.
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(data)
        response: Response | None = None
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    received = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    received = b""
                conn.receive_data(received)
                if not received and response is None:
                    return Response(0, {}, reset=True)
                continue
            if isinstance(event, h11.Response):
                response = Response(
                    event.status_code,
                    {k.decode().lower(): v.decode("latin-1") for k, v in event.headers},
                )
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        assert response is not None
        response.body = b"".join(chunks)
        return response


async def http2(url: str, headers: list[tuple[str, str]], body: bytes) -> Response:
    """One request on a new cleartext HTTP/2 connection (prior knowledge)."""
    host, port = address(url)
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers, end_stream=not body)
        await stream.send_all(conn.data_to_send())
        response = Response(0, {})
        chunks: list[bytes] = []
        ended = False
        sent = 0 if body else len(body)

        def handle(events: list[h2.events.Event]) -> None:
            nonlocal ended
            for event in events:
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    response.status = int(dict(event.headers)[b":status"])
                    response.headers = {
                        k.decode().lower(): v.decode("latin-1") for k, v in event.headers
                    }
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    chunks.append(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == sid:
                    response.trailers = {
                        k.decode().lower(): v.decode("latin-1") for k, v in event.headers
                    }
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    ended = True
                elif isinstance(event, h2.events.ConnectionTerminated) or (
                    isinstance(event, h2.events.StreamReset) and event.stream_id == sid
                ):
                    response.reset = ended = True

        while not ended:
            while sent < len(body) and not ended:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                chunk = body[sent : sent + window]
                sent += len(chunk)
                conn.send_data(sid, chunk, end_stream=sent == len(body))
                await stream.send_all(conn.data_to_send())
            received = await stream.receive_some(65536)
            if not received:
                response.reset = True
                break
            try:
                handle(conn.receive_data(received))
            except h2.exceptions.ProtocolError:
                response.reset = True
                break
            await stream.send_all(conn.data_to_send())
        response.body = b"".join(chunks)
        return response


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


ACQUIRE = "/provisionerd.ProvisionerDaemon/AcquireJobWithCancel"


LIST_JOBS = "/provd.v1.JobService/ListJobs"


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def healthy(url: str) -> bool:
    """Whether the server answers /healthz on a new connection."""
    stream = await trio.open_tcp_stream(*host_port(url))
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: provd\r\n\r\n")
        answer = b""
        with trio.fail_after(10):
            while b"ok\n" not in answer:
                chunk = await stream.receive_some()
                if not chunk:
                    return False
                answer += chunk
    return answer.startswith(b"HTTP/1.1 200")


PING = b"provd-rt"


# The server's answer to PING: it has read and dispatched everything sent before it.
PING_ACK = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + PING


def h2c_call(url: str, *headers: tuple[str, str]) -> bytes:
    """The finding's repro: preface, SETTINGS, HEADERS for ListJobs (without
    credentials unless `headers` has them), an empty DATA frame with END_STREAM; then
    a PING, so the client can leave once the call is under way."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "{}:{}".format(*host_port(url))),
            (":path", LIST_JOBS),
            ("content-type", "application/proto"),
            *headers,
        ],
    )
    conn.send_data(1, b"", end_stream=True)
    conn.ping(PING)
    return conn.data_to_send()


@asynccontextmanager
async def bare_hypercorn(
    app: Callable[..., Awaitable[None]], nursery: trio.Nursery
) -> AsyncIterator[str]:
    """`app` alone behind hypercorn with provd's fixes and limits: the layer under test."""
    hypercorn_fixes.apply()
    config = limited_config(ConnectionLimits())
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    stop = trio.Event()
    binds: list[str] = await nursery.start(
        partial(hypercorn_serve, app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    )
    try:
        yield binds[0]
    finally:
        stop.set()


async def lifespan(receive: Any, send: Any) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})
