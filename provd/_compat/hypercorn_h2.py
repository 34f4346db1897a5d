"""hypercorn 0.18's HTTP/2 protocol (`H2Protocol`), fixed in three places.

1. DATA for a stream whose response already ended raised KeyError in
   `_handle_events`, which killed the connection task and, under trio, the whole
   server (pgjones/hypercorn#329, PRs #312/#334/#365, unreleased). It happens in
   normal use: a bidi stream's server side ends (AcquireJobWithCancel sends its one
   answer), then the client half-closes with an empty DATA frame. The fix is
   hypercorn's own for StreamEnded: ignore the event, but still give the
   connection's flow-control window back.

2. A closed connection left the tasks of its streams waiting forever, and with them
   the socket (docs/upstream/hypercorn-fd-leak.md). `handle(Closed())` closed the
   streams but not their send buffers, and `stream_send` still waited on a buffer
   after the connection was gone: a response that ended after the client vanished
   blocked in `StreamBuffer.drain()` (the sending task had exited), so the
   connection's task group never finished and its socket was never closed. One
   descriptor per aborted request, for good. Now every buffer is closed with the
   connection, and `stream_send` returns at once on a closed connection.

3. A gRPC response ended its stream twice. Since 0.18 (50057c4, "set end_stream
   when sending trailers") trailers carry END_STREAM, but the HTTP stream still
   sends EndBody after them, and the send task then calls `end_stream()` on the
   already ended stream. h2 rejects that (ProtocolError, which hypercorn ignores)
   and, as a side effect of the invalid transition, marks the stream CLOSED. Frames
   the client still legitimately sends on its half of the stream (a CancelAcquire,
   the half-close) are then answered with RST_STREAM(STREAM_CLOSED), and a gRPC
   client that reads the reset before the trailers reports INTERNAL instead of the
   status it was sent. Now a stream's send buffer is retired once its trailers went
   out, so nothing ends it again; `_send_data` never ends a stream whose buffer was
   retired and tolerates a buffer that went away while it was sending.

4. Fewer writes per response. hypercorn wrote a response's HEADERS, its DATA and the
   END_STREAM that follows each with a `send()` of its own: three writes for a unary
   RPC, four for a stream's answer, each a syscall that on loopback also runs the peer's
   TCP receive, and each a wake-up of the client. Now the HEADERS frame waits in h2's
   buffer for what follows, the last DATA of a response carries END_STREAM, and the send
   task writes whatever is buffered before it sleeps; gRPC's trailers take the body
   still buffered with them when the flow-control window allows. A unary answer, Connect
   or gRPC, goes out in one write. Nothing waits longer than the send task's next turn:
   headers with no body behind them yet (a stream whose first message is not ready) are
   written as soon as the send task finds nothing else to do.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import h2.events
import h2.exceptions
from hypercorn.events import Closed, Event
from hypercorn.protocol.events import (
    EndBody,
    EndData,
    InformationalResponse,
    Response,
    Trailers,
)
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import BufferCompleteError, H2Protocol, StreamBuffer
from priority.priority import DeadlockError, MissingStreamError

_original_handle_events = H2Protocol._handle_events
_original_handle = H2Protocol.handle
_original_stream_send = H2Protocol.stream_send


async def _handle_events(self: H2Protocol, events: list[h2.events.Event]) -> None:
    if not any(isinstance(event, h2.events.DataReceived) for event in events):
        await _original_handle_events(self, events)
        return
    # Events are handled one by one: an earlier event of the batch may create or
    # close the stream that a later DATA frame belongs to.
    for event in events:
        if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
            self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            await self._flush()
            continue
        await _original_handle_events(self, [event])


async def _handle(self: H2Protocol, event: Event) -> None:
    if not isinstance(event, Closed):
        await _original_handle(self, event)
        return
    self.closed = True
    for stream_id in list(self.streams):
        await self._close_stream(stream_id)
    # Wake every stream task waiting on its buffer (drain, or push above the high
    # water mark): the send task that would have emptied it is gone.
    for stream_id, buffer in list(self.stream_buffers.items()):
        await _retire(self, stream_id, buffer)
    await self.has_data.set()


async def _stream_send(self: H2Protocol, event: StreamEvent) -> None:
    if self.closed:
        return  # nothing can be sent, and nothing must wait
    if isinstance(event, (InformationalResponse, Response)):
        await _send_headers(self, event)
    elif isinstance(event, Trailers):
        await _send_trailers(self, event)
    elif isinstance(event, (EndBody, EndData)) and event.stream_id not in self.stream_buffers:
        return  # the trailers ended this stream already
    else:
        await _original_stream_send(self, event)


async def _send_headers(self: H2Protocol, event: InformationalResponse | Response) -> None:
    """Buffer the HEADERS frame; the send task writes it with what follows (4)."""
    try:
        self.connection.send_headers(
            event.stream_id,
            [
                (b":status", b"%d" % event.status_code),
                *event.headers,
                *self.config.response_headers("h2"),
            ],
        )
    except (KeyError, h2.exceptions.ProtocolError):
        return  # the stream or the connection closed meanwhile
    await self.has_data.set()


async def _send_task(self: H2Protocol) -> None:
    """hypercorn's send task, which also writes what h2 has buffered before it waits
    for more to send (4)."""
    while not self.closed:
        try:
            stream_id = next(self.priority)
        except DeadlockError:
            await self._flush()
            await self.has_data.wait()
            await self.has_data.clear()
        else:
            await self._send_data(stream_id)


async def _send_trailers(self: H2Protocol, event: Trailers) -> None:
    try:
        buffer = self.stream_buffers[event.stream_id]
        pending = len(buffer.buffer)
        if pending and pending <= self.connection.local_flow_control_window(event.stream_id):
            # What is left of the body fits the window: it goes out here, in the same
            # write as the trailers (4). Otherwise the send task sends it as the
            # window opens, and the trailers wait for it.
            _send_now(self, event.stream_id, await buffer.pop(pending))
        else:
            self.priority.unblock(event.stream_id)
            await self.has_data.set()
            await buffer.drain()
        self.connection.send_headers(event.stream_id, event.headers, end_stream=True)
        await self._flush()
        await _retire(self, event.stream_id, buffer)
    except (
        BufferCompleteError,
        KeyError,
        MissingStreamError,
        h2.exceptions.ProtocolError,
    ):
        return  # the stream or the connection closed meanwhile


def _send_now(self: H2Protocol, stream_id: int, data: bytes) -> None:
    """Queue `data` in h2 as DATA frames of at most the peer's frame size."""
    size = self.connection.max_outbound_frame_size
    for start in range(0, len(data), size):
        self.connection.send_data(stream_id, data[start : start + size])


async def _send_data(self: H2Protocol, stream_id: int) -> None:
    buffer = self.stream_buffers.get(stream_id)
    if buffer is None:
        _forget_priority(self, stream_id)
        return
    try:
        chunk_size = min(
            self.connection.local_flow_control_window(stream_id),
            self.connection.max_outbound_frame_size,
        )
        data = await buffer.pop(max(0, chunk_size))
        # Only a buffer that is still the stream's may end it: one retired meanwhile
        # belongs to a stream that has ended already. The last DATA carries the end.
        ending = buffer.complete and self.stream_buffers.get(stream_id) is buffer
        if data:
            self.connection.send_data(stream_id, data, end_stream=ending)
        elif ending:
            self.connection.end_stream(stream_id)
        else:
            self.priority.block(stream_id)
        if data or ending:
            await self._flush()
        if ending:
            await _retire(self, stream_id, buffer)
    except (
        h2.exceptions.StreamClosedError,
        h2.exceptions.ProtocolError,
        MissingStreamError,
        KeyError,
    ):
        # The stream or the connection closed while this waited to send.
        await _retire(self, stream_id, buffer)


async def _retire(self: H2Protocol, stream_id: int, buffer: StreamBuffer) -> None:
    """Close a stream's send buffer (waking anyone waiting on it) and forget it."""
    await buffer.close()
    if self.stream_buffers.get(stream_id) is buffer:
        del self.stream_buffers[stream_id]
    _forget_priority(self, stream_id)


def _forget_priority(self: H2Protocol, stream_id: int) -> None:
    with suppress(MissingStreamError):
        self.priority.remove_stream(stream_id)


_PATCHES: dict[str, Any] = {
    "_handle_events": _handle_events,
    "handle": _handle,
    "stream_send": _stream_send,
    "send_task": _send_task,
    "_send_data": _send_data,
}


def apply() -> None:
    """Install the fixes (idempotent)."""
    for name, function in _PATCHES.items():
        setattr(H2Protocol, name, function)
