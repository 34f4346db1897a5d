"""The WebSocket transport's framing, shared by provd's server route and its client
(docs/websocket.md).

Each WebSocket binary message carries one Connect envelope: a flags byte, a 4-byte
big-endian length, then the protobuf message; an envelope flagged END_STREAM ends a
side (the server's holds Connect's end-of-stream JSON).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from provd.protocol import PAYLOAD_MAX_BYTES

PROVISIONER_DAEMON_SERVICE = "provisionerd.ProvisionerDaemon"
END_STREAM = 0x02
_ENVELOPE_HEADER = struct.Struct(">BI")


def envelope(payload: bytes, flags: int = 0) -> bytes:
    """One Connect envelope: a flags byte, a 4-byte big-endian length, the payload."""
    return _ENVELOPE_HEADER.pack(flags, len(payload)) + payload


def end_of_stream(error: ConnectError | None) -> bytes:
    """The end-of-stream envelope: Connect's end-of-stream JSON, with the error if any."""
    body: dict[str, Any] = {}
    if error is not None:
        body["error"] = {"code": error.code.value, "message": error.message}
    return envelope(json.dumps(body).encode(), END_STREAM)


def parse_envelope(data: bytes, read_max_bytes: int = PAYLOAD_MAX_BYTES) -> tuple[int, bytes]:
    """A WebSocket message's flags and payload; it must hold exactly one envelope."""
    if len(data) < _ENVELOPE_HEADER.size:
        raise ConnectError(Code.INVALID_ARGUMENT, "a WebSocket message must hold one envelope")
    flags, length = _ENVELOPE_HEADER.unpack_from(data)
    if length != len(data) - _ENVELOPE_HEADER.size:
        raise ConnectError(
            Code.INVALID_ARGUMENT,
            f"envelope says {length} bytes, the WebSocket message holds"
            f" {len(data) - _ENVELOPE_HEADER.size}",
        )
    if length > read_max_bytes:
        raise ConnectError(Code.RESOURCE_EXHAUSTED, f"message is larger than {read_max_bytes}")
    return flags, data[_ENVELOPE_HEADER.size :]
