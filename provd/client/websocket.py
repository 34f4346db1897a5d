"""The client side of provd's WebSocket transport (docs/websocket.md), in trio.

trio-websocket runs natively in trio, so unlike the Connect client no worker thread
is needed: cancelling an acquire closes the socket, which provd reads as a daemon
that went away. trio-websocket (and its wsproto and h11) is imported when a stream
opens, so a daemon on the Connect transport never loads it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import trio
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.websocket_framing import (
    END_STREAM,
    PROVISIONER_DAEMON_SERVICE,
    envelope,
    error_from_end_of_stream,
    parse_envelope,
)


def websocket_url(url: str, method: str) -> str:
    """`http[s]://host:port` to the WebSocket URL of a ProvisionerDaemon method."""
    scheme, rest = url.rstrip("/").split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/{PROVISIONER_DAEMON_SERVICE}/{method}"


class WebSocketAcquisition:
    """One AcquireJobWithCancel over WebSocket; the same contract as over HTTP/2."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self._url = websocket_url(url, "AcquireJobWithCancel")
        self._headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        self.cancel_requested = trio.Event()
        self.close_requested = trio.Event()
        # What provd sent so far: kept when the stream breaks after an answer, since a
        # job in it was handed over all the same.
        self.answers: list[pd.AcquiredJob] = []

    def cancel(self) -> None:
        """Send CancelAcquire (provd still answers once: maybe with a job)."""
        self.cancel_requested.set()

    def close(self) -> None:
        """End the client's side of the stream, which provd treats as a cancel."""
        self.close_requested.set()

    async def run(self) -> list[pd.AcquiredJob]:
        """Open the stream and return every answer provd sent (exactly one)."""
        from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

        from provd.client.tls_roots import client_ssl_context

        answers = self.answers
        end: dict[str, Any] = {}
        # wss://: the system's CAs, or the bundled ones on a system without any.
        ssl_context = client_ssl_context() if self._url.startswith("wss://") else None
        broken: BaseException | None = None
        try:
            async with (
                open_websocket_url(
                    self._url, ssl_context=ssl_context, extra_headers=self._headers
                ) as ws,
                trio.open_nursery() as nursery,
            ):

                async def send_on(event: trio.Event, message: bytes) -> None:
                    await event.wait()
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send_message(message)

                cancel = envelope(pd.CancelAcquire().SerializeToString())
                nursery.start_soon(send_on, self.cancel_requested, cancel)
                nursery.start_soon(send_on, self.close_requested, envelope(b"", END_STREAM))
                try:
                    end = await _read_until_end(ws, answers)
                except (ConnectionClosed, OSError) as error:
                    broken = error
                nursery.cancel_scope.cancel()
        except (HandshakeError, OSError) as error:
            broken = error
        if broken is not None:
            raise ConnectError(Code.UNAVAILABLE, f"WebSocket to {self._url}: {broken!r}")
        if (failure := error_from_end_of_stream(end)) is not None:
            raise failure
        return answers


async def _read_until_end(ws: Any, answers: list[pd.AcquiredJob]) -> dict[str, Any]:
    """Collect answers until provd's end-of-stream envelope; return its JSON."""
    while True:
        data = await ws.get_message()
        if isinstance(data, str):
            raise ConnectError(Code.INTERNAL, "provd sent a text WebSocket message")
        flags, payload = parse_envelope(data)
        if flags & END_STREAM:
            end: dict[str, Any] = json.loads(payload or b"{}")
            return end
        answers.append(pd.AcquiredJob.FromString(payload))
