"""The WebSocket transport's framing, shared by provd's server route and its client
(docs/websocket.md).

Each WebSocket binary message carries one Connect envelope: a flags byte, a 4-byte
big-endian length, then the protobuf message; an envelope flagged END_STREAM ends a
side (the server's holds Connect's end-of-stream JSON, error details included).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from protobuf.wkt import Any as AnyMessage

from provd.protocol import PAYLOAD_MAX_BYTES

PROVISIONER_DAEMON_SERVICE = "provisionerd.ProvisionerDaemon"
END_STREAM = 0x02
_ENVELOPE_HEADER = struct.Struct(">BI")
_TYPE_URL_PREFIX = "type.googleapis.com/"


def envelope(payload: bytes, flags: int = 0) -> bytes:
    """One Connect envelope: a flags byte, a 4-byte big-endian length, the payload."""
    return _ENVELOPE_HEADER.pack(flags, len(payload)) + payload


def end_of_stream(error: ConnectError | None) -> bytes:
    """The end-of-stream envelope: Connect's end-of-stream JSON, with the error if any.

    The error carries its details as Connect does (`{"type", "value"}`, the value the
    serialized message in unpadded standard base64), so a reason provd attaches
    (provd.error_reasons) reaches a WebSocket client as it reaches a Connect one.
    """
    body: dict[str, Any] = {}
    if error is not None:
        body["error"] = error_json(error)
    return envelope(json.dumps(body).encode(), END_STREAM)


def error_json(error: ConnectError) -> dict[str, Any]:
    """`error` as the `error` object of Connect's end-of-stream JSON."""
    body: dict[str, Any] = {"code": error.code.value, "message": error.message}
    if error.details:
        body["details"] = [
            {
                "type": detail.type_name,
                "value": base64.b64encode(detail.message_bytes).decode("ascii").rstrip("="),
            }
            for detail in error.details
        ]
    return body


def error_from_end_of_stream(end: object) -> ConnectError | None:
    """The error in an end-of-stream JSON value (parsed), with its details; None if
    the stream ended OK. An unknown code reads as `unknown`; a malformed detail is
    skipped, as Connect's clients do, so a bad detail never hides the error itself;
    JSON that is not an object at all is an `internal` error."""
    if not isinstance(end, Mapping):
        return ConnectError(Code.INTERNAL, f"malformed end-of-stream message: {end!r:.200}")
    error = end.get("error")
    if not error:
        return None
    if not isinstance(error, Mapping):
        return ConnectError(Code.UNKNOWN, f"malformed end-of-stream error: {error!r:.200}")
    try:
        code = Code(error.get("code", "unknown"))
    except ValueError:
        code = Code.UNKNOWN
    details = []
    for detail in error.get("details") or ():
        if not isinstance(detail, Mapping):
            continue
        type_name, value = detail.get("type"), detail.get("value")
        if not isinstance(type_name, str) or not isinstance(value, str):
            continue
        try:
            # Unpadded as Connect sends it; padded or URL-safe accepted as well.
            data = base64.b64decode(value.rstrip("=") + "===", altchars=b"-_")
        except (binascii.Error, ValueError):
            continue
        details.append(ErrorDetail(AnyMessage(type_url=_TYPE_URL_PREFIX + type_name, value=data)))
    return ConnectError(code, str(error.get("message", "")), details)


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
