"""Faults in the HTTP layer (hypercorn, fixed in provd/_compat), each forced over real
sockets with a raw client that can put frames in the exact order that matters.

- A gRPC stream must end with its status, whatever the client sends after the answer:
  no RST_STREAM(STREAM_CLOSED) for a CancelAcquire or half-close that arrives after
  the trailers (issue "Hostile input and faults", finding 11).
- A connection the client abandoned must give its socket back, whatever the server
  was doing with it: an HTTP/2 response that ended after the client left (finding 1),
  the same through an HTTP/1.1 `Upgrade: h2c`, an app that answered without reading
  a body the client kept sending, a pipelined client that left while a long answer
  was running. Each must come back promptly, well before `close_grace` (the backstop
  that ends whatever still runs for a closed connection) would force it.
- One bad packet must not stop the server: a WebSocket frame sent before the
  handshake answer used to raise out of hypercorn and end provd.

Descriptor counts are this process's: the server runs in it, so a leaked server-side
socket shows up in /proc/self/fd once the client's own socket is closed.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
import trio
import trio.testing

from provd.rpc.connections import ConnectionLimits
from tests.conftest import ADMIN_TOKEN, DAEMON_PSK, Server
from tests.daemon_clients import Jobs, wait_until
from tests.raw_h2 import RawH2
from tests.raw_http import (
    ACQUIRE,
    LIST_JOBS,
    PING,
    PING_ACK,
    bare_hypercorn,
    h2c_call,
    healthy,
    host_port,
    lifespan,
)

GRPC_EMPTY_MESSAGE = b"\0\0\0\0\0"  # a CancelAcquire: flags 0, length 0
SETTLE_SECONDS = 10.0  # how long a released socket may take to close; a hang guard
# Sockets must come back well before `close_grace`, the backstop that would give them
# back anyway: these tests are about the causes, not the backstop.
PROMPT_SECONDS = ConnectionLimits().close_grace_seconds / 2


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settled_fds(baseline: int, timeout: float = SETTLE_SECONDS) -> int:
    """This process's descriptor count once it is back to `baseline` (or the timeout)."""
    with trio.move_on_after(timeout):
        while open_fds() > baseline:
            await trio.sleep(0.05)
    return open_fds()


async def abandon(url: str, data: bytes, *, rst: bool = False, after: bytes = b"") -> None:
    """Connect, send `data`, wait until the server sent `after`, and leave (FIN, or
    RST with `rst`), without reading the rest."""
    stream = await trio.open_tcp_stream(*host_port(url))
    if rst:
        stream.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.send_all(data)
    received = b""
    with trio.fail_after(10):
        while after not in received:
            chunk = await stream.receive_some()
            assert chunk, f"closed before {after!r}: {received!r}"
            received += chunk
    await stream.aclose()


def h2c_upgrade(*headers: str) -> bytes:
    """ListJobs over HTTP/1.1 with `Upgrade: h2c`: hypercorn answers 101 and serves
    the request over HTTP/2. The client's preface and a PING follow at once."""
    request = (
        f"POST {LIST_JOBS} HTTP/1.1\r\nHost: provd\r\nContent-Type: application/proto\r\n"
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
        + "".join(f"{header}\r\n" for header in headers)
        + "\r\n"
    )
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.ping(PING)
    return request.encode() + conn.data_to_send()


async def abandon_many(url: str, data: bytes, count: int, after: bytes) -> None:
    for n in range(count):
        await abandon(url, data, rst=n % 2 == 1, after=after)


# Finding 11 ----------------------------------------------------------------------


def grpc_acquire_headers(name: str) -> list[tuple[str, str]]:
    return [
        ("content-type", "application/grpc+proto"),
        ("te", "trailers"),
        ("provd-daemon-psk", DAEMON_PSK),
        ("provd-daemon-name", name),
        ("provd-daemon-provisioners", "echo"),
        ("provd-api-version", "1.1"),
    ]


async def round_trip(client: RawH2) -> None:
    """A PING answered: the server has processed everything sent before it."""
    client.conn.ping(b"provd-rt")
    await client.flush()
    with trio.fail_after(10):
        await client.receive_until(lambda event: isinstance(event, h2.events.PingAckReceived))


async def test_grpc_stream_ends_with_its_status_whatever_the_client_sends_after(
    server: Server,
) -> None:
    """hypercorn 0.18 ended a gRPC stream twice (trailers with END_STREAM, then again
    for the end of the body); h2 then considered it closed and answered the client's
    CancelAcquire or half-close with RST_STREAM(STREAM_CLOSED), which a gRPC client
    may read before the trailers and report as INTERNAL. Every round here sends its
    client frames after the answer's trailers: one reset is the failure."""
    jobs = Jobs(server)
    client = RawH2(server.url)
    await client.connect()
    try:
        for n in range(12):
            stream_id = client.open_stream(ACQUIRE, grpc_acquire_headers(f"grpc-daemon-{n}"))
            await client.flush()
            await wait_until(lambda: server.scheduler.statistics().waiters == 1)
            job = await jobs.create()
            with trio.fail_after(10):
                await client.receive_until(
                    lambda event, sid=stream_id: (
                        isinstance(event, h2.events.StreamEnded) and event.stream_id == sid
                    )
                )
            trailers = [
                dict(e.headers)
                for e in client.events
                if isinstance(e, h2.events.TrailersReceived) and e.stream_id == stream_id
            ]
            assert trailers and trailers[0][b"grpc-status"] == b"0", trailers
            assert job.id.encode() in client.data(stream_id)
            if n % 2 == 0:
                client.conn.send_data(stream_id, GRPC_EMPTY_MESSAGE)  # a late CancelAcquire
            client.conn.end_stream(stream_id)  # the half-close
            await client.flush()
            await round_trip(client)
            assert client.rst_frames(stream_id) == [], f"round {n}: {client.rst_frames(stream_id)}"
            await call_complete(server, job.id, f"grpc-daemon-{n}")
    finally:
        await client.aclose()


async def test_a_unary_answer_is_its_headers_and_one_data_frame_that_ends_it(
    server: Server,
) -> None:
    """A Connect unary answer is HEADERS, then DATA carrying END_STREAM: hypercorn sent
    an empty DATA frame to end the stream after the message, each frame in a write of
    its own (provd/_compat/hypercorn_h2.py, 4)."""
    await Jobs(server).create()  # something to list: the answer is not empty
    client = RawH2(server.url)
    await client.connect()
    try:
        for _ in range(3):  # the first call also settles the connection's SETTINGS
            stream_id = client.open_stream(
                LIST_JOBS,
                [("content-type", "application/proto"), ("authorization", f"Bearer {ADMIN_TOKEN}")],
            )
            with trio.fail_after(10):  # a hang guard
                await client.unary_on(stream_id, b"")
            frames = [f for f in client.frames if f.stream_id == stream_id]
            assert [type(f).__name__ for f in frames] == ["HeadersFrame", "DataFrame"], frames
            assert "END_STREAM" in frames[1].flags and frames[1].data, frames[1]
    finally:
        await client.aclose()


async def call_complete(server: Server, job_id: str, name: str) -> None:
    """CompleteJob over Connect JSON/HTTP/1.1, so the next round starts clean."""
    body = json.dumps({"jobId": job_id, "templateImport": {}}).encode()
    stream = await trio.open_tcp_stream(*host_port(server.url))
    async with stream:
        await stream.send_all(
            b"POST /provisionerd.ProvisionerDaemon/CompleteJob HTTP/1.1\r\nHost: provd\r\n"
            b"Content-Type: application/json\r\n"
            + f"Provd-Daemon-Psk: {DAEMON_PSK}\r\nProvd-Daemon-Name: {name}\r\n".encode()
            + b"Provd-Daemon-Provisioners: echo\r\nProvd-Api-Version: 1.1\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive_some()
    assert answer.startswith(b"HTTP/1.1 200"), answer


# Finding 1 -----------------------------------------------------------------------


async def test_abandoned_h2c_calls_give_their_sockets_back(server: Server) -> None:
    """The finding's repro, 60 times each, without and with credentials: a connection
    whose response ended after the client left used to keep its socket for good. The
    client leaves once the server acknowledged its PING, so the call is under way;
    with credentials the answer waits for a database read, so it ends after that."""
    calls = [
        h2c_call(server.url),
        h2c_call(server.url, ("authorization", f"Bearer {ADMIN_TOKEN}")),
    ]
    before = open_fds()
    for call in calls:
        await abandon_many(server.url, call, 5, PING_ACK)  # warm up: database connections
    baseline = await settled_fds(before, timeout=3)
    for call in calls:
        await abandon_many(server.url, call, 60, PING_ACK)
    assert await settled_fds(baseline, timeout=PROMPT_SECONDS) <= baseline
    assert await healthy(server.url)


async def test_abandoned_h2c_upgrades_give_their_sockets_back(server: Server) -> None:
    """The same through HTTP/1.1: `Upgrade: h2c` hands the request to HTTP/2."""
    upgrade = h2c_upgrade(f"Authorization: Bearer {ADMIN_TOKEN}")
    before = open_fds()
    await abandon_many(server.url, upgrade, 5, PING_ACK)  # warm up
    baseline = await settled_fds(before, timeout=3)
    await abandon_many(server.url, upgrade, 60, PING_ACK)
    assert await settled_fds(baseline, timeout=PROMPT_SECONDS) <= baseline
    assert await healthy(server.url)


async def test_app_answering_without_reading_the_body_closes_the_connection(
    nursery: trio.Nursery,
) -> None:
    """hypercorn queues at most ten request events for the app. An app that answers
    without reading a body the client kept sending left ten queued; closing its
    stream then put `http.disconnect` into that full queue, from the app's own task:
    both the app and the connection waited forever, and the socket stayed open."""
    chunks_queued = trio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        await chunks_queued.wait()  # some work, during which the body keeps coming
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": b"too large\n"})

    async with bare_hypercorn(app, nursery) as url:
        stream = await trio.open_tcp_stream(*host_port(url))
        async with stream:
            # Twenty chunks of a chunked body: twenty events for the app's queue.
            await stream.send_all(
                b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"4\r\ndata\r\n" * 20
            )
            # Every task is waiting: the server has read and queued what it could.
            await trio.testing.wait_all_tasks_blocked()
            chunks_queued.set()
            answer = b""
            with trio.fail_after(PROMPT_SECONDS):
                while chunk := await stream.receive_some():
                    answer += chunk
            # The answer, then the server's close: its side of the connection is done.
            assert answer.startswith(b"HTTP/1.1 413") and answer.endswith(b"too large\n")


async def test_pipelining_client_that_left_during_a_long_answer_is_noticed(
    nursery: trio.Nursery,
) -> None:
    """While an HTTP/1.1 answer runs, hypercorn stops reading a connection whose client
    already sent more (pipelining), so it never saw that client leave: the app never
    got its `http.disconnect`, and a long answer (a log follow) held the socket until
    it ended on its own. The socket is now watched for the client's end meanwhile."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first line\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass  # an answer that runs until its client leaves

    async with bare_hypercorn(app, nursery) as url:
        baseline = open_fds()
        stream = await trio.open_tcp_stream(*host_port(url))
        await stream.send_all(b"GET /follow HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        answer = b""
        with trio.fail_after(10):
            while b"first line" not in answer:
                answer += await stream.receive_some()
        await stream.aclose()
        assert await settled_fds(baseline, timeout=PROMPT_SECONDS) <= baseline


# One packet ----------------------------------------------------------------------


async def test_websocket_frame_before_the_handshake_answer_does_not_stop_the_server(
    server: Server,
) -> None:
    """An upgrade request and a frame in one packet, without credentials: the frame
    reaches hypercorn before the app accepted, the 400 it then tries to send cannot be
    sent, and the error used to end provd."""
    frame = b"\x82\x80abcd"  # an empty, masked binary frame
    for _ in range(3):
        stream = await trio.open_tcp_stream(*host_port(server.url))
        async with stream:
            await stream.send_all(
                f"GET {ACQUIRE} HTTP/1.1\r\nHost: provd\r\nUpgrade: websocket\r\n".encode()
                + b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + b"Sec-WebSocket-Version: 13\r\n\r\n"
                + frame
            )
            with trio.fail_after(10):
                while await stream.receive_some():
                    pass
    assert await healthy(server.url)
