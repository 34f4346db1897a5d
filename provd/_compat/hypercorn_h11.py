"""hypercorn 0.18's HTTP/1.1 protocol, fixed in two places.

1. A WebSocket upgrade that fails to answer must close its connection, not raise
   into the server.

After an HTTP/1.1 WebSocket upgrade request, hypercorn wraps the h11 connection
(`H11WSConnection`). If the handshake answer cannot be sent any more (the client
sent frames before the 101, a race with the app's accept, a peer that broke the
exchange), h11 raises LocalProtocolError. hypercorn re-raises it unless the peer is
in h11's ERROR state, which the wrapper never reports, so the error escaped the
connection's reading task and, under trio, ended the whole server: one
unauthenticated packet (an upgrade request followed by a frame) stopped provd.
Such a connection cannot continue; it is closed instead.

2. When hypercorn answered a request itself (a 400 for a request the client broke
   off or malformed), or the connection closed under a request (the client left
   while its answer was on the way), the app's answer has nowhere to go. h11
   refuses it (LocalProtocolError) and hypercorn raised that into the app, which
   logged thirty lines as an app error: every aborted request could write one to
   the error log. Such an answer is now dropped quietly.
"""

from __future__ import annotations

from weakref import WeakSet

import h11
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H11Protocol, H11WSConnection
from hypercorn.typing import H11SendableEvent

_original_send_h11_event = H11Protocol._send_h11_event
_original_send_error_response = H11Protocol._send_error_response
_original_handle = H11Protocol.handle

# Connections answered by hypercorn itself, or closed (fix 2).
_done: WeakSet[H11Protocol] = WeakSet()


async def _send_h11_event(self: H11Protocol, event: H11SendableEvent) -> None:
    if not isinstance(self.connection, H11WSConnection) and self not in _done:
        await _original_send_h11_event(self, event)
        return
    try:
        data = self.connection.send(event)
    except h11.LocalProtocolError:
        if self not in _done:
            await self.send(Closed())
    else:
        await self.send(RawData(data=data))


async def _send_error_response(self: H11Protocol, status_code: int) -> None:
    _done.add(self)  # first: the app may try to answer while this sends
    await _original_send_error_response(self, status_code)


async def _handle(self: H11Protocol, event: Event) -> None:
    if isinstance(event, Closed):
        _done.add(self)
    await _original_handle(self, event)


def apply() -> None:
    """Install the fix (idempotent)."""
    H11Protocol._send_h11_event = _send_h11_event  # type: ignore[method-assign]
    H11Protocol._send_error_response = _send_error_response  # type: ignore[method-assign]
    H11Protocol.handle = _handle  # type: ignore[method-assign]
