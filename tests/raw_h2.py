"""A bare HTTP/2 client for the one thing real clients won't do on demand: open an
acquire stream and then vanish at a moment the test chooses."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import trio
from hyperframe.frame import Frame, RstStreamFrame

from tests.conftest import DAEMON_PSK


class VanishingDaemon:
    """Opens `AcquireJobWithCancel` over cleartext HTTP/2 (Connect, binary) and can
    drop the TCP connection without a word."""

    def __init__(self, url: str, name: str, provisioners: str = "echo") -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._name = name
        self._provisioners = provisioners
        self._stream: trio.SocketStream | None = None

    async def open_acquire(self) -> None:
        self._stream = await trio.open_tcp_stream(self._host, self._port)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", f"{self._host}:{self._port}"),
                (":path", "/provisionerd.ProvisionerDaemon/AcquireJobWithCancel"),
                ("content-type", "application/connect+proto"),
                ("connect-protocol-version", "1"),
                ("provd-daemon-psk", DAEMON_PSK),
                ("provd-daemon-name", self._name),
                ("provd-daemon-provisioners", self._provisioners),
                ("provd-api-version", "1.1"),
            ],
        )
        await self._stream.send_all(conn.data_to_send())

    async def vanish(self) -> None:
        """Close the connection abruptly: no CancelAcquire, no end of stream."""
        assert self._stream is not None
        await self._stream.aclose()


class VanishingWebSocketDaemon:
    """The same over provd's WebSocket route: a hand-made upgrade request, then a TCP
    close without a WebSocket close frame."""

    def __init__(self, url: str, name: str, provisioners: str = "echo") -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._name = name
        self._provisioners = provisioners
        self._stream: trio.SocketStream | None = None

    async def open_acquire(self) -> None:
        self._stream = await trio.open_tcp_stream(self._host, self._port)
        request = (
            "GET /provisionerd.ProvisionerDaemon/AcquireJobWithCancel HTTP/1.1\r\n"
            f"Host: {self._host}:{self._port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Provd-Daemon-Psk: {DAEMON_PSK}\r\nProvd-Daemon-Name: {self._name}\r\n"
            f"Provd-Daemon-Provisioners: {self._provisioners}\r\nProvd-Api-Version: 1.1\r\n\r\n"
        )
        await self._stream.send_all(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += await self._stream.receive_some()
        assert response.startswith(b"HTTP/1.1 101"), response

    async def vanish(self) -> None:
        assert self._stream is not None
        await self._stream.aclose()


class RawH2:
    """A cleartext HTTP/2 connection driven frame by frame, recording every event the
    server sends, so a test can put client frames in an exact order and see exactly
    what came back (RST_STREAM included)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.events: list[h2.events.Event] = []
        # Every frame the server sent, as parsed off the wire: h2's client state
        # machine drops some (a RST_STREAM on a stream it considers closed).
        self.frames: list[Frame] = []
        self.closed = False
        self._stream: trio.SocketStream | None = None
        self._unparsed = bytearray()

    async def connect(self) -> None:
        self._stream = await trio.open_tcp_stream(self.host, self.port)
        self.conn.initiate_connection()
        await self.flush()

    async def flush(self) -> None:
        assert self._stream is not None
        if data := self.conn.data_to_send():
            await self._stream.send_all(data)

    def open_stream(self, path: str, headers: list[tuple[str, str]]) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", f"{self.host}:{self.port}"),
                (":path", path),
                *headers,
            ],
        )
        return stream_id

    async def receive(self) -> list[h2.events.Event]:
        """One read's worth of events (empty once the server closed)."""
        assert self._stream is not None
        data = await self._stream.receive_some()
        if not data:
            self.closed = True
            return []
        self._parse_frames(data)
        events = self.conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.events.extend(events)
        await self.flush()
        return events

    async def receive_until(self, done: Callable[[h2.events.Event], bool]) -> h2.events.Event:
        """Read until an event satisfies `done` (a hang guard is the caller's)."""
        while True:
            for event in await self.receive():
                if done(event):
                    return event
            if self.closed:
                raise AssertionError(f"connection closed; events: {self.events}")

    def _parse_frames(self, data: bytes) -> None:
        self._unparsed += data
        while len(self._unparsed) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self._unparsed[:9]))
            if len(self._unparsed) < 9 + length:
                return
            frame.parse_body(memoryview(self._unparsed[9 : 9 + length]))
            del self._unparsed[: 9 + length]
            self.frames.append(frame)

    def rst_frames(self, stream_id: int) -> list[RstStreamFrame]:
        """Every RST_STREAM the server sent for `stream_id`."""
        return [
            f for f in self.frames if isinstance(f, RstStreamFrame) and f.stream_id == stream_id
        ]

    async def unary(self, path: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
        """One Connect unary call (binary) on this connection; its response body, or
        AssertionError with the status and body if it did not succeed."""
        stream_id = self.open_stream(path, [("content-type", "application/proto"), *headers])
        return await self.unary_on(stream_id, body)

    async def unary_on(self, stream_id: int, body: bytes) -> bytes:
        """`unary` on a stream opened with `open_stream` (its content type: the
        caller's, binary Connect if none)."""
        self.conn.send_data(stream_id, body, end_stream=True)
        await self.flush()
        await self.receive_until(
            lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id
        )
        response = next(
            e
            for e in self.events
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id
        )
        status = dict(response.headers)[b":status"]
        assert status == b"200", (status, self.data(stream_id))
        return self.data(stream_id)

    def data(self, stream_id: int) -> bytes:
        return b"".join(
            e.data
            for e in self.events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id
        )

    def resets(self, stream_id: int) -> list[h2.events.StreamReset]:
        return [
            e
            for e in self.events
            if isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id
        ]

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
