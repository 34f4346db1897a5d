"""connectrpc 0.13, corrected where it blames the server for a client's mistake.

A request message whose envelope says "compressed" while the request named no
compression (no `grpc-encoding` or `connect-content-encoding`, or `identity`) is a
malformed request. connectrpc's envelope reader answers it with `internal`, the code
the gRPC specification gives that case; but provd's contract is that a client's
mistake is never `internal` or `unknown` (docs/contract/api.md), and connectrpc itself
reports every other framing mistake of a request (bad flags, a truncated envelope) as
`invalid_argument`. So on the server's side this one is `invalid_argument` too.

The reader is shared with connectrpc's clients, which use `internal` for framing
errors in responses (`_protocol_error_code`); those are left alone. Importing this
module applies the fix; `tests/test_fuzz.py` sends such envelopes over every protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from connectrpc._envelope import EnvelopeReader
from connectrpc.code import Code
from connectrpc.errors import ConnectError

_COMPRESSED_WITHOUT_ENCODING = "sent compressed message without compression support"
_original_read_messages = EnvelopeReader._read_messages


def _read_messages(self: EnvelopeReader[Any]) -> Iterator[Any]:
    try:
        yield from _original_read_messages(self)
    except ConnectError as error:
        if (
            error.code == Code.INTERNAL
            and self._protocol_error_code == Code.INVALID_ARGUMENT  # the server's reader
            and _COMPRESSED_WITHOUT_ENCODING in error.message
        ):
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                "protocol error: a message is flagged as compressed, but the request"
                " names no compression (grpc-encoding or connect-content-encoding)",
            ) from None
        raise


EnvelopeReader._read_messages = _read_messages  # type: ignore[method-assign]
