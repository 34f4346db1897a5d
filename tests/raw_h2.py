"""A bare HTTP/2 client for the one thing real clients won't do on demand: open an
acquire stream and then vanish at a moment the test chooses."""

from __future__ import annotations

from urllib.parse import urlsplit

import h2.config
import h2.connection
import trio

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
