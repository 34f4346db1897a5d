"""Narrow fixes for known bugs in dependencies, each with its upstream reference.

hypercorn 0.18 (all installed by `hypercorn_fixes.apply()`; docs/upstream/ has the
reports, ready to file):

- `hypercorn_h2`: KeyError on DATA after a response ended (#329); streams of a closed
  connection waiting forever, leaking its socket; a gRPC stream ended twice, which
  made h2 reset it (RST_STREAM STREAM_CLOSED) under the client's feet.
- `hypercorn_h11`: a failed WebSocket handshake answer raising into the server.
- `hypercorn_tasks`: the queue to an ASGI app blocking forever once the app returned,
  or on a disconnect.
- `hypercorn_tcp`: a connection's exception ending the whole server; connections
  that outlive their peer; unbounded writes; HTTP/1.1 requests that never finish
  arriving; connections per client address. The bounds are `LimitedConfig`
  attributes, set from `ServerSettings.connections` (`provd.rpc.connections.ConnectionLimits`).
"""
