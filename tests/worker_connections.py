"""Calls pinned to one worker of `provd serve --workers N`.

The kernel hashes each new connection to one worker's socket, so a caller cannot
choose a worker; it can open connections until one lands on the worker it wants
(/proc tells, `tests.procfs.holders`) and keep that connection. `Pinned` is such a
connection: HTTP/1.1 keep-alive, Connect unary and server-streaming calls, binary
protobuf. Calls block: run them in a worker thread.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import trio
from google.protobuf.message import Message

from tests.conftest import ADMIN_TOKEN
from tests.procfs import holders

M = TypeVar("M", bound=Message)
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Pinned:
    """One keep-alive connection, and the worker (pid) that accepted it."""

    def __init__(self, url: str, headers: Mapping[str, str] = ADMIN_HEADERS) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self._connection.connect()
        assert self._connection.sock is not None
        self.local_port: int = self._connection.sock.getsockname()[1]
        self.server_port = parts.port
        self._headers = dict(headers)
        self.pid = 0

    def unary(self, method: str, request: Message, output: type[M]) -> M:
        """`method` ("provd.v1.JobService/CreateJob"); raises on any non-200 answer."""
        self._connection.request(
            "POST",
            f"/{method}",
            body=request.SerializeToString(),
            headers={
                "Content-Type": "application/proto",
                "Connect-Protocol-Version": "1",
                **self._headers,
            },
        )
        response = self._connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise AssertionError(f"{method}: HTTP {response.status}: {data!r:.300}")
        return output.FromString(data)

    def server_stream(self, method: str, request: Message, output: type[M]) -> Iterator[M]:
        """The messages of a server stream as they arrive, until its end message."""
        payload = request.SerializeToString()
        self._connection.request(
            "POST",
            f"/{method}",
            body=b"\x00" + len(payload).to_bytes(4, "big") + payload,
            headers={
                "Content-Type": "application/connect+proto",
                "Connect-Protocol-Version": "1",
                **self._headers,
            },
        )
        response = self._connection.getresponse()
        if response.status != 200:
            raise AssertionError(f"{method}: HTTP {response.status}: {response.read()!r:.300}")
        while True:
            prefix = response.read(5)
            assert len(prefix) == 5, "the stream ended without its end message"
            data = response.read(int.from_bytes(prefix[1:], "big"))
            if prefix[0] & 0x02:  # the end-of-stream message (JSON: an error, or {})
                assert data in (b"{}", b""), data
                response.read()
                return
            yield output.FromString(data)

    def close(self) -> None:
        self._connection.close()


async def pinned_to(url: str, pid: int, workers: set[int], *, attempts: int = 64) -> Pinned:
    """A connection that the worker `pid` accepted (others opened meanwhile are
    closed). A hang guard bounds the wait; 64 tries all missing one of two workers is
    a chance of 2**-64."""
    port = urlsplit(url).port
    assert port is not None
    for _ in range(attempts):
        connection = await trio.to_thread.run_sync(Pinned, url)
        with trio.fail_after(10):
            while (holder := holders(port, workers).get(connection.local_port)) is None:
                await trio.sleep(0.01)
        if holder == pid:
            connection.pid = pid
            return connection
        connection.close()
    raise AssertionError(f"no connection reached worker {pid} in {attempts} tries")
