"""HTTP/1.1: a call refused before its body was read still reaches the client cleanly.

A client that writes the headers and then the body (connect-node does) must not be cut
off when the server answers early (an auth failure on gRPC-web): provd reads the rest of
the body, answers, and keeps the connection for the next request.
"""

from __future__ import annotations

import trio

from tests.conftest import Server

GRPC_WEB_LIST_JOBS = (
    b"POST /provd.v1.JobService/ListJobs HTTP/1.1\r\n"
    b"Host: provd\r\n"
    b"Content-Type: application/grpc-web+proto\r\n"
    b"X-Grpc-Web: 1\r\n"
    b"Content-Length: 5\r\n"
    b"\r\n"
)
EMPTY_MESSAGE = b"\0\0\0\0\0"


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    """One chunked HTTP/1.1 response (through its last chunk), taken off `buffer`."""
    with trio.fail_after(10):
        while b"\r\n0\r\n\r\n" not in buffer:
            chunk = await stream.receive_some()
            assert chunk, f"connection closed after {bytes(buffer)!r}"
            buffer += chunk
    end = buffer.index(b"\r\n0\r\n\r\n") + 7
    response = bytes(buffer[:end])
    del buffer[:end]
    return response


async def test_early_error_waits_for_the_body_and_keeps_the_connection(server: Server) -> None:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    buffer = bytearray()
    async with stream:
        for _ in range(2):
            await stream.send_all(GRPC_WEB_LIST_JOBS)
            await trio.sleep(0.2)  # the server has refused the call by now
            await stream.send_all(EMPTY_MESSAGE)
            response = await read_response(stream, buffer)
            assert response.startswith(b"HTTP/1.1 200")
            assert b"grpc-status: 16" in response  # unauthenticated
            assert b"connection: close" not in response.lower()
