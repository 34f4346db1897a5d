"""A TCP proxy that cuts a connection right after the server sent a job.

It reads what the server sends as HTTP/2 frames (or, after an HTTP/1.1 upgrade, as
WebSocket frames) and forwards them one by one. On the first connection, once it has
forwarded a message that carries a non-empty Connect envelope (an `AcquiredJob` with
a job in it), it closes both sides: the client holds the job, and never sees the end
of the stream. Later connections pass through untouched.
"""

from __future__ import annotations

import trio

ENVELOPE_END_STREAM = 0x02


def _carries_job(payload: bytes) -> bool:
    """A Connect envelope that is a message (not the end of the stream) with content:
    an empty AcquiredJob is a bare 5-byte envelope."""
    return len(payload) > 5 and not payload[0] & ENVELOPE_END_STREAM


def _h2_frame(buffer: bytearray) -> tuple[bytes, bool] | None:
    """The next whole HTTP/2 frame in `buffer`, and whether it is DATA carrying a job."""
    if len(buffer) < 9:
        return None
    length = int.from_bytes(buffer[0:3], "big")
    if len(buffer) < 9 + length:
        return None
    frame = bytes(buffer[: 9 + length])
    del buffer[: 9 + length]
    return frame, frame[3] == 0x0 and _carries_job(frame[9:])


def _websocket_frame(buffer: bytearray) -> tuple[bytes, bool] | None:
    """The next whole WebSocket frame (server frames are unmasked) in `buffer`, and
    whether it is a binary frame carrying a job."""
    if len(buffer) < 2:
        return None
    length, header = buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, header = int.from_bytes(buffer[2:4], "big"), 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, header = int.from_bytes(buffer[2:10], "big"), 10
    if len(buffer) < header + length:
        return None
    frame = bytes(buffer[: header + length])
    del buffer[: header + length]
    return frame, frame[0] & 0x0F == 0x2 and _carries_job(frame[header:])


class CuttingProxy:
    """Run `serve` in a nursery (`await nursery.start(proxy.serve)`); then `url`."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self.url = ""
        self.cut = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", self._upstream_port)
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._forward, client, server)
            await self._watch(server, client, cutting=not self.cut.is_set())
            nursery.cancel_scope.cancel()

    async def _forward(self, source: trio.SocketStream, sink: trio.SocketStream) -> None:
        try:
            while data := await source.receive_some():
                await sink.send_all(data)
        except trio.BrokenResourceError:
            pass

    async def _watch(
        self, server: trio.SocketStream, client: trio.SocketStream, *, cutting: bool
    ) -> None:
        """Forward the server's frames; if `cutting`, stop right after a job."""
        buffer = bytearray()
        framing = _h2_frame
        head_done = False
        try:
            while data := await server.receive_some():
                if not cutting:
                    await client.send_all(data)
                    continue
                buffer += data
                if not head_done and buffer.startswith(b"HTTP/1.1"):
                    # An HTTP/1.1 upgrade: the head passes, WebSocket frames follow.
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    await client.send_all(bytes(buffer[: end + 4]))
                    del buffer[: end + 4]
                    framing = _websocket_frame
                head_done = True
                while (next_frame := framing(buffer)) is not None:
                    frame, job = next_frame
                    await client.send_all(frame)
                    if job:
                        self.cut.set()
                        return  # both sides close with the relay
        except trio.BrokenResourceError:
            pass
