"""hypercorn 0.18 (trio): one connection's lifetime (`TCPServer`), contained and bounded.

`BoundedTCPServer` is hypercorn's `TCPServer` with these changes:

- Contained: an exception from a connection's tasks is logged and closes that
  connection. hypercorn lets it reach `serve`'s nursery, which under trio ends the
  whole server, so every protocol bug became a remote kill switch.
- Finite after close: once the connection stops reading (the peer closed or reset,
  a timeout, the server closed it), the keep-alive timer stops and whatever still
  runs for the connection gets `close_grace` seconds, then is cancelled and the
  socket closed. A handler stuck on a connection that is gone can no longer hold a
  descriptor forever.
- Bounded sends: a write the peer does not take within `send_timeout` closes the
  connection (hypercorn shields the write from cancellation, so a peer that stops
  reading held the connection, and the shutdown, forever). A write that collides
  with the connection being closed counts as a closed connection, not an app error.
- HTTP/1.1 requests must arrive: the request head within `request_header_timeout`
  of its first byte, and each piece of its body within `request_body_timeout` of
  the previous one; otherwise the connection is closed. Nothing else is timed: an
  idle connection waits for its next request under hypercorn's `keep_alive_timeout`,
  and an HTTP/2 connection with an open stream (an acquire stream that waits for
  hours) is never cut for being quiet.
- At most `max_connections_per_peer` connections per client address; more are
  closed at once, before anything is read.
- TCP keepalive (`tcp_keepalive_idle`): a peer that vanished without a FIN or RST
  (power loss, a NAT that forgot the flow) is found and its connection closed,
  without disturbing live but quiet ones.

Every bound is an attribute of `LimitedConfig`; None keeps hypercorn's behaviour.
Installed by replacing the `TCPServer` that hypercorn's trio worker instantiates.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from math import inf
from typing import Any

import h11
import hypercorn.trio.run
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import parse_socket_addr

logger = logging.getLogger(__name__)


class LimitedConfig(Config):
    """hypercorn's Config plus the bounds `BoundedTCPServer` enforces (seconds)."""

    max_connections_per_peer: int | None = None
    request_header_timeout: float | None = None
    request_body_timeout: float | None = None
    send_timeout: float | None = None
    close_grace: float | None = None
    tcp_keepalive_idle: float | None = None

    def __init__(self) -> None:
        super().__init__()
        # Open connections per client address, shared by this server's connections.
        self.peer_connections: Counter[str] = Counter()


class BoundedTCPServer(TCPServer):
    """See the module docstring."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: Any,
    ) -> None:
        super().__init__(app, config, context, state, stream)
        self._read_ended = False
        self._sock: Any = _socket_of(stream)
        # The HTTP/1.1 request being received: when its first byte came, and when
        # the last piece of its body did (None: not in that phase).
        self._head_started: float | None = None
        self._body_progress: float | None = None

    async def run(self) -> None:
        sock = self._sock
        try:
            peer = parse_socket_addr(sock.family, sock.getpeername())
        except OSError:
            await self._close_for_good()
            return
        try:
            with _peer_slot(self.config, peer[0] if peer else None) as admitted:
                if admitted:
                    _enable_keepalive(sock, _limit(self.config, "tcp_keepalive_idle"))
                    await self._serve(sock)
        except OSError as error:
            # The peer reset or vanished mid-connection: the normal end of a client
            # that went away, closed below like any other.
            logger.debug("connection ended by the network: %s", error)
        except Exception:
            # One connection's failure must not end the server (see the docstring).
            await self.config.log.exception("Error in connection; closed it")
        finally:
            await self._close_for_good()

    async def _serve(self, sock: Any) -> None:
        stream: Any = self.stream
        if isinstance(stream, trio.SSLStream):
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                return  # handshake failed
            alpn_protocol = stream.selected_alpn_protocol()
            ssl = True
        else:
            alpn_protocol = "http/1.1"
            ssl = False
        client = parse_socket_addr(sock.family, sock.getpeername())
        server = parse_socket_addr(sock.family, sock.getsockname())
        async with TaskGroup() as task_group:
            self._task_group = task_group
            self.protocol = ProtocolWrapper(
                self.app,
                self.config,
                self.context,
                task_group,
                ConnectionState(self.state),
                ssl,
                client,
                server,
                self.protocol_send,
                alpn_protocol,
            )
            await self.protocol.initiate()
            await self.idle_task.restart(task_group, self._idle_timeout)
            await self._read_data()
            # Nothing more will be read: there is nothing to keep alive, and what
            # still runs for this connection gets a bounded time to finish.
            await self.idle_task.stop()
            grace = _limit(self.config, "close_grace")
            if grace is not None:
                nursery: Any = task_group._nursery
                nursery.cancel_scope.deadline = trio.current_time() + grace

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            failed = False
            async with self.send_lock:
                timeout = _limit(self.config, "send_timeout")
                try:
                    # Shielded: a write cut short by a cancellation would leave
                    # half a frame on the wire. The timeout bounds it instead.
                    with trio.CancelScope(shield=True) as scope:
                        if timeout is not None:
                            scope.deadline = trio.current_time() + timeout
                        await self.stream.send_all(event.data)
                    failed = scope.cancelled_caught
                except (
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                    trio.BusyResourceError,  # the connection is being closed meanwhile
                ):
                    failed = True
            if failed:
                await self._close()
                await self.protocol.handle(Closed())
        elif isinstance(event, Updated) and self._read_ended:
            return  # a closed connection has no keep-alive to restart
        else:
            await super().protocol_send(event)

    async def _read_data(self) -> None:
        while True:
            try:
                with trio.move_on_at(self._read_deadline()) as scope:
                    data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
            if scope.cancelled_caught:
                break  # the request (or hypercorn's read_timeout) took too long
            received_at = trio.current_time()
            if not await self._handle_data(bytes(data)) or data == b"":
                break
            self._track_request(received_at)
        self._read_ended = True
        await self.protocol.handle(Closed())

    async def _handle_data(self, data: bytes) -> bool:
        """Hand `data` to the protocol; False if the peer left while that waited.

        HTTP/1.1 handling can wait a long time without reading: for the app to take
        a body chunk, or (pipelining) for the response in progress to end. A peer
        that leaves meanwhile would go unnoticed for as long, holding the connection,
        so the socket is watched for the end of the stream while it waits.
        """
        if not data or not isinstance(self.protocol.protocol, H11Protocol):
            await self.protocol.handle(RawData(data))
            return True
        gone = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal gone
                try:
                    peeked = await self._sock.recv(1, socket.MSG_PEEK)
                except (OSError, trio.ClosedResourceError):  # reset, or closed here
                    peeked = b""
                if not peeked:
                    gone = True
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await self.protocol.handle(RawData(data))
            nursery.cancel_scope.cancel()
        return not gone

    def _read_deadline(self) -> float:
        now = trio.current_time()
        deadline = now + self.config.read_timeout if self.config.read_timeout else inf
        head_timeout = _limit(self.config, "request_header_timeout")
        if self._head_started is not None and head_timeout is not None:
            deadline = min(deadline, self._head_started + head_timeout)
        body_timeout = _limit(self.config, "request_body_timeout")
        if self._body_progress is not None and body_timeout is not None:
            deadline = min(deadline, self._body_progress + body_timeout)
        return deadline

    def _track_request(self, received_at: float) -> None:
        """Where the HTTP/1.1 request being received stands after a read."""
        protocol = self.protocol.protocol
        connection = protocol.connection if isinstance(protocol, H11Protocol) else None
        if not isinstance(connection, h11.Connection):  # HTTP/2, or a WebSocket
            self._head_started = self._body_progress = None
            return
        if connection.their_state is h11.IDLE:
            self._body_progress = None
            if not connection.trailing_data[0]:
                self._head_started = None  # between requests
            elif self._head_started is None:
                self._head_started = received_at  # the first bytes of a request head
        elif connection.their_state is h11.SEND_BODY:
            self._head_started = None
            self._body_progress = received_at
        else:
            self._head_started = self._body_progress = None

    async def _close_for_good(self) -> None:
        """Close the socket, even in a cancelled scope (a shutdown), and forcefully if
        a graceful close (TLS close_notify to a peer that does not read) would wait."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(_limit(self.config, "close_grace") or 5.0) as scope:
                await self._close()
            if scope.cancelled_caught:
                await trio.aclose_forcefully(self.stream)


def _limit(config: Config, name: str) -> Any:
    return getattr(config, name, None)


def _socket_of(stream: Any) -> Any:
    return getattr(stream, "transport_stream", stream).socket


@contextmanager
def _peer_slot(config: Config, peer: str | None) -> Iterator[bool]:
    """Hold one of `peer`'s connection slots; yields False when it has none left."""
    limit = _limit(config, "max_connections_per_peer")
    counts: Counter[str] | None = getattr(config, "peer_connections", None)
    if limit is None or counts is None or peer is None:
        yield True
        return
    if counts[peer] >= limit:
        yield False
        return
    counts[peer] += 1
    try:
        yield True
    finally:
        counts[peer] -= 1
        if counts[peer] <= 0:
            del counts[peer]


def _enable_keepalive(sock: Any, idle: float | None) -> None:
    if idle is None:
        return
    # Not a TCP socket (a UNIX socket bind) refuses these: nothing to probe then.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(idle)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(idle) // 4))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)


def apply() -> None:
    """Make hypercorn's trio worker serve connections with `BoundedTCPServer`."""
    setattr(hypercorn.trio.run, "TCPServer", BoundedTCPServer)  # noqa: B010
