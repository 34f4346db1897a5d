"""Compress a response only where it pays: messages under `COMPRESS_MIN_BYTES` go plain.

connectrpc 0.13 gzips every response message a client accepts gzip for, however
small. Most of provd's answers are a few dozen bytes (UpdateJobResponse is empty, a
Job about 160): gzip costs 7-20 us of the loop each and saves at most about a hundred
bytes of a packet that is sent anyway, and a tiny message grows (an empty one becomes
20 bytes). Measured on this machine (docs/performance.md, "Compression"), a 1 KiB
Job list shrinks to an eighth, which is where compressing starts to pay.

So, in the server:
- a Connect unary response under the threshold is sent with `identity` (the
  negotiation allows it: `identity` is always acceptable);
- a stream message (Connect streams, gRPC, gRPC-web) under the threshold is sent with
  its envelope's compressed flag clear, which every protocol allows per message.

Importing this module applies both; `rpc/app.py` imports it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any, Final

from connectrpc._compression import IdentityCompression
from connectrpc._envelope import EnvelopeWriter
from connectrpc._server_async import _UnaryResponse

COMPRESS_MIN_BYTES: Final = 1024
_IDENTITY: Final = IdentityCompression()
_HEADER = struct.Struct(">BI")
_original_unary_send = _UnaryResponse.send


@dataclass(frozen=True, slots=True)
class _Encoded:
    """A codec that hands back a message already encoded (so it is encoded once)."""

    codec: Any
    encoded: bytes

    def name(self) -> str:
        return str(self.codec.name())

    def encode(self, message: object) -> bytes:
        return self.encoded


async def _unary_send(self: _UnaryResponse, send: Any, response_data: object, ctx: Any) -> None:
    if isinstance(self.compression, IdentityCompression):
        await _original_unary_send(self, send, response_data, ctx)
        return
    encoded = self.codec.encode(response_data)
    compression = _IDENTITY if len(encoded) < COMPRESS_MIN_BYTES else self.compression
    plain = replace(self, codec=_Encoded(self.codec, encoded), compression=compression)  # type: ignore[arg-type]
    await _original_unary_send(plain, send, response_data, ctx)


def _envelope_write(self: EnvelopeWriter[Any], message: Any) -> bytes:
    data = self._codec.encode(message)
    if self._prefix and len(data) >= COMPRESS_MIN_BYTES:
        assert self._compression is not None
        data = self._compression.compress(data)
        return _HEADER.pack(1, len(data)) + data
    return _HEADER.pack(0, len(data)) + data


_UnaryResponse.send = _unary_send  # type: ignore[method-assign]
EnvelopeWriter.write = _envelope_write  # type: ignore[method-assign]
