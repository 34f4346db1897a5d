"""How long a connection may take and how many one client may hold.

Slow or hostile clients must not hold the server's descriptors: a request has to
arrive in bounded time, a response has to be taken in bounded time, a closed
connection's work ends in bounded time, and one client address holds a bounded
number of connections. What is never bounded is a quiet connection that has a
request in progress over HTTP/2 or WebSocket: an acquire stream legitimately waits
for hours. The mechanism is `provd._compat.hypercorn_tcp`; these are the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from provd._compat.hypercorn_tcp import LimitedConfig


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    # More connections from one client address are closed at once. Raise it for
    # many daemons behind one NAT address.
    max_connections_per_peer: int = 128
    # A connection with no request in progress (none yet, or between requests on
    # HTTP/1.1, or no open stream on HTTP/2) is closed after this long.
    keep_alive_timeout_seconds: float = 5.0
    # HTTP/1.1: from the first byte of a request to the end of its head. Headers are
    # one packet for any real client; a slow-loris client is cut off here.
    request_header_timeout_seconds: float = 4.0
    # HTTP/1.1: the longest pause between two pieces of a request body.
    request_body_timeout_seconds: float = 30.0
    # A response write the client does not take within this closes the connection.
    send_timeout_seconds: float = 30.0
    # After a connection closed (client gone, a timeout), how long its handlers may
    # still run before they are cancelled and the socket is closed.
    close_grace_seconds: float = 5.0
    # TLS only: from accepting the connection to the end of the handshake.
    tls_handshake_timeout_seconds: float = 10.0
    # Probe a connection after this long without traffic (TCP keepalive; 4 probes,
    # a quarter of this apart), so peers that vanished without a word are closed.
    tcp_keepalive_idle_seconds: float = 60.0


def limited_config(limits: ConnectionLimits) -> LimitedConfig:
    """A hypercorn config carrying `limits` (the caller adds binds, TLS, logs)."""
    config = LimitedConfig()
    config.max_connections_per_peer = limits.max_connections_per_peer
    config.keep_alive_timeout = limits.keep_alive_timeout_seconds
    config.request_header_timeout = limits.request_header_timeout_seconds
    config.request_body_timeout = limits.request_body_timeout_seconds
    config.send_timeout = limits.send_timeout_seconds
    config.close_grace = limits.close_grace_seconds
    config.ssl_handshake_timeout = limits.tls_handshake_timeout_seconds
    config.tcp_keepalive_idle = limits.tcp_keepalive_idle_seconds
    # hypercorn's read_timeout stays None: it would cut quiet acquire streams.
    config.read_timeout = None
    return config
